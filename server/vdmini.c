/* vdmini.c: the command line.
 *
 *   vdmini init --preset tiny|large [--seed N] --out PATH
 *   vdmini info PATH|PRESET
 *   vdmini generate --model PATH --prompt TEXT [--image FILE] [--frames 16] [--size 128x128]
 *                   [--fps 8] [--steps 25] [--guidance 7.5] [--sampler ddim|euler] [--seed N]
 *                   [--device auto|cpu|cuda] [--bf16] [--ae PATH] --out FILE.mp4
 *   vdmini world --count N [--seed S] [--size 128x128] [--frames 16] [--fps 8] --out DIR
 *   vdmini eval --videos DIR --truth FILE.jsonl [--i2v] [--json FILE]
 *   vdmini eval --model PATH [--prompts 16] [--seed S] [--steps 25] [--guidance 7.5] [--i2v]
 *               [--device auto|cpu|cuda] [--bf16] [--ae PATH] [--json FILE]
 *   vdmini train ae|denoiser --config FILE.json [--resume DIR] [--device auto|cpu|cuda] [--bf16]
 *                            [--time-limit SECONDS]
 *   vdmini convert --model PATH|CHECKPOINT_DIR --dtype bf16|f32 --out PATH
 *
 * generate writes the MP4 and, beside it, FILE.png (the first frame). world writes clips of the
 * synthetic world: DIR/clip_NNNNN.mp4, its first frame DIR/clip_NNNNN.png and one line of ground
 * truth per clip in DIR/truth.jsonl. eval judges videos against their ground truth (or renders
 * prompts from the world, generates them with the model and judges those) and prints a Markdown
 * table; --json writes the same figures as JSON; --i2v judges image-to-video, the world's first
 * frame being the given image. train trains the autoencoder, or the denoiser (text encoder and
 * UNet, on latents of a trained autoencoder), as the JSON config says (README.md, "Training"),
 * printing a progress line on stderr; --resume continues from a checkpoint directory exactly.
 * Every bad argument gets a message naming it and exit status 2; a failure while running gets
 * status 1. */
#include "backend.h"
#include "common.h"
#include "evaluator.h"
#include "model.h"
#include "train.h"
#include "video.h"
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
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 2

static void usage(FILE *out)
{
    fprintf(out,
            "usage:\n"
            "  vdmini init --preset tiny|large [--seed N] --out PATH\n"
            "  vdmini info PATH|PRESET\n"
            "  vdmini generate --model PATH --prompt TEXT [--image FILE] [--frames N] [--size WxH]\n"
            "                  [--fps N] [--steps N] [--guidance G] [--sampler ddim|euler] [--seed N]\n"
            "                  [--device auto|cpu|cuda] [--bf16] [--ae PATH] --out FILE.mp4\n"
            "  vdmini world --count N [--seed N] [--size WxH] [--frames N] [--fps N] --out DIR\n"
            "  vdmini eval --videos DIR --truth FILE.jsonl [--i2v] [--json FILE]\n"
            "  vdmini eval --model PATH [--prompts N] [--seed N] [--steps N] [--guidance G] [--i2v]\n"
            "              [--device auto|cpu|cuda] [--bf16] [--ae PATH] [--json FILE]\n"
            "  vdmini train ae|denoiser --config FILE.json [--resume DIR] [--device auto|cpu|cuda] [--bf16]\n"
            "                          [--time-limit SECONDS]\n"
            "  vdmini convert --model PATH|CHECKPOINT_DIR --dtype bf16|f32 --out PATH\n");
}

static int bad_arg(const char *flag, const char *why)
{
    fprintf(stderr, "vdmini: %s: %s\n", flag, why);
    return EXIT_USAGE;
}

static int parse_int(const char *flag, const char *s, long lo, long hi, int *out)
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

static int parse_u64(const char *flag, const char *s, uint64_t *out)
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

/* Returns the value after a flag, or NULL (with a message) when it is missing. */
static const char *flag_value(int argc, char **argv, int *i)
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
            if (!(preset = flag_value(argc, argv, &i))) return EXIT_USAGE;
        } else if (strcmp(argv[i], "--out") == 0) {
            if (!(out = flag_value(argc, argv, &i))) return EXIT_USAGE;
        } else if (strcmp(argv[i], "--seed") == 0) {
            if (!(v = flag_value(argc, argv, &i)) || parse_u64("--seed", v, &seed)) return EXIT_USAGE;
        } else {
            return bad_arg(argv[i], "unknown option for init");
        }
    }
    if (!preset) return bad_arg("--preset", "required (tiny or large)");
    if (!out) return bad_arg("--out", "required");
    char err[VD_ERR_LEN];
    if (vd_init_preset(preset, seed, out, err)) {
        fprintf(stderr, "vdmini: init: %s\n", err);
        return strstr(err, "unknown preset") ? EXIT_USAGE : 1;
    }
    fprintf(stderr, "vdmini: wrote %s (preset %s, seed %" PRIu64 ")\n", out, preset, seed);
    return 0;
}

static int cmd_info(int argc, char **argv)
{
    if (argc != 3) {
        usage(stderr);
        return EXIT_USAGE;
    }
    char err[VD_ERR_LEN];
    if (vd_print_info(argv[2], stdout, err)) {
        fprintf(stderr, "vdmini: info: %s\n", err);
        return 1;
    }
    return 0;
}

typedef struct {
    double start;
    int tty;
} progress_state;

static int show_progress(void *user, int step, int total)
{
    progress_state *s = user;
    double elapsed = vd_now() - s->start, eta = elapsed / step * (total - step);
    int width = 30, filled = width * step / total;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "%s[%s] step %d/%d  %.1fs elapsed, %.1fs left%s", s->tty ? "\r" : "", bar, step, total,
            elapsed, eta, s->tty && step < total ? "" : "\n");
    fflush(stderr);
    return 0;
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int cmd_generate(int argc, char **argv)
{
    const char *model = NULL, *prompt = NULL, *image = NULL, *out = NULL, *ae = NULL, *v;
    int frames = 16, width = 128, height = 128, fps = 8, steps = 25, bf16 = 0, seed_given = 0;
    float guidance = 7.5f;
    vd_sampler_kind sampler = VD_SAMPLER_DDIM;
    vd_device device = VD_DEVICE_AUTO;
    uint64_t seed = 0;
    for (int i = 2; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "--model") == 0) {
            if (!(model = flag_value(argc, argv, &i))) return EXIT_USAGE;
        } else if (strcmp(f, "--prompt") == 0) {
            if (!(prompt = flag_value(argc, argv, &i))) return EXIT_USAGE;
        } else if (strcmp(f, "--image") == 0) {
            if (!(image = flag_value(argc, argv, &i))) return EXIT_USAGE;
        } else if (strcmp(f, "--out") == 0) {
            if (!(out = flag_value(argc, argv, &i))) return EXIT_USAGE;
        } else if (strcmp(f, "--ae") == 0) {
            if (!(ae = flag_value(argc, argv, &i))) return EXIT_USAGE;
        } else if (strcmp(f, "--frames") == 0) {
            if (!(v = flag_value(argc, argv, &i)) || parse_int(f, v, 1, 256, &frames)) return EXIT_USAGE;
        } else if (strcmp(f, "--fps") == 0) {
            if (!(v = flag_value(argc, argv, &i)) || parse_int(f, v, 1, 120, &fps)) return EXIT_USAGE;
        } else if (strcmp(f, "--steps") == 0) {
            if (!(v = flag_value(argc, argv, &i)) || parse_int(f, v, 1, 1000, &steps)) return EXIT_USAGE;
        } else if (strcmp(f, "--seed") == 0) {
            if (!(v = flag_value(argc, argv, &i)) || parse_u64(f, v, &seed)) return EXIT_USAGE;
            seed_given = 1;
        } else if (strcmp(f, "--size") == 0) {
            if (!(v = flag_value(argc, argv, &i))) return EXIT_USAGE;
            char tail;
            if (sscanf(v, "%dx%d%c", &width, &height, &tail) != 2 || width < 1 || height < 1 || width > 4096 || height > 4096)
                return bad_arg(f, "expected WIDTHxHEIGHT, e.g. 128x128");
        } else if (strcmp(f, "--guidance") == 0) {
            if (!(v = flag_value(argc, argv, &i))) return EXIT_USAGE;
            char *end;
            guidance = strtof(v, &end);
            if (end == v || *end || !(guidance >= 0.0f && guidance <= 100.0f))
                return bad_arg(f, "expected a number between 0 and 100");
        } else if (strcmp(f, "--sampler") == 0) {
            if (!(v = flag_value(argc, argv, &i))) return EXIT_USAGE;
            if (strcmp(v, "ddim") == 0) sampler = VD_SAMPLER_DDIM;
            else if (strcmp(v, "euler") == 0) sampler = VD_SAMPLER_EULER;
            else return bad_arg(f, "expected ddim or euler");
        } else if (strcmp(f, "--device") == 0) {
            if (!(v = flag_value(argc, argv, &i))) return EXIT_USAGE;
            if (strcmp(v, "auto") == 0) device = VD_DEVICE_AUTO;
            else if (strcmp(v, "cpu") == 0) device = VD_DEVICE_CPU;
            else if (strcmp(v, "cuda") == 0) device = VD_DEVICE_CUDA;
            else return bad_arg(f, "expected auto, cpu or cuda");
        } else if (strcmp(f, "--bf16") == 0) {
            bf16 = 1;
        } else {
            return bad_arg(f, "unknown option for generate");
        }
    }
    if (!model) return bad_arg("--model", "required");
    if (!prompt) return bad_arg("--prompt", "required");
    if (!out) return bad_arg("--out", "required");
    if (!has_suffix(out, ".mp4")) return bad_arg("--out", "the output must end in .mp4");
    if (!seed_given) seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);

    char err[VD_ERR_LEN];
    vd_engine *e = vd_engine_open(model, ae, device, bf16, err);
    if (!e) {
        fprintf(stderr, "vdmini: %s\n", err);
        return 1;
    }
    vd_model_limits lim;
    vd_engine_limits(e, &lim);
    if (width % lim.latent_div || height % lim.latent_div || width % 2 || height % 2) {
        fprintf(stderr, "vdmini: --size: width and height must be multiples of %d\n", lim.latent_div);
        vd_engine_close(e);
        return EXIT_USAGE;
    }
    char unknown[1024];
    if (vd_unknown_words(e, prompt, unknown, sizeof unknown) > 0)
        fprintf(stderr, "vdmini: warning: the model does not know these words of the prompt: %s\n", unknown);

    int rc = 1;
    float *image_chw = NULL, *frames_f = NULL;
    uint8_t *rgb = NULL;
    if (image) {
        rgb = vd_malloc((size_t)width * height * 3);
        if (vd_image_read_file(image, NULL, width, height, rgb, err, sizeof err)) {
            fprintf(stderr, "vdmini: --image: %s\n", err);
            goto done;
        }
        image_chw = vd_malloc((size_t)3 * width * height * sizeof(float));
        vd_rgb8_to_chw(rgb, width, height, image_chw);
        free(rgb);
        rgb = NULL;
    }
    fprintf(stderr, "vdmini: generating %d frames at %dx%d on %s, %d %s steps, guidance %.2f, seed %" PRIu64 "\n",
            frames, width, height, vd_engine_device_name(e), steps, sampler == VD_SAMPLER_DDIM ? "ddim" : "euler",
            guidance, seed);
    vd_gen_params p = {.prompt = prompt, .image = image_chw, .frames = frames, .width = width, .height = height,
                       .steps = steps, .guidance = guidance, .sampler = sampler, .seed = seed};
    frames_f = vd_malloc((size_t)frames * 3 * width * height * sizeof(float));
    progress_state ps = {.start = vd_now(), .tty = isatty(2)};
    if (vd_generate(e, &p, frames_f, show_progress, &ps, err) != 0) {
        fprintf(stderr, "vdmini: generate: %s\n", err);
        goto done;
    }
    rgb = vd_malloc((size_t)frames * width * height * 3);
    vd_frames_to_rgb8(frames_f, frames, width, height, rgb);
    if (vd_mp4_write(out, rgb, frames, width, height, fps, err, sizeof err)) {
        fprintf(stderr, "vdmini: %s\n", err);
        goto done;
    }
    size_t len = strlen(out);
    char *thumb = vd_malloc(len + 1);
    memcpy(thumb, out, len - 4);
    memcpy(thumb + len - 4, ".png", 5);
    if (vd_png_write(thumb, rgb, width, height, err, sizeof err)) {
        fprintf(stderr, "vdmini: %s\n", err);
        free(thumb);
        goto done;
    }
    fprintf(stderr, "vdmini: wrote %s and %s in %.1fs\n", out, thumb, vd_now() - ps.start);
    free(thumb);
    rc = 0;
done:
    free(rgb);
    free(image_chw);
    free(frames_f);
    vd_engine_close(e);
    return rc;
}

/* ---- the synthetic world and the evaluator ---- */

static int parse_size(const char *flag, const char *v, int *width, int *height)
{
    char tail;
    if (sscanf(v, "%dx%d%c", width, height, &tail) != 2 || *width < 8 || *height < 8 || *width > VD_WORLD_MAX_SIDE ||
        *height > VD_WORLD_MAX_SIDE || *width % 2 || *height % 2) {
        fprintf(stderr, "vdmini: %s: expected WIDTHxHEIGHT, even numbers from 8 to %d, e.g. 128x128\n", flag, VD_WORLD_MAX_SIDE);
        return -1;
    }
    return 0;
}

static char *path_join(const char *dir, const char *name)
{
    size_t len = strlen(dir) + strlen(name) + 2;
    char *path = vd_malloc(len);
    snprintf(path, len, "%s/%s", dir, name);
    return path;
}

static int cmd_world(int argc, char **argv)
{
    const char *out = NULL, *v;
    int count = 0, width = 128, height = 128, frames = 16, fps = 8;
    uint64_t seed = 0;
    for (int i = 2; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "--out") == 0) {
            if (!(out = flag_value(argc, argv, &i))) return EXIT_USAGE;
        } else if (strcmp(f, "--count") == 0) {
            if (!(v = flag_value(argc, argv, &i)) || parse_int(f, v, 1, 1000000, &count)) return EXIT_USAGE;
        } else if (strcmp(f, "--seed") == 0) {
            if (!(v = flag_value(argc, argv, &i)) || parse_u64(f, v, &seed)) return EXIT_USAGE;
        } else if (strcmp(f, "--size") == 0) {
            if (!(v = flag_value(argc, argv, &i)) || parse_size(f, v, &width, &height)) return EXIT_USAGE;
        } else if (strcmp(f, "--frames") == 0) {
            if (!(v = flag_value(argc, argv, &i)) || parse_int(f, v, 1, VD_WORLD_MAX_FRAMES, &frames)) return EXIT_USAGE;
        } else if (strcmp(f, "--fps") == 0) {
            if (!(v = flag_value(argc, argv, &i)) || parse_int(f, v, 1, 120, &fps)) return EXIT_USAGE;
        } else {
            return bad_arg(f, "unknown option for world");
        }
    }
    if (!count) return bad_arg("--count", "required");
    if (!out) return bad_arg("--out", "required");
    if (mkdir(out, 0777) && errno != EEXIST) {
        fprintf(stderr, "vdmini: --out: cannot create %s: %s\n", out, strerror(errno));
        return 1;
    }
    char *truth_path = path_join(out, "truth.jsonl");
    FILE *truth_file = fopen(truth_path, "w");
    if (!truth_file) {
        fprintf(stderr, "vdmini: cannot write %s: %s\n", truth_path, strerror(errno));
        free(truth_path);
        return 1;
    }
    double start = vd_now();
    vd_loader *loader = vd_loader_new(seed, width, height, frames, 2, 4);
    float *pixels = vd_malloc((size_t)frames * 3 * width * height * sizeof(float));
    uint8_t *rgb = vd_malloc((size_t)frames * width * height * 3);
    vd_clip_truth *truth = vd_malloc(sizeof *truth);
    int rc = 0;
    for (int i = 0; i < count && !rc; i++) {
        char video[32], image[32], err[VD_ERR_LEN];
        snprintf(video, sizeof video, "clip_%05d.mp4", i);
        snprintf(image, sizeof image, "clip_%05d.png", i);
        vd_loader_next(loader, pixels, truth);
        vd_frames_to_rgb8(pixels, frames, width, height, rgb);
        char *video_path = path_join(out, video), *image_path = path_join(out, image);
        if (vd_mp4_write(video_path, rgb, frames, width, height, fps, err, sizeof err) ||
            vd_png_write(image_path, rgb, width, height, err, sizeof err)) {
            fprintf(stderr, "vdmini: %s\n", err);
            rc = 1;
        } else {
            char *line = vd_world_truth_to_json(truth, video, image);
            fprintf(truth_file, "%s\n", line);
            free(line);
        }
        free(video_path);
        free(image_path);
    }
    if (fclose(truth_file) && !rc) {
        fprintf(stderr, "vdmini: cannot write %s: %s\n", truth_path, strerror(errno));
        rc = 1;
    }
    if (!rc) fprintf(stderr, "vdmini: wrote %d clips of %d frames at %dx%d and %s in %.1fs\n", count, frames, width, height, truth_path, vd_now() - start);
    vd_loader_free(loader);
    free(truth_path);
    free(pixels);
    free(rgb);
    free(truth);
    return rc;
}

/* The truth's own clip, judged as the reference for the Fréchet distance; its first frame is the
 * image-to-video condition (image may be NULL). */
static void judge_reference(const vd_clip_truth *t, vd_eval_set *reference, float *image)
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

/* Judges each clip of DIR against its line of the truth file. */
static int eval_videos(const char *dir, const char *truth_path, int i2v, vd_eval_set *set, vd_eval_set *reference)
{
    FILE *in = fopen(truth_path, "r");
    if (!in) {
        fprintf(stderr, "vdmini: --truth: cannot read %s: %s\n", truth_path, strerror(errno));
        return 1;
    }
    char *line = NULL, video[512], err[VD_ERR_LEN];
    size_t cap = 0;
    int number = 0, rc = 0;
    vd_clip_truth *truth = vd_malloc(sizeof *truth);
    while (!rc && getline(&line, &cap, in) > 0) {
        number++;
        if (strspn(line, " \t\r\n") == strlen(line)) continue;
        if (vd_world_truth_from_json(line, truth, video, sizeof video, err, sizeof err) || !video[0]) {
            fprintf(stderr, "vdmini: %s:%d: %s\n", truth_path, number, video[0] ? err : "no \"video\" file named");
            rc = 1;
            break;
        }
        char *path = path_join(dir, video);
        uint8_t *rgb = NULL;
        int frames, width, height;
        double fps;
        float *image = i2v ? vd_malloc((size_t)3 * truth->width * truth->height * sizeof(float)) : NULL;
        vd_eval_clip clip;
        if (vd_mp4_read(path, &rgb, &frames, &width, &height, &fps, err, sizeof err) ||
            (judge_reference(truth, reference, image),
             vd_eval_clip_rgb8(truth, rgb, frames, width, height, image, &clip, err, sizeof err))) {
            fprintf(stderr, "vdmini: %s: %s\n", path, err);
            rc = 1;
        } else {
            vd_eval_set_add(set, &clip);
        }
        free(rgb);
        free(image);
        free(path);
    }
    if (!rc && number == 0) {
        fprintf(stderr, "vdmini: --truth: %s has no clips\n", truth_path);
        rc = 1;
    }
    free(truth);
    free(line);
    fclose(in);
    return rc;
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
        judge_reference(truth, reference, image);
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

static int cmd_eval(int argc, char **argv)
{
    const char *videos = NULL, *truth = NULL, *json_path = NULL, *v;
    model_eval_options m = {.prompts = 16, .steps = 25, .guidance = 7.5f, .device = VD_DEVICE_AUTO};
    for (int i = 2; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "--videos") == 0) {
            if (!(videos = flag_value(argc, argv, &i))) return EXIT_USAGE;
        } else if (strcmp(f, "--truth") == 0) {
            if (!(truth = flag_value(argc, argv, &i))) return EXIT_USAGE;
        } else if (strcmp(f, "--json") == 0) {
            if (!(json_path = flag_value(argc, argv, &i))) return EXIT_USAGE;
        } else if (strcmp(f, "--model") == 0) {
            if (!(m.model = flag_value(argc, argv, &i))) return EXIT_USAGE;
        } else if (strcmp(f, "--ae") == 0) {
            if (!(m.ae = flag_value(argc, argv, &i))) return EXIT_USAGE;
        } else if (strcmp(f, "--prompts") == 0) {
            if (!(v = flag_value(argc, argv, &i)) || parse_int(f, v, 1, 100000, &m.prompts)) return EXIT_USAGE;
        } else if (strcmp(f, "--steps") == 0) {
            if (!(v = flag_value(argc, argv, &i)) || parse_int(f, v, 1, 1000, &m.steps)) return EXIT_USAGE;
        } else if (strcmp(f, "--seed") == 0) {
            if (!(v = flag_value(argc, argv, &i)) || parse_u64(f, v, &m.seed)) return EXIT_USAGE;
        } else if (strcmp(f, "--guidance") == 0) {
            if (!(v = flag_value(argc, argv, &i))) return EXIT_USAGE;
            char *end;
            m.guidance = strtof(v, &end);
            if (end == v || *end || !(m.guidance >= 0.0f && m.guidance <= 100.0f))
                return bad_arg(f, "expected a number between 0 and 100");
        } else if (strcmp(f, "--device") == 0) {
            if (!(v = flag_value(argc, argv, &i))) return EXIT_USAGE;
            if (strcmp(v, "auto") == 0) m.device = VD_DEVICE_AUTO;
            else if (strcmp(v, "cpu") == 0) m.device = VD_DEVICE_CPU;
            else if (strcmp(v, "cuda") == 0) m.device = VD_DEVICE_CUDA;
            else return bad_arg(f, "expected auto, cpu or cuda");
        } else if (strcmp(f, "--i2v") == 0) {
            m.i2v = 1;
        } else if (strcmp(f, "--bf16") == 0) {
            m.bf16 = 1;
        } else {
            return bad_arg(f, "unknown option for eval");
        }
    }
    if (videos && m.model) return bad_arg("--videos", "give either --videos or --model, not both");
    if (!videos && !m.model) return bad_arg("--videos", "required (or --model)");
    if (videos && !truth) return bad_arg("--truth", "required with --videos");
    if (m.model && truth) return bad_arg("--truth", "only with --videos (--model draws its prompts from the world)");

    vd_eval_set *set = vd_eval_set_new(), *reference = vd_eval_set_new();
    int rc = videos ? eval_videos(videos, truth, m.i2v, set, reference) : eval_model(&m, set, reference);
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
    if (argc < 3) return bad_arg("train", "which model: ae (the autoencoder) or denoiser");
    int denoiser = strcmp(argv[2], "denoiser") == 0;
    if (!denoiser && strcmp(argv[2], "ae") != 0) return bad_arg(argv[2], "unknown model to train (ae or denoiser)");
    const char *what = denoiser ? "train denoiser" : "train ae";
    const char *config = NULL, *resume = NULL;
    vd_device device = VD_DEVICE_AUTO;
    int bf16 = 0, time_limit = 0;
    for (int i = 3; i < argc; i++) {
        const char *f = argv[i], *v;
        if (strcmp(f, "--config") == 0) {
            if (!(config = flag_value(argc, argv, &i))) return EXIT_USAGE;
        } else if (strcmp(f, "--resume") == 0) {
            if (!(resume = flag_value(argc, argv, &i))) return EXIT_USAGE;
        } else if (strcmp(f, "--device") == 0) {
            if (!(v = flag_value(argc, argv, &i))) return EXIT_USAGE;
            if (strcmp(v, "auto") == 0) device = VD_DEVICE_AUTO;
            else if (strcmp(v, "cpu") == 0) device = VD_DEVICE_CPU;
            else if (strcmp(v, "cuda") == 0) device = VD_DEVICE_CUDA;
            else return bad_arg("--device", "expected auto, cpu or cuda");
        } else if (strcmp(f, "--bf16") == 0) {
            bf16 = 1;
        } else if (strcmp(f, "--time-limit") == 0) {
            if (!(v = flag_value(argc, argv, &i)) || parse_int(f, v, 1, INT_MAX, &time_limit)) return EXIT_USAGE;
        } else {
            return bad_arg(f, denoiser ? "unknown option for train denoiser" : "unknown option for train ae");
        }
    }
    if (!config) return bad_arg("--config", "required (a JSON training config)");
    vd_train_config cfg;
    char err[VD_ERR_LEN * 2];
    vd_train_config_defaults(&cfg);
    cfg.target = denoiser ? VD_TRAIN_DENOISER : VD_TRAIN_AE;
    if (vd_train_config_load(config, &cfg, err, sizeof err)) return bad_arg("--config", err);
    struct stat sb;
    if (resume && (stat(resume, &sb) || !S_ISDIR(sb.st_mode)))
        return bad_arg("--resume", "not a checkpoint directory");

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
            if (!(in = flag_value(argc, argv, &i))) return EXIT_USAGE;
        } else if (strcmp(argv[i], "--out") == 0) {
            if (!(out = flag_value(argc, argv, &i))) return EXIT_USAGE;
        } else if (strcmp(argv[i], "--dtype") == 0) {
            if (!(dtype = flag_value(argc, argv, &i))) return EXIT_USAGE;
        } else {
            return bad_arg(argv[i], "unknown option for convert");
        }
    }
    if (!in) return bad_arg("--model", "required");
    if (!out) return bad_arg("--out", "required");
    if (!dtype || (strcmp(dtype, "bf16") != 0 && strcmp(dtype, "f32") != 0)) return bad_arg("--dtype", "expected bf16 or f32");
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

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "init") == 0) return cmd_init(argc, argv);
    if (strcmp(argv[1], "info") == 0) return cmd_info(argc, argv);
    if (strcmp(argv[1], "generate") == 0) return cmd_generate(argc, argv);
    if (strcmp(argv[1], "world") == 0) return cmd_world(argc, argv);
    if (strcmp(argv[1], "eval") == 0) return cmd_eval(argc, argv);
    if (strcmp(argv[1], "train") == 0) return cmd_train(argc, argv);
    if (strcmp(argv[1], "convert") == 0) return cmd_convert(argc, argv);
    fprintf(stderr, "vdmini: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
