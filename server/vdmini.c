/* vdmini.c: the command line.
 *
 *   vdmini init --preset tiny|large [--seed N] --out PATH
 *   vdmini info PATH|PRESET
 *   vdmini generate --model PATH --prompt TEXT [--image FILE] [--frames 16] [--size 128x128]
 *                   [--fps 8] [--steps 25] [--guidance 4] [--guidance-rescale 0] [--sampler ddim|euler]
 *                   [--eta 0] [--guide-model PATH] [--guide-units LIST] [--guide-scale A]
 *                   [--seed N] [--device auto|cpu|cuda] [--bf16] [--ae PATH] --out FILE.mp4
 *   vdmini world --count N [--seed S] [--size 128x128] [--frames 16] [--fps 8] [--ae PATH] --out DIR
 *   vdmini eval --videos DIR --truth FILE.jsonl [--i2v] [--json FILE]
 *   vdmini eval --model PATH [--prompts 16] [--seed S] [--steps 25] [--guidance 4]
 *               [--guidance-rescale 0] [--eta 0] [--guide-model PATH] [--guide-units LIST] [--guide-scale A] [--i2v]
 *               [--batch 8] [--device auto|cpu|cuda] [--bf16] [--ae PATH] [--json FILE]
 *   vdmini train ae|denoiser --config FILE.json [--resume DIR] [--device auto|cpu|cuda] [--bf16]
 *                            [--time-limit SECONDS]
 *   vdmini convert --model PATH|CHECKPOINT_DIR --dtype bf16|f32|f8 [--max-file-mb N] --out PATH
 *   vdmini prune --teacher PATH --plan FILE.json [--seed N] --out PATH
 *   vdmini analyze --teacher PATH [--prompts 8] [--steps 25] ... --out FILE.json
 *   vdmini plan --analysis FILE.json --params F|--flops F|--latency F [--rule shallow|deep|random|cost] --out PLAN.json
 *
 * generate writes the MP4 and, beside it, FILE.png (the first frame). world writes clips of the
 * synthetic world: DIR/clip_NNNNN.mp4, its first frame DIR/clip_NNNNN.png and one line of ground
 * truth per clip in DIR/truth.jsonl. eval judges videos against their ground truth (or renders
 * prompts from the world, generates them with the model and judges those) and prints a Markdown
 * table; --json writes the same figures as JSON; --i2v judges image-to-video, the world's first
 * frame being the given image. world --ae passes every clip through an autoencoder (encode, then
 * decode), so that eval --videos on them measures the ceiling it puts on every model's scores.
 * train trains the autoencoder, or the denoiser (text encoder and UNet, on latents of a trained
 * autoencoder), as the JSON config says (README.md, "Training"), printing a progress line on
 * stderr; --resume continues from a checkpoint directory exactly. Every bad argument gets a
 * message naming it and exit status 2; a failure while running gets status 1.
 *
 * This file holds what needs the video layer (video.c, FFmpeg): generate, world and eval --videos.
 * The engine-only commands (init, info, train, convert, eval --model) and the dispatcher live in
 * cli_engine.c, shared with vdmini-core (vdmini_core.c), the same CLI built without video. */
#include "cli_engine.h"
#include "common.h"
#include "evaluator.h"
#include "model.h"
#include "video.h"
#include "vdmini.h"
#include "world.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *out)
{
    cli_usage_head(out, "vdmini");
    fprintf(out,
            "  vdmini generate --model PATH --prompt TEXT [--image FILE] [--frames N] [--size WxH]\n"
            "                  [--fps N] [--steps N] [--guidance G] [--guidance-rescale F] [--sampler ddim|euler]\n"
            "                  [--eta E] [--guide-model PATH] [--guide-units LIST] [--guide-scale A]\n"
            "                  [--seed N] [--device auto|cpu|cuda] [--bf16] [--ae PATH] --out FILE.mp4\n"
            "  vdmini world --count N [--seed N] [--size WxH] [--frames N] [--fps N] [--ae PATH] --out DIR\n"
            "  vdmini eval --videos DIR --truth FILE.jsonl [--i2v] [--json FILE]\n");
    cli_usage_eval_model(out, "vdmini");
    cli_usage_tail(out, "vdmini");
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
    int frames = 16, width = 128, height = 128, fps = 8, steps = 25, bf16 = 0, seed_given = 0, guidance_given = 0;
    float guidance = 0.0f, guidance_rescale = 0.0f, eta = 0.0f;
    vd_sampler_kind sampler = VD_SAMPLER_DDIM;
    vd_device device = VD_DEVICE_AUTO;
    uint64_t seed = 0;
    cli_guide guide = {0};
    for (int i = 2; i < argc; i++) {
        const char *f = argv[i];
        int guide_flag = cli_parse_guide_flag(argc, argv, &i, &guide);
        if (guide_flag < 0) return CLI_EXIT_USAGE;
        if (guide_flag > 0) continue;
        if (strcmp(f, "--model") == 0) {
            if (!(model = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--prompt") == 0) {
            if (!(prompt = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--image") == 0) {
            if (!(image = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--out") == 0) {
            if (!(out = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--ae") == 0) {
            if (!(ae = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--frames") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_int(f, v, 1, 256, &frames)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--fps") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_int(f, v, 1, 120, &fps)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--steps") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_int(f, v, 1, 1000, &steps)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--seed") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_u64(f, v, &seed)) return CLI_EXIT_USAGE;
            seed_given = 1;
        } else if (strcmp(f, "--size") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
            char tail;
            if (sscanf(v, "%dx%d%c", &width, &height, &tail) != 2 || width < 1 || height < 1 || width > 4096 || height > 4096)
                return cli_bad_arg(f, "expected WIDTHxHEIGHT, e.g. 128x128");
        } else if (strcmp(f, "--guidance") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_number(f, v, 0, 100, &guidance)) return CLI_EXIT_USAGE;
            guidance_given = 1;
        } else if (strcmp(f, "--guidance-rescale") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_number(f, v, 0, 1, &guidance_rescale))
                return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--sampler") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_sampler(f, v, &sampler)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--eta") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_number(f, v, 0, 1, &eta)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--device") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_device(f, v, &device)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--bf16") == 0) {
            bf16 = 1;
        } else {
            return cli_bad_arg(f, "unknown option for generate");
        }
    }
    if (!model) return cli_bad_arg("--model", "required");
    if (!prompt) return cli_bad_arg("--prompt", "required");
    if (!out) return cli_bad_arg("--out", "required");
    if (!has_suffix(out, ".mp4")) return cli_bad_arg("--out", "the output must end in .mp4");
    if (cli_check_guide(&guide)) return CLI_EXIT_USAGE;
    if (eta > 0 && sampler != VD_SAMPLER_DDIM) return cli_bad_arg("--eta", "only with --sampler ddim");
    if (!seed_given) seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);

    char err[VD_ERR_LEN];
    vd_engine *e = vd_engine_open(model, ae, device, bf16, err);
    if (!e) {
        fprintf(stderr, "vdmini: %s\n", err);
        return 1;
    }
    if (cli_apply_guide(e, &guide, "generate")) {
        vd_engine_close(e);
        return 1;
    }
    vd_model_limits lim;
    vd_engine_limits(e, &lim);
    if (!guidance_given) guidance = vd_default_guidance(model);
    if (width % lim.latent_div || height % lim.latent_div || width % 2 || height % 2) {
        fprintf(stderr, "vdmini: --size: width and height must be multiples of %d\n", lim.latent_div);
        vd_engine_close(e);
        return CLI_EXIT_USAGE;
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
    fprintf(stderr, "vdmini: generating %d frames at %dx%d on %s, %d %s steps (eta %.2f), guidance %.2f, guide scale %.2f, seed %" PRIu64 "\n",
            frames, width, height, vd_engine_device_name(e), steps, sampler == VD_SAMPLER_DDIM ? "ddim" : "euler", eta,
            guidance, guide.scale, seed);
    vd_gen_params p = {.prompt = prompt, .image = image_chw, .frames = frames, .width = width, .height = height,
                       .steps = steps, .guidance = guidance, .guidance_rescale = guidance_rescale,
                       .guide_scale = guide.scale, .sampler = sampler, .eta = eta, .seed = seed};
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

/* world --ae: each clip's frames through the autoencoder (encode, then decode) in place, so that
 * eval --videos measures the ceiling the autoencoder puts on every model's scores. */
static void round_trip_frames(vd_model *ae, float *pixels, int frames, int width, int height)
{
    int f = 1 << (ae->cfg.ae.levels - 1), h = height / f, w = width / f;
    size_t n_img = (size_t)frames * 3 * width * height, n_z = (size_t)frames * ae->cfg.ae.latent_channels * h * w;
    vd_backend *be = ae->be;
    float *img = be->alloc(be, n_img * sizeof(float)), *z = be->alloc(be, n_z * sizeof(float));
    be->upload(be, img, pixels, n_img * sizeof(float));
    vd_ae_encode(ae, img, frames, height, width, z);
    vd_ae_decode(ae, z, frames, h, w, img);
    be->download(be, pixels, img, n_img * sizeof(float));
    be->release(be, img);
    be->release(be, z);
}

static int cmd_world(int argc, char **argv)
{
    const char *out = NULL, *ae_path = NULL, *v;
    int count = 0, width = 128, height = 128, frames = 16, fps = 8;
    uint64_t seed = 0;
    for (int i = 2; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "--out") == 0) {
            if (!(out = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--ae") == 0) {
            if (!(ae_path = cli_flag_value(argc, argv, &i))) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--count") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_int(f, v, 1, 1000000, &count)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--seed") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_u64(f, v, &seed)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--size") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || parse_size(f, v, &width, &height)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--frames") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_int(f, v, 1, VD_WORLD_MAX_FRAMES, &frames)) return CLI_EXIT_USAGE;
        } else if (strcmp(f, "--fps") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || cli_parse_int(f, v, 1, 120, &fps)) return CLI_EXIT_USAGE;
        } else {
            return cli_bad_arg(f, "unknown option for world");
        }
    }
    if (!count) return cli_bad_arg("--count", "required");
    if (!out) return cli_bad_arg("--out", "required");
    vd_model *ae = NULL;
    if (ae_path) {
        char err[VD_ERR_LEN];
        ae = vd_calloc(1, sizeof *ae);
        if (vd_model_load(ae, ae_path, err, sizeof err) || !ae->cfg.ae.present) {
            fprintf(stderr, "vdmini: --ae: %s\n", ae->cfg.ae.present ? err : "the file holds no autoencoder");
            vd_model_free(ae);
            free(ae);
            return 1;
        }
        int f = 1 << (ae->cfg.ae.levels - 1);
        if (width % f || height % f) {
            fprintf(stderr, "vdmini: --size: width and height must be multiples of %d for this autoencoder\n", f);
            vd_model_free(ae);
            free(ae);
            return CLI_EXIT_USAGE;
        }
        vd_model_attach(ae, vd_backend_cpu());
    }
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
        if (ae) round_trip_frames(ae, pixels, frames, width, height);
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
    if (ae) vd_model_free(ae);
    free(ae);
    free(truth_path);
    free(pixels);
    free(rgb);
    free(truth);
    return rc;
}

/* eval --videos: judges each clip of DIR against its line of the truth file. */
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
            (cli_judge_reference(truth, reference, image),
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

int main(int argc, char **argv)
{
    static const cli_command video_commands[] = {{"generate", cmd_generate}, {"world", cmd_world}, {NULL, NULL}};
    const cli_program vdmini = {.name = "vdmini", .usage = usage, .commands = video_commands, .eval_videos = eval_videos};
    return cli_main(&vdmini, argc, argv);
}
