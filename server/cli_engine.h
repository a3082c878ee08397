/* cli_engine.h: the engine-only half of the command line, shared by vdmini (the full CLI, with
 * video) and vdmini-core (the same CLI without FFmpeg, for training and evaluation hosts). It
 * holds the commands that need only the engine library — init, info, train, convert, prune
 * and eval --model — the command dispatcher, and the small argument helpers every command uses.
 * A program describes itself in a cli_program (its name, usage text, its own extra commands and,
 * when it can decode video, eval --videos) and hands argv to cli_main. */
#ifndef VD_CLI_ENGINE_H
#define VD_CLI_ENGINE_H

#include "evaluator.h"
#include "vdmini.h"
#include "world.h"

#include <stdint.h>
#include <stdio.h>

/* Every bad argument gets a message naming it and this exit status; a failure while running, 1. */
#define CLI_EXIT_USAGE 2

/* A command: argv[1] is its name, its options follow. Returns the exit status. */
typedef int (*cli_command_fn)(int argc, char **argv);

typedef struct {
    const char *name;
    cli_command_fn run;
} cli_command;

/* eval --videos: judges each clip of DIR against its line of the truth file, adding the clips to
 * set and the truth's own clips to reference. Returns 0, or 1 after printing a message. */
typedef int (*cli_eval_videos_fn)(const char *dir, const char *truth_path, int i2v, vd_eval_set *set,
                                  vd_eval_set *reference);

typedef struct {
    const char *name;               /* for messages of the dispatcher: "vdmini", "vdmini-core" */
    void (*usage)(FILE *out);       /* the program's whole usage text */
    const cli_command *commands;    /* the program's own commands beside the engine ones, ended by
                                     * {NULL, NULL}; NULL for none */
    cli_eval_videos_fn eval_videos; /* NULL: eval --videos is refused (use vdmini) */
} cli_program;

/* Runs the command argv[1] (an engine command or one of p->commands); with no command, or --help,
 * prints the usage. Returns the exit status. */
int cli_main(const cli_program *p, int argc, char **argv);

/* The engine commands' usage lines for program prog, in the order vdmini lists them: the head
 * ("usage:", init, info), eval --model, and the tail (train, convert). */
void cli_usage_head(FILE *out, const char *prog);
void cli_usage_eval_model(FILE *out, const char *prog);
void cli_usage_tail(FILE *out, const char *prog);

/* Prints "vdmini: FLAG: WHY" and returns CLI_EXIT_USAGE. */
int cli_bad_arg(const char *flag, const char *why);
/* Parse a flag's value; on a bad one they print a message naming the flag and return -1. */
int cli_parse_int(const char *flag, const char *s, long lo, long hi, int *out);
int cli_parse_u64(const char *flag, const char *s, uint64_t *out);
/* "48,64,0": up to max integers in [0, 65536], separated by single commas, into out; 0 or -1. */
int cli_parse_int_list(const char *s, int *out, int max, int *count);
/* auto, cpu or cuda; ddim or euler; a number in [lo, hi] (a guidance scale, its rescale). 0, or
 * -1 after the message. */
int cli_parse_device(const char *flag, const char *s, vd_device *out);
int cli_parse_sampler(const char *flag, const char *s, vd_sampler_kind *out);
int cli_parse_number(const char *flag, const char *s, float lo, float hi, float *out);
/* Returns the value after the flag argv[*i] (advancing *i), or NULL (with a message) when it is
 * missing. */
const char *cli_flag_value(int argc, char **argv, int *i);

/* The guide flags of generate and eval: --guide-model PATH, --guide-units LIST, --guide-scale A
 * (vd_engine_set_guide, vd_gen_params.guide_scale). */
typedef struct {
    const char *model, *units;
    float scale;
} cli_guide;
/* argv[*i] when it is a guide flag: 1 (its value read, *i advanced), -1 after a message for a
 * bad value; 0 when it is another flag. */
int cli_parse_guide_flag(int argc, char **argv, int *i, cli_guide *g);
/* After the flags: a scale above 0 needs a guide and a guide needs a scale above 0. 0, or
 * CLI_EXIT_USAGE after a message. */
int cli_check_guide(const cli_guide *g);
/* Gives e the guide the flags name, if any. 0, or 1 after a message prefixed with command. */
int cli_apply_guide(vd_engine *e, const cli_guide *g, const char *command);

/* Judges the truth's own clip (rendered by the world) into reference, the real side of the
 * Fréchet distance; its first frame goes to image (3 x height x width floats) unless NULL. */
void cli_judge_reference(const vd_clip_truth *t, vd_eval_set *reference, float *image);

#endif
