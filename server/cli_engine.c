/* cli_engine.c: the commands of the command line that need only the engine library — init, info,
 * train ae|denoiser, convert and eval --model — with the dispatcher and argument helpers, shared
 * by vdmini (server/vdmini.c, which adds generate, world and eval --videos through the video
 * layer) and vdmini-core (server/vdmini_core.c, the same CLI without FFmpeg). No video here: what
 * this file links is libvdmini.a and its libraries only. Commands and options: server/vdmini.c. */
#include "cli_engine.h"

#include "backend.h"
#include "common.h"
#include "evaluator.h"
#include "model.h"
#include "train.h"
#include "vdmini.h"
#include "world.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- usage ---- */

void cli_usage_head(FILE *out, const char *prog)
{
    fprintf(out,
            "usage:\n"
            "  %s init --preset tiny|large [--seed N] --out PATH\n"
            "  %s info PATH|PRESET\n",
            prog, prog);
}

void cli_usage_eval_model(FILE *out, const char *prog)
{
    int indent = (int)strlen(prog) + 8; /* under "eval"'s first option */
    fprintf(out,
            "  %s eval --model PATH [--prompts N] [--seed N] [--steps N] [--guidance G] [--i2v]\n"
            "%*s[--device auto|cpu|cuda] [--bf16] [--ae PATH] [--json FILE]\n",
            prog, indent, "");
}

void cli_usage_tail(FILE *out, const char *prog)
{
    int indent = (int)strlen(prog) + 20; /* the continuation as vdmini has always indented it */
    fprintf(out,
            "  %s train ae|denoiser --config FILE.json [--resume DIR] [--device auto|cpu|cuda] [--bf16]\n"
            "%*s[--time-limit SECONDS]\n"
            "  %s convert --model PATH|CHECKPOINT_DIR --dtype bf16|f32 --out PATH\n",
            prog, indent, "", prog);
}

/* ---- argument helpers ---- */

int cli_bad_arg(const char *flag, const char *why)
{
    fprintf(stderr, "vdmini: %s: %s\n", flag, why);
    return CLI_EXIT_USAGE;
}

int cli_parse_int(const char *flag, const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "vdmini: %s: expected an integer between %ld and %ld, got \"%s\"\n", flag, lo, hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int cli_parse_u64(const char *flag, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') {
        fprintf(stderr, "vdmini: %s: expected a non-negative integer, got \"%s\"\n", flag, s);
        return -1;
    }
    *out = v;
    return 0;
}

const char *cli_flag_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "vdmini: %s: missing value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

static int cmd_init(int argc, char **argv)
{
    const char *preset = NULL, *out = NULL;
    uint64_t seed = 0;
    for (int i = 2; i < argc; i++) {
        const char *v;
        if (strcmp(argv[i], "--preset") == 0) {
            if (!(preset = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(argv[i], "--out") == 0) {
            if (!(out = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(argv[i], "--seed") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_u64("--seed", v, &seed)) return CLI_EXIT_USAGE;
        } else {
            return cli_bad_arg(argv[i], "unknown option for init");
        }
    }
    if (!preset) return cli_bad_arg("--preset", "required (tiny or large)");
    if (!out) return cli_bad_arg("--out", "required");
    char err[VD_ERR_LEN];
    if (vd_init_preset(preset, seed, out, err)) {
        fprintf(stderr, "vdmini: init: %s\n", err);
        return strstr(err, "unknown preset") ? CLI_EXIT_USAGE : 1;
    }
    fprintf(stderr, "vdmini: wrote %s (preset %s, seed %" PRIu64 ")\n", out, preset, seed);
    return 0;
}

static int cmd_info(const cli_program *p, int argc, char **argv)
{
    if (argc != 3) {
        p->usage(stderr);
        return CLI_EXIT_USAGE;
    }
    char err[VD_ERR_LEN];
    if (vd_print_info(argv[2], stdout, err)) {
        fprintf(stderr, "vdmini: info: %s\n", err);
        return 1;
    }
    return 0;
}

/* The truth's own clip, judged as the reference for the Fréchet distance; its first frame is the
 * image-to-video condition (image may be NULL). Shared with vdmini's eval --videos. */
void cli_judge_reference(const vd_clip_truth *t, vd_eval_set *reference, float *image)
{
    size_t frame = (size_t)3 * t->width * t->height;
    float *real = vd_malloc((size_t)t->frames * frame * sizeof(float));
    vd_world_render(t, real);
    vd_eval_clip clip;
    char err[VD_ERR_LEN];
    if (vd_eval_clip_frames(t, real, t->frames, t->width, t->height, NULL, &clip, err, sizeof err) == 0)
        vd_eval_set_add(reference, &clip);
    if (image) memcpy(image, real, frame * sizeof(float));
    free(real);
}

typedef struct {
    const char *model, *ae;
    int prompts, steps, i2v, bf16;
    float guidance;
    uint64_t seed;
    vd_device device;
} model_eval_options;

/* Renders prompts from the world, generates each with the model and judges the result. */
static int eval_model(const model_eval_options *o, vd_eval_set *set, vd_eval_set *reference)
{
    char err[VD_ERR_LEN];
    vd_engine *e = vd_engine_open(o->model, o->ae, o->device, o->bf16, err);
    if (!e) {
        fprintf(stderr, "vdmini: %s\n", err);
        return 1;
    }
    vd_model_limits lim;
    vd_engine_limits(e, &lim);
    int side = lim.image_size, frames = lim.default_frames, rc = 0;
    if (frames > VD_WORLD_MAX_FRAMES || side > VD_WORLD_MAX_SIDE) {
        fprintf(stderr, "vdmini: the model's %d frames of %dx%d are beyond what the world renders\n", frames, side, side);
        vd_engine_close(e);
        return 1;
    }
    float *generated = vd_malloc((size_t)frames * 3 * side * side * sizeof(float));
    float *image = vd_malloc((size_t)3 * side * side * sizeof(float));
    vd_clip_truth *truth = vd_malloc(sizeof *truth);
    double start = vd_now();
    for (int i = 0; i < o->prompts && !rc; i++) {
        vd_world_sample(o->seed, (uint64_t)i, side, side, frames, truth);
        cli_judge_reference(truth, reference, image);
        vd_gen_params p = {.prompt = truth->prompt, .image = o->i2v ? image : NULL, .frames = frames, .width = side,
                           .height = side, .steps = o->steps, .guidance = o->guidance, .sampler = VD_SAMPLER_DDIM,
                           .seed = o->seed + (uint64_t)i};
        vd_eval_clip clip;
        if (vd_generate(e, &p, generated, NULL, NULL, err) != 0 ||
            vd_eval_clip_frames(truth, generated, frames, side, side, p.image, &clip, err, sizeof err)) {
            fprintf(stderr, "vdmini: eval: prompt %d: %s\n", i, err);
            rc = 1;
            break;
        }
        vd_eval_set_add(set, &clip);
        fprintf(stderr, "vdmini: %d/%d \"%s\" (%.1fs)\n", i + 1, o->prompts, truth->prompt, vd_now() - start);
    }
    free(generated);
    free(image);
    free(truth);
    vd_engine_close(e);
    return rc;
}

/* eval --model here; eval --videos through p->eval_videos, refused where the program has none. */
static int cmd_eval(const cli_program *p, int argc, char **argv)
{
    const char *videos = NULL, *truth = NULL, *json_path = NULL, *v;
    model_eval_options m = {.prompts = 16, .steps = 25, .guidance = 7.5f, .device = VD_DEVICE_AUTO};
    for (int i = 2; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "--videos") == 0) {
            if (!(videos = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--truth") == 0) {
            if (!(truth = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--json") == 0) {
            if (!(json_path = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--model") == 0) {
            if (!(m.model = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--ae") == 0) {
            if (!(m.ae = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--prompts") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_int(f, v, 1, 100000, &m.prompts)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--steps") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_int(f, v, 1, 1000, &m.steps)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--seed") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_u64(f, v, &m.seed)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--guidance") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
            char *end;
            m.guidance = strtof(v, &end);
            if (end == v || *end || !(m.guidance >= 0.0f && m.guidance <= 100.0f))
                return cli_bad_arg(f, "expected a number between 0 and 100");
        } else if (strcmp(f, "--device") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
            if (strcmp(v, "auto") == 0) m.device = VD_DEVICE_AUTO;
            else if (strcmp(v, "cpu") == 0) m.device = VD_DEVICE_CPU;
            else if (strcmp(v, "cuda") == 0) m.device = VD_DEVICE_CUDA;
            else return cli_bad_arg(f, "expected auto, cpu or cuda");
        } else if (strcmp(f, "--i2v") == 0) {
            m.i2v = 1;
        } else if (strcmp(f, "--bf16") == 0) {
            m.bf16 = 1;
        } else {
            return cli_bad_arg(f, "unknown option for eval");
        }
    }
    if (videos && !p->eval_videos) {
        fprintf(stderr, "%s: eval --videos: reading MP4s needs video decoding, which %s is built without; "
                "use vdmini for it\n", p->name, p->name);
        return CLI_EXIT_USAGE;
    }
    if (videos && m.model) return cli_bad_arg("--videos", "give either --videos or --model, not both");
    if (!videos && !m.model)
        return p->eval_videos ? cli_bad_arg("--videos", "required (or --model)") : cli_bad_arg("--model", "required");
    if (videos && !truth) return cli_bad_arg("--truth", "required with --videos");
    if (m.model && truth) return cli_bad_arg("--truth", "only with --videos (--model draws its prompts from the world)");

    vd_eval_set *set = vd_eval_set_new(), *reference = vd_eval_set_new();
    int rc = videos ? p->eval_videos(videos, truth, m.i2v, set, reference) : eval_model(&m, set, reference);
    if (!rc) {
        vd_eval_summary summary;
        vd_eval_summarize(set, reference, &summary);
        vd_eval_print_markdown(&summary, stdout);
        if (json_path) {
            char *json = vd_eval_summary_json(&summary);
            FILE *out = fopen(json_path, "w");
            int written = out && fprintf(out, "%s\n", json) >= 0;
            if (out && fclose(out)) written = 0;
            if (!written) {
                fprintf(stderr, "vdmini: --json: cannot write %s: %s\n", json_path, strerror(errno));
                rc = 1;
            }
            free(json);
        }
    }
    vd_eval_set_free(set);
    vd_eval_set_free(reference);
    return rc;
}

typedef struct {
    int tty, log_every;
    double start, time_limit; /* seconds; 0: none */
} train_progress;

/* SIGINT or SIGTERM: stop training after a checkpoint. */
static volatile sig_atomic_t train_stop_requested;
static void request_train_stop(int sig) { (void)sig, train_stop_requested = 1; }

static int print_train_progress(void *user, const vd_train_stats *st, int total, double steps_per_s)
{
    const train_progress *p = user;
    int last = st->step == total;
    int stop = !last && (train_stop_requested || (p->time_limit > 0 && vd_now() - p->start > p->time_limit));
    if (stop) last = 1; /* the line ends here */
    if (!p->tty && !last && st->step % p->log_every) return 0;
    long eta = steps_per_s > 0 ? (long)((total - st->step) / steps_per_s + 0.5) : 0;
    fprintf(stderr, "%sstep %d/%d  loss %.5f  lr %.3g  %.2f steps/s  ETA %ld:%02ld:%02ld%s", p->tty ? "\r" : "",
            st->step, total, st->loss, st->lr, steps_per_s, eta / 3600, eta / 60 % 60, eta % 60,
            p->tty && !last ? "  " : "\n");
    if (stop)
        fprintf(stderr, "vdmini: stopping at step %d (%s); resume from the checkpoint step-%06d\n", st->step,
                train_stop_requested ? "signal" : "time limit", st->step);
    return stop;
}

static int cmd_train(int argc, char **argv)
{
    if (argc < 3) return cli_bad_arg("train", "which model: ae (the autoencoder) or denoiser");
    int denoiser = strcmp(argv[2], "denoiser") == 0;
    if (!denoiser && strcmp(argv[2], "ae") != 0) return cli_bad_arg(argv[2], "unknown model to train (ae or denoiser)");
    const char *what = denoiser ? "train denoiser" : "train ae";
    const char *config = NULL, *resume = NULL;
    vd_device device = VD_DEVICE_AUTO;
    int bf16 = 0, time_limit = 0;
    for (int i = 3; i < argc; i++) {
        const char *f = argv[i], *v;
        if (strcmp(f, "--config") == 0) {
            if (!(config = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--resume") == 0) {
            if (!(resume = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--device") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
            if (strcmp(v, "auto") == 0) device = VD_DEVICE_AUTO;
            else if (strcmp(v, "cpu") == 0) device = VD_DEVICE_CPU;
            else if (strcmp(v, "cuda") == 0) device = VD_DEVICE_CUDA;
            else return cli_bad_arg("--device", "expected auto, cpu or cuda");
        } else if (strcmp(f, "--bf16") == 0) {
            bf16 = 1;
        } else if (strcmp(f, "--time-limit") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_int(f, v, 1, INT_MAX, &time_limit)) return CLI_EXIT_USAGE;
        } else {
            return cli_bad_arg(f, denoiser ? "unknown option for train denoiser" : "unknown option for train ae");
        }
    }
    if (!config) return cli_bad_arg("--config", "required (a JSON training config)");
    vd_train_config cfg;
    char err[VD_ERR_LEN * 2];
    vd_train_config_defaults(&cfg);
    cfg.target = denoiser ? VD_TRAIN_DENOISER : VD_TRAIN_AE;
    if (vd_train_config_load(config, &cfg, err, sizeof err)) return cli_bad_arg("--config", err);
    struct stat sb;
    if (resume && (stat(resume, &sb) || !S_ISDIR(sb.st_mode)))
        return cli_bad_arg("--resume", "not a checkpoint directory");

    vd_backend *be = NULL;
    if (device != VD_DEVICE_CPU) {
        char cuda_err[VD_ERR_LEN];
        be = vd_backend_cuda(0, cuda_err, sizeof cuda_err);
        if (!be && device == VD_DEVICE_CUDA) {
            fprintf(stderr, "vdmini: --device cuda: no CUDA device: %s\n", cuda_err);
            return 1;
        }
    }
    if (!be) be = vd_backend_cpu();
    /* bf16 matrix products on the GPU; the weights, optimizer state and everything else stay fp32 */
    if (bf16 && strcmp(be->name, "cuda") == 0) be->precision = VD_PRECISION_BF16;
    fprintf(stderr, "vdmini: training the %s on %s%s for %d steps into %s%s%s\n",
            denoiser ? "denoiser" : "autoencoder", be->name, be->precision == VD_PRECISION_BF16 ? " (bf16)" : "", cfg.steps, cfg.out_dir, resume ? ", resuming from " : "", resume ? resume : "");
    train_progress progress = {.tty = isatty(STDERR_FILENO), .log_every = cfg.log_every, .start = vd_now(),
                               .time_limit = time_limit};
    signal(SIGINT, request_train_stop);
    signal(SIGTERM, request_train_stop);
    int rc = vd_train(&cfg, be, resume, print_train_progress, &progress, err, sizeof err);
    be->destroy(be);
    if (rc) {
        fprintf(stderr, "vdmini: %s: %s\n", what, err);
        return 1;
    }
    if (train_stop_requested || (time_limit && vd_now() - progress.start > time_limit))
        return 0; /* stopped early: the checkpoint is written, the final weights are not */
    fprintf(stderr, "vdmini: wrote %s/%s, train.csv and loss.svg\n", cfg.out_dir,
            denoiser ? "teacher.safetensors, teacher-ema.safetensors" : "ae.safetensors, ae-ema.safetensors");
    return 0;
}

/* Rewrites a weights file with its tensors in another dtype (bf16 for shipping, f32 to train on),
 * or writes the EMA weights of a training checkpoint directory as a weights file. */
static int cmd_convert(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *dtype = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0) {
            if (!(in = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(argv[i], "--out") == 0) {
            if (!(out = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(argv[i], "--dtype") == 0) {
            if (!(dtype = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else {
            return cli_bad_arg(argv[i], "unknown option for convert");
        }
    }
    if (!in) return cli_bad_arg("--model", "required");
    if (!out) return cli_bad_arg("--out", "required");
    if (!dtype || (strcmp(dtype, "bf16") != 0 && strcmp(dtype, "f32") != 0)) return cli_bad_arg("--dtype", "expected bf16 or f32");
    vd_st_dtype type = strcmp(dtype, "bf16") == 0 ? VD_ST_BF16 : VD_ST_F32;
    char err[VD_ERR_LEN * 2];
    struct stat sb;
    if (stat(in, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        if (vd_train_export_checkpoint(in, out, type, err, sizeof err)) {
            fprintf(stderr, "vdmini: convert: %s\n", err);
            return 1;
        }
        fprintf(stderr, "vdmini: wrote %s (the checkpoint's EMA weights, %s)\n", out, dtype);
        return 0;
    }
    vd_model m;
    if (vd_model_load(&m, in, err, sizeof err)) {
        fprintf(stderr, "vdmini: convert: %s\n", err);
        return 1;
    }
    int rc = vd_model_save(&m, out, type, err, sizeof err);
    vd_model_free(&m);
    if (rc) {
        fprintf(stderr, "vdmini: convert: %s\n", err);
        return 1;
    }
    fprintf(stderr, "vdmini: wrote %s (%s)\n", out, dtype);
    return 0;
}

/* ---- dispatch ---- */

int cli_main(const cli_program *p, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        p->usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "init") == 0) return cmd_init(argc, argv);
    if (strcmp(argv[1], "info") == 0) return cmd_info(p, argc, argv);
    if (strcmp(argv[1], "eval") == 0) return cmd_eval(p, argc, argv);
    if (strcmp(argv[1], "train") == 0) return cmd_train(argc, argv);
    if (strcmp(argv[1], "convert") == 0) return cmd_convert(argc, argv);
    for (const cli_command *c = p->commands; c && c->name; c++)
        if (strcmp(argv[1], c->name) == 0) return c->run(argc, argv);
    fprintf(stderr, "%s: unknown command \"%s\"\n", p->name, argv[1]);
    p->usage(stderr);
    return CLI_EXIT_USAGE;
}
