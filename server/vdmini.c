/* vdmini.c: the command line.
 *
 *   vdmini init --preset tiny|large [--seed N] --out PATH
 *   vdmini info PATH|PRESET
 *   vdmini generate --model PATH --prompt TEXT [--image FILE] [--frames 16] [--size 128x128]
 *                   [--fps 8] [--steps 25] [--guidance 7.5] [--sampler ddim|euler] [--seed N]
 *                   [--device auto|cpu|cuda] [--bf16] [--ae PATH] --out FILE.mp4
 *
 * generate writes the MP4 and, beside it, FILE.png (the first frame). Every bad argument gets a
 * message naming it and exit status 2; a failure while running gets status 1. */
#include "common.h"
#include "video.h"
#include "vdmini.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
            "                  [--device auto|cpu|cuda] [--bf16] [--ae PATH] --out FILE.mp4\n");
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

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "init") == 0) return cmd_init(argc, argv);
    if (strcmp(argv[1], "info") == 0) return cmd_info(argc, argv);
    if (strcmp(argv[1], "generate") == 0) return cmd_generate(argc, argv);
    fprintf(stderr, "vdmini: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
