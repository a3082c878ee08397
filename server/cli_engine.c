/* cli_engine.c: the commands of the command line that need only the engine library — init, info,
 * train ae|denoiser, convert, analyze, plan, prune and eval --model — with the dispatcher and argument helpers, shared
 * by vdmini (server/vdmini.c, which adds generate, world and eval --videos through the video
 * layer) and vdmini-core (server/vdmini_core.c, the same CLI without FFmpeg). No video here: what
 * this file links is libvdmini.a and its libraries only. Commands and options: server/vdmini.c. */
#include "cli_engine.h"

#include "analysis.h"
#include "backend.h"
#include "common.h"
#include "evaluator.h"
#include "flop_count.h"
#include "model.h"
#include "prune.h"
#include "train.h"
#include "vdmini.h"
#include "world.h"

#include <errno.h>
#include <jansson.h>
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
            "  %s eval --model PATH [--prompts N] [--seed N] [--steps N] [--guidance G] [--guidance-rescale F] [--i2v]\n"
            "%*s[--sampler ddim|euler] [--eta E] [--guide-model PATH] [--guide-units LIST] [--guide-scale A]\n"
            "%*s[--from-truth STRENGTH] [--batch N] [--device auto|cpu|cuda] [--bf16] [--ae PATH] [--json FILE]\n",
            prog, indent, "", indent, "");
}

void cli_usage_tail(FILE *out, const char *prog)
{
    int indent = (int)strlen(prog) + 20; /* the continuation as vdmini has always indented it */
    fprintf(out,
            "  %s train ae|denoiser --config FILE.json [--resume DIR] [--device auto|cpu|cuda] [--bf16]\n"
            "%*s[--gpus N] [--time-limit SECONDS] [--stop-at STEP]\n"
            "  %s convert --model PATH|CHECKPOINT_DIR --dtype bf16|f32|f8 [--max-file-mb N] --out PATH\n"
            "  %s prune --teacher PATH --plan FILE.json [--seed N] --out PATH\n"
            "  %s analyze --teacher PATH [--ae PATH] [--prompts 8] [--seed 1000] [--steps 25] [--guidance G]\n"
            "%*s[--device auto|cpu|cuda] [--bf16] [--units U1,U2,...] --out FILE.json\n"
            "  %s plan --analysis FILE.json --params F|--flops F|--latency F [--rule shallow|deep|random|cost] [--seed N]\n"
            "%*s--out PLAN.json\n"
            "  %s distill --teacher PATH --student PATH --config FILE.json [--resume DIR] [--device auto|cpu|cuda]\n"
            "%*s[--bf16] [--gpus N] [--time-limit SECONDS] [--stop-at STEP]\n",
            prog, indent, "", prog, prog, prog, indent - 6, "", prog, indent - 9, "", prog, indent - 6, "");
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

int cli_parse_int_list(const char *s, int *out, int max, int *count)
{
    *count = 0;
    for (const char *p = s;; p++) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || v > 65536 || *count >= max || (*end && *end != ',')) return -1;
        out[(*count)++] = (int)v;
        if (!*end) return 0;
        p = end;
    }
}

int cli_parse_device(const char *flag, const char *s, vd_device *out)
{
    if (strcmp(s, "auto") == 0) *out = VD_DEVICE_AUTO;
    else if (strcmp(s, "cpu") == 0) *out = VD_DEVICE_CPU;
    else if (strcmp(s, "cuda") == 0) *out = VD_DEVICE_CUDA;
    else {
        cli_bad_arg(flag, "expected auto, cpu or cuda");
        return -1;
    }
    return 0;
}

int cli_parse_sampler(const char *flag, const char *s, vd_sampler_kind *out)
{
    if (strcmp(s, "ddim") == 0) *out = VD_SAMPLER_DDIM;
    else if (strcmp(s, "euler") == 0) *out = VD_SAMPLER_EULER;
    else {
        cli_bad_arg(flag, "expected ddim or euler");
        return -1;
    }
    return 0;
}

int cli_parse_number(const char *flag, const char *s, float lo, float hi, float *out)
{
    char *end;
    float x = strtof(s, &end);
    if (end == s || *end || !(x >= lo && x <= hi)) {
        char why[64];
        snprintf(why, sizeof why, "expected a number between %g and %g", lo, hi);
        cli_bad_arg(flag, why);
        return -1;
    }
    *out = x;
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

int cli_parse_guide_flag(int argc, char **argv, int *i, cli_guide *g)
{
    const char *f = argv[*i], *v;
    if (strcmp(f, "--guide-model") == 0) return (g->model = cli_flag_value(argc, argv, i)) ? 1 : -1;
    if (strcmp(f, "--guide-units") == 0) return (g->units = cli_flag_value(argc, argv, i)) ? 1 : -1;
    if (strcmp(f, "--guide-scale") != 0) return 0;
    return (v = cli_flag_value(argc, argv, i)) && cli_parse_number(f, v, 0, 100, &g->scale) == 0 ? 1 : -1;
}

int cli_check_guide(const cli_guide *g)
{
    if ((g->scale > 0) != (g->model || g->units))
        return cli_bad_arg("--guide-scale", "give it above 0 together with --guide-model or --guide-units");
    return 0;
}

int cli_apply_guide(vd_engine *e, const cli_guide *g, const char *command)
{
    char err[VD_ERR_LEN];
    if (!(g->model || g->units) || vd_engine_set_guide(e, g->model, g->units, err) == 0) return 0;
    fprintf(stderr, "vdmini: %s: %s\n", command, err);
    return 1;
}

static int cmd_init(int argc, char **argv)
{
    const char *preset = NULL, *out = NULL;
    uint64_t seed = 0;
    int inner[VD_MAX_LEVELS], inner_count = 0;
    for (int i = 2; i < argc; i++) {
        const char *v;
        if (strcmp(argv[i], "--preset") == 0) {
            if (!(preset = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(argv[i], "--inner-channels") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
            if (cli_parse_int_list(v, inner, VD_MAX_LEVELS, &inner_count))
                return cli_bad_arg("--inner-channels", "a comma-separated list of channel counts, one per UNet level");
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
    if (vd_init_preset(preset, inner, inner_count, seed, out, err)) {
        fprintf(stderr, "vdmini: init: %s\n", err);
        return strstr(err, "unknown preset") || strstr(err, "inner_channels") ? CLI_EXIT_USAGE : 1;
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

/* The seed of the second real set that eval --model measures the reference against: the
 * Fréchet distance that real clips of other prompts reach at this set size. */
#define EVAL_OTHER_REAL_SEED_XOR 0x9e3779b97f4a7c15ull

/* Judges count real clips of the world's (seed, 0..count-1) into set. */
static void judge_real_clips(uint64_t seed, int count, int side, int frames, vd_eval_set *set)
{
    for (int i = 0; i < count; i++) {
        vd_clip_truth truth;
        vd_world_sample(seed, (uint64_t)i, side, side, frames, &truth);
        cli_judge_reference(&truth, set, NULL);
    }
}

typedef struct {
    const char *model, *ae;
    cli_guide guide;
    int prompts, steps, i2v, bf16, batch;
    float guidance; /* < 0: the model's own (vd_default_guidance) */
    float guidance_rescale;
    vd_sampler_kind sampler;
    float eta;        /* DDIM's fresh noise (vd_gen_params.eta) */
    float from_truth; /* > 0: each clip starts from its true clip, noised for the last share of the steps */
    uint64_t seed;
    vd_device device;
} model_eval_options;

/* Renders prompts from the world, generates them with the model, o->batch videos denoised as one
 * batch (each gets what it would alone, up to rounding), and judges the results; other_real gets
 * as many real clips of a second seed. With o->from_truth each video is the true clip noised to
 * where the last o->from_truth of the steps begin, then denoised: how much of a clip the model
 * keeps, or restores, from each noise level on. */
static int eval_model(const model_eval_options *o, vd_eval_set *set, vd_eval_set *reference, vd_eval_set *other_real)
{
    char err[VD_ERR_LEN];
    vd_engine *e = vd_engine_open(o->model, o->ae, o->device, o->bf16, err);
    if (!e) {
        fprintf(stderr, "vdmini: %s\n", err);
        return 1;
    }
    if (cli_apply_guide(e, &o->guide, "eval")) {
        vd_engine_close(e);
        return 1;
    }
    vd_model_limits lim;
    vd_engine_limits(e, &lim);
    float guidance = o->guidance >= 0 ? o->guidance : vd_default_guidance(o->model);
    int side = lim.image_size, frames = lim.default_frames, rc = 0, batch = o->batch;
    if (frames > VD_WORLD_MAX_FRAMES || side > VD_WORLD_MAX_SIDE) {
        fprintf(stderr, "vdmini: the model's %d frames of %dx%d are beyond what the world renders\n", frames, side, side);
        vd_engine_close(e);
        return 1;
    }
    size_t frame_floats = (size_t)3 * side * side;
    float *generated = vd_malloc((size_t)frames * frame_floats * sizeof(float));
    float *images = vd_malloc((size_t)batch * frame_floats * sizeof(float));
    float *truth_clips = o->from_truth > 0 ? vd_malloc((size_t)batch * frames * frame_floats * sizeof(float)) : NULL;
    vd_clip_truth *truths = vd_malloc((size_t)batch * sizeof *truths);
    vd_video **videos = vd_calloc((size_t)batch, sizeof *videos);
    double start = vd_now();
    for (int i0 = 0; i0 < o->prompts && !rc; i0 += batch) {
        int n = o->prompts - i0 < batch ? o->prompts - i0 : batch;
        for (int k = 0; k < n && !rc; k++) {
            vd_clip_truth *truth = &truths[k];
            float *image = images + (size_t)k * frame_floats;
            vd_world_sample(o->seed, (uint64_t)(i0 + k), side, side, frames, truth);
            cli_judge_reference(truth, reference, image);
            float *truth_clip = truth_clips ? truth_clips + (size_t)k * frames * frame_floats : NULL;
            if (truth_clip) vd_world_render(truth, truth_clip);
            vd_gen_params p = {.prompt = truth->prompt, .image = o->i2v ? image : NULL, .frames = frames,
                               .width = side, .height = side, .steps = o->steps, .guidance = guidance,
                               .guidance_rescale = o->guidance_rescale, .guide_scale = o->guide.scale,
                               .sampler = o->sampler, .eta = o->eta, .seed = o->seed + (uint64_t)(i0 + k),
                               .video = truth_clip, .strength = o->from_truth};
            if (!(videos[k] = vd_video_begin(e, &p, err))) {
                fprintf(stderr, "vdmini: eval: prompt %d: %s\n", i0 + k, err);
                rc = 1;
            }
        }
        if (!rc)
            while (vd_video_step_index(videos[0]) < vd_video_steps(videos[0])) vd_step(e, videos, n);
        for (int k = 0; k < n && !rc; k++) {
            vd_video_decode(e, videos[k], generated);
            vd_eval_clip clip;
            if (vd_eval_clip_frames(&truths[k], generated, frames, side, side,
                                    o->i2v ? images + (size_t)k * frame_floats : NULL, &clip, err, sizeof err)) {
                fprintf(stderr, "vdmini: eval: prompt %d: %s\n", i0 + k, err);
                rc = 1;
                break;
            }
            vd_eval_set_add(set, &clip);
            fprintf(stderr, "vdmini: %d/%d \"%s\" (%.1fs)\n", i0 + k + 1, o->prompts, truths[k].prompt, vd_now() - start);
        }
        for (int k = 0; k < n; k++) vd_video_free(e, videos[k]), videos[k] = NULL;
    }
    if (!rc) judge_real_clips(o->seed ^ EVAL_OTHER_REAL_SEED_XOR, o->prompts, side, frames, other_real);
    free(videos);
    free(generated);
    free(images);
    free(truth_clips);
    free(truths);
    vd_engine_close(e);
    return rc;
}

/* eval --model here; eval --videos through p->eval_videos, refused where the program has none. */
static int cmd_eval(const cli_program *p, int argc, char **argv)
{
    const char *videos = NULL, *truth = NULL, *json_path = NULL, *v;
    model_eval_options m = {.prompts = 16, .steps = 25, .guidance = -1, .device = VD_DEVICE_AUTO, .batch = 8};
    int guide_flag;
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
        } else if (strcmp(f, "--batch") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_int(f, v, 1, 64, &m.batch)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--seed") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_u64(f, v, &m.seed)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--guidance") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_number(f, v, 0, 100, &m.guidance)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--guidance-rescale") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_number(f, v, 0, 1, &m.guidance_rescale))
                return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--sampler") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_sampler(f, v, &m.sampler)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--eta") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_number(f, v, 0, 1, &m.eta)) return CLI_EXIT_USAGE;
        } else if ((guide_flag = cli_parse_guide_flag(argc, argv, &i, &m.guide)) != 0) {
            if (guide_flag < 0) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--device") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_device(f, v, &m.device)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--from-truth") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_number(f, v, 0.001f, 1, &m.from_truth))
                return CLI_EXIT_USAGE;
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
    if (videos && m.from_truth > 0) return cli_bad_arg("--from-truth", "only with --model (it starts generation from the true clips)");
    if (!videos && !m.model)
        return p->eval_videos ? cli_bad_arg("--videos", "required (or --model)") : cli_bad_arg("--model", "required");
    if (videos && !truth) return cli_bad_arg("--truth", "required with --videos");
    if (m.model && truth) return cli_bad_arg("--truth", "only with --videos (--model draws its prompts from the world)");
    if (cli_check_guide(&m.guide)) return CLI_EXIT_USAGE;
    if (m.eta > 0 && m.sampler != VD_SAMPLER_DDIM) return cli_bad_arg("--eta", "only with --sampler ddim");

    vd_eval_set *set = vd_eval_set_new(), *reference = vd_eval_set_new(), *other_real = vd_eval_set_new();
    int rc = videos ? p->eval_videos(videos, truth, m.i2v, set, reference) : eval_model(&m, set, reference, other_real);
    if (!rc) {
        vd_eval_summary summary;
        vd_eval_summarize(set, reference, &summary);
        if (m.model) summary.frechet_real = vd_eval_frechet(reference, other_real);
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
    vd_eval_set_free(other_real);
    return rc;
}

typedef struct {
    int tty, log_every, distill;
    double start, time_limit; /* seconds; 0: none */
    int stop_at;                        /* step to stop after; 0: none */
    int stopped;                        /* the run stopped before its last step */
    int steps;                          /* steps seen, for the means below */
    double data_ms, prep_ms, update_ms; /* sums of vd_train_stats' parts of a step */
} train_progress;

/* SIGINT or SIGTERM: stop training after a checkpoint. */
static volatile sig_atomic_t train_stop_requested;
static void request_train_stop(int sig) { (void)sig, train_stop_requested = 1; }

static int print_train_progress(void *user, const vd_train_stats *st, int total, double steps_per_s)
{
    train_progress *p = user;
    p->steps++, p->data_ms += st->data_ms, p->prep_ms += st->prep_ms, p->update_ms += st->update_ms;
    int last = st->step == total;
    int timed_out = p->time_limit > 0 && vd_now() - p->start > p->time_limit;
    int stop = !last && (train_stop_requested || timed_out || (p->stop_at > 0 && st->step >= p->stop_at));
    if (stop) last = 1, p->stopped = 1; /* the line ends here */
    if (!p->tty && !last && st->step % p->log_every) return 0;
    long eta = steps_per_s > 0 ? (long)((total - st->step) / steps_per_s + 0.5) : 0;
    fprintf(stderr, "%sstep %d/%d  loss %.5f", p->tty ? "\r" : "", st->step, total, st->loss);
    if (p->distill) fprintf(stderr, " (task %.5f icd %.5f mca %.4f disc %.4f)", st->task, st->icd, st->mca, st->disc);
    fprintf(stderr, "  lr %.3g  %.2f steps/s  ETA %ld:%02ld:%02ld%s", st->lr, steps_per_s, eta / 3600, eta / 60 % 60,
            eta % 60, p->tty && !last ? "  " : "\n");
    if (last)
        fprintf(stderr, "vdmini: a step took %.0f ms waiting for clips, %.0f ms preparing inputs, %.0f ms in the rest "
                        "(means over this run's %d steps)\n", p->data_ms / p->steps, p->prep_ms / p->steps,
                p->update_ms / p->steps, p->steps);
    if (stop)
        fprintf(stderr, "vdmini: stopping at step %d (%s); resume from the checkpoint step-%06d\n", st->step,
                train_stop_requested ? "signal" : timed_out ? "time limit" : "--stop-at", st->step);
    return stop;
}

/* train ae|denoiser, and distill (the denoiser run with a teacher): options from argv[first]. */
static int run_training(int argc, char **argv, int first, const char *what, int denoiser, int distill)
{
    const char *config = NULL, *resume = NULL, *teacher = NULL, *student = NULL;
    vd_device device = VD_DEVICE_AUTO;
    int bf16 = 0, time_limit = 0, stop_at = 0, gpus = 1;
    for (int i = first; i < argc; i++) {
        const char *f = argv[i], *v;
        if (distill && strcmp(f, "--teacher") == 0) {
            if (!(teacher = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (distill && strcmp(f, "--student") == 0) {
            if (!(student = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--config") == 0) {
            if (!(config = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--resume") == 0) {
            if (!(resume = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--device") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_device(f, v, &device)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--bf16") == 0) {
            bf16 = 1;
        } else if (strcmp(f, "--gpus") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_int(f, v, 1, VD_TRAIN_MAX_REPLICAS, &gpus))
                return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--time-limit") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_int(f, v, 1, INT_MAX, &time_limit)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--stop-at") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_int(f, v, 1, INT_MAX, &stop_at)) return CLI_EXIT_USAGE;
        } else {
            char why[64];
            snprintf(why, sizeof why, "unknown option for %s", what);
            return cli_bad_arg(f, why);
        }
    }
    if (!config) return cli_bad_arg("--config", "required (a JSON training config)");
    if (distill && !teacher) return cli_bad_arg("--teacher", "required (the teacher's weights file)");
    if (distill && !student) return cli_bad_arg("--student", "required (the pruned student's weights file)");
    vd_train_config cfg;
    char err[VD_ERR_LEN * 2];
    vd_train_config_defaults(&cfg);
    cfg.target = denoiser ? VD_TRAIN_DENOISER : VD_TRAIN_AE;
    if (vd_train_config_load(config, &cfg, err, sizeof err)) return cli_bad_arg("--config", err);
    if (!distill && (cfg.teacher[0] || cfg.teacher_guidance > 0))
        return cli_bad_arg("--config", "a teacher distils: use vdmini distill");
    if (distill) {
        if (strlen(teacher) >= sizeof cfg.teacher || strlen(student) >= sizeof cfg.init)
            return cli_bad_arg("--teacher", "path too long");
        snprintf(cfg.teacher, sizeof cfg.teacher, "%s", teacher);
        snprintf(cfg.init, sizeof cfg.init, "%s", student);
    }
    struct stat sb;
    if (resume && (stat(resume, &sb) || !S_ISDIR(sb.st_mode)))
        return cli_bad_arg("--resume", "not a checkpoint directory");

    if (gpus > 1 && device == VD_DEVICE_CPU) return cli_bad_arg("--gpus", "needs --device cuda (or auto)");
    vd_backend *be[VD_TRAIN_MAX_REPLICAS];
    char device_err[VD_ERR_LEN];
    if (vd_open_backends(device, bf16, gpus, be, device_err)) { /* bf16 only for the GPU's matrix products */
        fprintf(stderr, "vdmini: --device: %s\n", device_err);
        return 1;
    }
    char where[48] = "";
    if (gpus > 1) snprintf(where, sizeof where, " x %d GPUs", gpus);
    fprintf(stderr, "vdmini: %s the %s on %s%s%s for %d steps into %s%s%s\n", distill ? "distilling" : "training",
            distill ? "student" : denoiser ? "denoiser" : "autoencoder", be[0]->name, where,
            be[0]->precision == VD_PRECISION_BF16 ? " (bf16)" : "", cfg.steps, cfg.out_dir,
            resume ? ", resuming from " : "", resume ? resume : "");
    train_progress progress = {.tty = isatty(STDERR_FILENO), .log_every = cfg.log_every, .distill = distill,
                               .start = vd_now(), .time_limit = time_limit, .stop_at = stop_at};
    signal(SIGINT, request_train_stop);
    signal(SIGTERM, request_train_stop);
    int rc = vd_train_on(&cfg, be, gpus, resume, print_train_progress, &progress, err, sizeof err);
    for (int g = gpus - 1; g >= 0; g--) be[g]->destroy(be[g]);
    if (rc) {
        fprintf(stderr, "vdmini: %s: %s\n", what, err);
        return 1;
    }
    if (progress.stopped) return 0; /* stopped early: the checkpoint is written, the final weights are not */
    const char *name = distill ? "student" : denoiser ? "teacher" : "ae";
    fprintf(stderr, "vdmini: wrote %s/%s.safetensors, %s-ema.safetensors, train.csv and loss.svg\n", cfg.out_dir, name,
            name);
    return 0;
}

static int cmd_train(int argc, char **argv)
{
    if (argc < 3) return cli_bad_arg("train", "which model: ae (the autoencoder) or denoiser");
    int denoiser = strcmp(argv[2], "denoiser") == 0;
    if (!denoiser && strcmp(argv[2], "ae") != 0) return cli_bad_arg(argv[2], "unknown model to train (ae or denoiser)");
    return run_training(argc, argv, 3, denoiser ? "train denoiser" : "train ae", denoiser, 0);
}

static int cmd_distill(int argc, char **argv) { return run_training(argc, argv, 2, "distill", 1, 1); }

/* Rewrites a weights file with its tensors in another dtype (bf16 for shipping, f32 to train on),
 * or writes the EMA weights of a training checkpoint directory as a weights file. */
static int cmd_convert(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *dtype = NULL, *v;
    int max_mb = 0; /* 0: one file */
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0) {
            if (!(in = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(argv[i], "--out") == 0) {
            if (!(out = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(argv[i], "--dtype") == 0) {
            if (!(dtype = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(argv[i], "--max-file-mb") == 0) {
            const char *f = argv[i];
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_int(f, v, 1, 1 << 20, &max_mb)) return CLI_EXIT_USAGE;
        } else {
            return cli_bad_arg(argv[i], "unknown option for convert");
        }
    }
    if (!in) return cli_bad_arg("--model", "required");
    if (!out) return cli_bad_arg("--out", "required");
    if (!dtype || (strcmp(dtype, "bf16") != 0 && strcmp(dtype, "f32") != 0 && strcmp(dtype, "f8") != 0))
        return cli_bad_arg("--dtype", "expected bf16, f32 or f8");
    vd_st_dtype type = strcmp(dtype, "bf16") == 0 ? VD_ST_BF16 : strcmp(dtype, "f8") == 0 ? VD_ST_F8_E4M3 : VD_ST_F32;
    size_t max_bytes = (size_t)max_mb << 20;
    char err[VD_ERR_LEN * 2];
    struct stat sb;
    if (stat(in, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        if (vd_train_export_checkpoint(in, out, type, max_bytes, err, sizeof err)) {
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
    int rc = vd_model_save_parts(&m, out, type, max_bytes, err, sizeof err);
    vd_model_free(&m);
    if (rc) {
        fprintf(stderr, "vdmini: convert: %s\n", err);
        return 1;
    }
    fprintf(stderr, "vdmini: wrote %s (%s)\n", out, dtype);
    return 0;
}

/* VDMini's pruning: the teacher without the plan's blocks, the kept blocks' weights copied. */
static int cmd_prune(int argc, char **argv)
{
    const char *teacher_path = NULL, *plan_path = NULL, *out = NULL, *v;
    uint64_t seed = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--teacher") == 0) {
            if (!(teacher_path = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(argv[i], "--plan") == 0) {
            if (!(plan_path = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(argv[i], "--out") == 0) {
            if (!(out = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(argv[i], "--seed") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_u64("--seed", v, &seed)) return CLI_EXIT_USAGE;
        } else {
            return cli_bad_arg(argv[i], "unknown option for prune");
        }
    }
    if (!teacher_path) return cli_bad_arg("--teacher", "required");
    if (!plan_path) return cli_bad_arg("--plan", "required (a JSON file {\"remove\": [block names]})");
    if (!out) return cli_bad_arg("--out", "required");
    char err[VD_ERR_LEN * 2], **names;
    int count;
    if (vd_prune_plan_load(plan_path, &names, &count, err, sizeof err)) return cli_bad_arg("--plan", err);
    vd_model teacher, student;
    vd_prune_report report;
    int rc = vd_model_load(&teacher, teacher_path, err, sizeof err) ? 1 : 0;
    if (rc) {
        fprintf(stderr, "vdmini: prune: %s\n", err);
    } else {
        if (vd_prune(&teacher, names, count, seed, &student, &report, err, sizeof err)) {
            fprintf(stderr, "vdmini: prune: %s\n", err);
            rc = CLI_EXIT_USAGE;
        } else {
            if (vd_model_save(&student, out, VD_ST_F32, err, sizeof err)) {
                fprintf(stderr, "vdmini: prune: %s\n", err);
                rc = 1;
            } else {
                double teacher_flops = vd_unet_step_flops(&teacher.cfg, 1);
                double student_flops = vd_unet_step_flops(&student.cfg, 1);
                fprintf(stderr,
                        "vdmini: wrote %s: %d units removed, UNet %.3f M -> %.3f M parameters, %.2f -> %.2f GFLOPs a "
                        "video-step (%.1f%% fewer, %.2fx); %d tensors copied, %d sliced, %d freshly initialised\n",
                        out, count, vd_model_count_params(&teacher, "unet.") / 1e6,
                        vd_model_count_params(&student, "unet.") / 1e6, teacher_flops / 1e9, student_flops / 1e9,
                        100.0 * (1.0 - student_flops / teacher_flops), teacher_flops / student_flops, report.copied,
                        report.sliced, report.fresh);
            }
            vd_model_free(&student);
        }
        vd_model_free(&teacher);
    }
    vd_prune_plan_free(names, count);
    return rc;
}

static int print_analysis_progress(void *user, int done, int total, const char *what)
{
    (void)user;
    fprintf(stderr, "vdmini: analyze %d/%d: %s\n", done + 1, total, what);
    return 0;
}

/* VDMini's block-importance analysis of a teacher: a table on stdout and the JSON report. */
static int cmd_analyze(int argc, char **argv)
{
    const char *teacher = NULL, *ae = NULL, *out = NULL, *v;
    vd_analysis_options o = {.prompts = 8, .steps = 25, .seed = 1000, .guidance = -1, .device = VD_DEVICE_AUTO};
    for (int i = 2; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "--teacher") == 0) {
            if (!(teacher = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--ae") == 0) {
            if (!(ae = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--out") == 0) {
            if (!(out = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--prompts") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_int(f, v, 1, 100000, &o.prompts)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--steps") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_int(f, v, 1, 1000, &o.steps)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--seed") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_u64(f, v, &o.seed)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--guidance") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_number(f, v, 0, 100, &o.guidance)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--device") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_device(f, v, &o.device)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--units") == 0) {
            if (!(o.units = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--bf16") == 0) {
            o.bf16 = 1;
        } else {
            return cli_bad_arg(f, "unknown option for analyze");
        }
    }
    if (!teacher) return cli_bad_arg("--teacher", "required");
    if (!out) return cli_bad_arg("--out", "required (the JSON report)");
    if (o.guidance < 0) o.guidance = vd_default_guidance(teacher);
    const char *tmp = getenv("TMPDIR");
    vd_analysis *a = vd_malloc(sizeof *a);
    char err[VD_ERR_LEN * 2];
    if (vd_analyze(teacher, ae, tmp && tmp[0] ? tmp : "/tmp", &o, print_analysis_progress, NULL, a, err, sizeof err)) {
        fprintf(stderr, "vdmini: analyze: %s\n", err);
        free(a);
        return 1;
    }
    printf("teacher: content %.4f, motion %.4f, direction %.4f, %.1f ms per video\n", a->content, a->motion,
           a->direction, a->video_ms);
    printf("| block | content drop | motion drop | direction drop | output change | parameters | FLOPs | latency |\n"
           "|---|---|---|---|---|---|---|---|\n");
    for (int b = 0; b < a->count; b++) {
        const vd_block_importance *bi = &a->blocks[b];
        printf("| %s | %.4f | %.4f | %.4f | %.4f | %.1f%% | %.1f%% | %.1f%% |\n", bi->name, bi->content_drop,
               bi->motion_drop, bi->direction_drop, bi->output_change, 100 * bi->param_share, 100 * bi->flop_share,
               100 * bi->latency_share);
    }
    char *json = vd_analysis_json(a);
    FILE *f = fopen(out, "w");
    int rc = !f || fputs(json, f) < 0 || fputc('\n', f) < 0;
    if (f && fclose(f)) rc = 1;
    if (rc) fprintf(stderr, "vdmini: analyze: %s: cannot write\n", out);
    free(json);
    free(a);
    return rc;
}

/* The whole file as a NUL-terminated string (malloc'd), or NULL with a message. */
static char *read_whole_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0, got;
    char *buf = vd_malloc(cap);
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0)
        if ((n += got) == cap - 1) buf = vd_realloc(buf, cap *= 2);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        snprintf(err, errlen, "%s: read error", path);
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

/* A pruning plan from an analysis report: the blocks a rule picks for a parameter, FLOP or latency
 * target. */
static int cmd_plan(int argc, char **argv)
{
    const char *analysis_path = NULL, *out = NULL, *rule_name = "shallow", *v;
    double target = 0;
    int measure = -1; /* a vd_plan_measure once given */
    uint64_t seed = 0;
    for (int i = 2; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "--analysis") == 0) {
            if (!(analysis_path = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--out") == 0) {
            if (!(out = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--rule") == 0) {
            if (!(rule_name = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--seed") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_u64(f, v, &seed)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--params") == 0 || strcmp(f, "--flops") == 0 || strcmp(f, "--latency") == 0) {
            if (measure >= 0) return cli_bad_arg(f, "give one target: --params, --flops or --latency");
            if (!(v = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
            char *end;
            target = strtod(v, &end);
            if (end == v || *end || !(target > 0 && target < 1)) return cli_bad_arg(f, "expected a fraction between 0 and 1");
            measure = strcmp(f, "--params") == 0 ? VD_PLAN_PARAMS : strcmp(f, "--flops") == 0 ? VD_PLAN_FLOPS
                                                                                             : VD_PLAN_LATENCY;
        } else {
            return cli_bad_arg(f, "unknown option for plan");
        }
    }
    if (!analysis_path) return cli_bad_arg("--analysis", "required (a report of vdmini analyze)");
    if (measure < 0)
        return cli_bad_arg("--params", "required: the fraction of parameters to remove (or --flops, --latency)");
    if (!out) return cli_bad_arg("--out", "required");
    vd_plan_rule rule;
    if (strcmp(rule_name, "shallow") == 0) rule = VD_PLAN_SHALLOW;
    else if (strcmp(rule_name, "deep") == 0) rule = VD_PLAN_DEEP;
    else if (strcmp(rule_name, "random") == 0) rule = VD_PLAN_RANDOM;
    else if (strcmp(rule_name, "cost") == 0) rule = VD_PLAN_COST;
    else return cli_bad_arg("--rule", "expected shallow, deep, random or cost");
    char err[VD_ERR_LEN * 2];
    char *text = read_whole_file(analysis_path, err, sizeof err);
    if (!text) return cli_bad_arg("--analysis", err);
    vd_analysis *a = vd_malloc(sizeof *a);
    char names[VD_ANALYSIS_MAX_BLOCKS][16];
    int count = 0, rc = vd_analysis_from_json(text, a, err, sizeof err) ? CLI_EXIT_USAGE : 0;
    free(text);
    if (rc == 0 && vd_plan_make(a, rule, (vd_plan_measure)measure, target, seed, names, &count, err, sizeof err)) rc = 1;
    if (rc) {
        fprintf(stderr, "vdmini: plan: %s\n", err);
        free(a);
        return rc;
    }
    json_t *remove = json_array();
    for (int i = 0; i < count; i++) json_array_append_new(remove, json_string(names[i]));
    json_t *root = json_pack("{s:o}", "remove", remove);
    if (json_dump_file(root, out, JSON_INDENT(2))) {
        fprintf(stderr, "vdmini: plan: %s: cannot write\n", out);
        rc = 1;
    }
    json_decref(root);
    if (rc == 0) {
        fprintf(stderr, "vdmini: wrote %s (%s rule):", out, rule_name);
        for (int i = 0; i < count; i++) fprintf(stderr, " %s", names[i]);
        fprintf(stderr, "\n");
    }
    free(a);
    return rc;
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
    if (strcmp(argv[1], "distill") == 0) return cmd_distill(argc, argv);
    if (strcmp(argv[1], "convert") == 0) return cmd_convert(argc, argv);
    if (strcmp(argv[1], "prune") == 0) return cmd_prune(argc, argv);
    if (strcmp(argv[1], "analyze") == 0) return cmd_analyze(argc, argv);
    if (strcmp(argv[1], "plan") == 0) return cmd_plan(argc, argv);
    for (const cli_command *c = p->commands; c && c->name; c++)
        if (strcmp(argv[1], c->name) == 0) return c->run(argc, argv);
    fprintf(stderr, "%s: unknown command \"%s\"\n", p->name, argv[1]);
    p->usage(stderr);
    return CLI_EXIT_USAGE;
}
