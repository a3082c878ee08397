/* test_train.c: the training driver — the config parser, the learning-rate schedule, the EMA
 * update, a checkpoint cut into several small shards that reads back bit for bit, and resume
 * exactness: 6 steps straight against 3 steps, a checkpoint, everything freed, and 3 more steps
 * from the checkpoint, which must give the same losses, weights and EMA bit for bit. The same
 * resume check runs for the denoiser, whose loss must also be finite and fall over its steps, and
 * the denoiser spread over two backends must compute what it computes on one; the object loss
 * weight map, and a run under the object-weighted loss against the plain one; every shipped
 * recipe parses.
 * Runs on the CPU reference backend (plain loops, one thread: deterministic) with a very small
 * autoencoder, text encoder and UNet. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "common.h"
#include "config.h"
#include "model.h"
#include "rng.h"
#include "sampler.h"
#include "small_model.h"
#include "train.h"
#include "vdmini.h"

#define STEPS 6
#define DENOISER_STEPS 10

static char work_dir[] = "vdmini-train-XXXXXX";

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(work_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return nftw(work_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A tiny run in work_dir/NAME: channels [8, 16], 32x32 frames, two frames per clip, two clips
 * per step. */
static void tiny_config(vd_train_config *c, const char *name)
{
    char json[1024], err[256];
    snprintf(json, sizeof json,
             "{\"steps\": %d, \"batch\": 2, \"lr\": 0.002, \"min_lr\": 0.0002, \"warmup_steps\": 2,"
             " \"grad_accum\": 2, \"ema_decay\": 0.9, \"loader_threads\": 2, \"seed\": 7, \"out_dir\": \"%s/%s\","
             " \"ae\": {\"channels\": [8, 16], \"latent_channels\": 4, \"groups\": 4, \"image_size\": 32}}",
             STEPS, work_dir, name);
    vd_train_config_defaults(c);
    int rc = vd_train_config_parse(json, c, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
}

/* A model file of small_model.h's model, randomly initialised: the denoiser runs take their
 * autoencoder and their start from it. */
static void tiny_model_file(char *path, size_t len)
{
    snprintf(path, len, "%s/tiny-model.safetensors", work_dir);
    if (access(path, F_OK) == 0) return;
    vd_model_config mc;
    assert_int_equal(small_model_config(&mc), 0);
    vd_model m;
    char err[256];
    int rc = vd_model_build(&m, &mc, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    vd_model_init_random(&m, 3);
    assert_int_equal(vd_model_save(&m, path, VD_ST_F32, err, sizeof err), 0);
    vd_model_free(&m);
    vd_config_free(&mc);
}

/* A denoiser run in work_dir/NAME on tiny_model_file: clips of 4 frames, one clip per step. */
static void denoiser_config(vd_train_config *c, const char *name)
{
    char json[4096], err[256], model[1100];
    tiny_model_file(model, sizeof model);
    snprintf(json, sizeof json,
             "{\"steps\": %d, \"batch\": 4, \"lr\": 0.002, \"min_lr\": 0.0002, \"warmup_steps\": 2,"
             " \"ema_decay\": 0.9, \"loader_threads\": 2, \"seed\": 5, \"out_dir\": \"%s/%s\","
             " \"ae\": \"%s\", \"init\": \"%s\"}",
             DENOISER_STEPS, work_dir, name, model, model);
    vd_train_config_defaults(c);
    c->target = VD_TRAIN_DENOISER;
    int rc = vd_train_config_parse(json, c, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
}

static void test_config(void **state)
{
    (void)state;
    vd_train_config c;
    char err[256];
    tiny_config(&c, "parsed");
    assert_int_equal(c.steps, STEPS);
    assert_int_equal(c.grad_accum, 2);
    assert_int_equal(c.ae.levels, 2);
    assert_int_equal(c.checkpoint_every, 1000); /* a default kept */
    vd_train_config_defaults(&c);
    assert_int_equal(vd_train_config_parse("{\"out_dir\": \"x\", \"stepz\": 3}", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "stepz"));
    vd_train_config_defaults(&c);
    assert_int_equal(vd_train_config_parse("{\"steps\": 3}", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "out_dir"));
    vd_train_config_defaults(&c);
    assert_int_equal(vd_train_config_parse("{\"out_dir\": \"x\", \"lr\": -1}", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "lr"));
    vd_train_config_defaults(&c);
    assert_int_equal(vd_train_config_parse("{\"out_dir\": \"x\", \"init\": \"tiny\", \"ae\": {}}", &c, err, sizeof err), -1);
    vd_train_config_defaults(&c);
    c.target = VD_TRAIN_DENOISER;
    assert_int_equal(vd_train_config_parse("{\"out_dir\": \"x\"}", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "ae"));
    vd_train_config_defaults(&c);
    c.target = VD_TRAIN_DENOISER;
    assert_int_equal(vd_train_config_parse("{\"out_dir\": \"x\", \"ae\": \"ae.safetensors\"}", &c, err, sizeof err), 0);
    assert_string_equal(c.ae_path, "ae.safetensors");
    assert_string_equal(c.init, "tiny");
    assert_true(c.first_frame_rate == 0.5f && c.empty_prompt_rate == 0.1f);
    assert_int_equal(vd_train_config_parse("{\"out_dir\": \"x\", \"first_frame_rate\": 0.75}", &c, err, sizeof err), 0);
    assert_true(c.first_frame_rate == 0.75f);
    assert_int_equal(vd_train_config_parse("{\"out_dir\": \"x\", \"empty_prompt_rate\": 1.5}", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "empty_prompt_rate"));
    assert_true(c.object_loss_weight == 0.0f);
    assert_int_equal(vd_train_config_parse("{\"out_dir\": \"x\", \"object_loss_weight\": 3}", &c, err, sizeof err), 0);
    assert_true(c.object_loss_weight == 3.0f);
    assert_int_equal(vd_train_config_parse("{\"out_dir\": \"x\", \"object_loss_weight\": -1}", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "object_loss_weight"));
    assert_false(c.object_loss_by_size);
    assert_int_equal(vd_train_config_parse("{\"out_dir\": \"x\", \"object_loss_weight\": 3, \"object_loss_by_size\": true}",
                                           &c, err, sizeof err), 0);
    assert_true(c.object_loss_by_size);
    vd_train_config_defaults(&c);
    c.target = VD_TRAIN_DENOISER;
    assert_int_equal(vd_train_config_parse("{\"out_dir\": \"x\", \"ae\": \"a\", \"object_loss_by_size\": true}", &c, err,
                                           sizeof err), -1);
    assert_non_null(strstr(err, "object_loss_by_size")); /* nothing to scale */
    assert_int_equal(vd_train_config_parse("{\"out_dir\": \"x\", \"object_loss_weight\": 3, \"object_loss_by_size\": 1}",
                                           &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "object_loss_by_size"));
    for (int k = 0; k < VD_WORLD_MAX_OBJECTS; k++) assert_true(c.object_count_odds[k] == 0.0f); /* the world's */
    assert_int_equal(vd_train_config_parse("{\"out_dir\": \"x\", \"object_count_odds\": [1, 2, 2.5]}", &c, err, sizeof err), 0);
    assert_true(c.object_count_odds[0] == 1.0f && c.object_count_odds[1] == 2.0f && c.object_count_odds[2] == 2.5f);
    const char *bad_odds[] = {"[0, 0, 0]", "[1, 2]", "[1, -1, 1]", "[1, \"two\", 1]", "3"};
    for (size_t i = 0; i < sizeof bad_odds / sizeof *bad_odds; i++) {
        char json[128];
        snprintf(json, sizeof json, "{\"out_dir\": \"x\", \"object_count_odds\": %s}", bad_odds[i]);
        assert_int_equal(vd_train_config_parse(json, &c, err, sizeof err), -1);
        assert_non_null(strstr(err, "object_count_odds"));
    }
    assert_int_equal(vd_train_config_parse("{\"out_dir\": \"x\", \"teacher\": \"t.safetensors\", \"object_loss_weight\": 2}",
                                           &c, err, sizeof err), 0); /* a distillation weighs its task term */
    assert_true(c.object_loss_weight == 2.0f);
    vd_train_config_defaults(&c); /* an autoencoder run has no prompts, conditions or objects to weigh */
    assert_int_equal(vd_train_config_parse("{\"out_dir\": \"x\", \"first_frame_rate\": 0.5}", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "first_frame_rate"));
    vd_train_config_defaults(&c);
    assert_int_equal(vd_train_config_parse("{\"out_dir\": \"x\", \"object_loss_weight\": 1}", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "object_loss_weight"));
}

/* Every shipped recipe (models/recipes/) parses: the autoencoder's as an autoencoder run, the
 * teacher's stages as denoiser runs. */
static void test_shipped_recipes(void **state)
{
    (void)state;
    const char *top = getenv("top_srcdir");
    char path[1200], err[256];
    vd_train_config c;
    snprintf(path, sizeof path, "%s/models/recipes/ae.json", top ? top : ".");
    vd_train_config_defaults(&c);
    int rc = vd_train_config_load(path, &c, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    int stages = 0;
    for (int stage = 1;; stage++) {
        if (stage == 1) snprintf(path, sizeof path, "%s/models/recipes/teacher.json", top ? top : ".");
        else snprintf(path, sizeof path, "%s/models/recipes/teacher-%d.json", top ? top : ".", stage);
        if (access(path, F_OK) != 0) break;
        vd_train_config_defaults(&c);
        c.target = VD_TRAIN_DENOISER;
        rc = vd_train_config_load(path, &c, err, sizeof err);
        if (rc) fprintf(stderr, "%s\n", err);
        assert_int_equal(rc, 0);
        stages++;
    }
    fprintf(stderr, "%d teacher stages parsed\n", stages);
    assert_true(stages >= 22);
}

/* The loss weight map of one object moved by hand: 1 + k on the latent pixels whose centres lie
 * within 1.6 r + f / 2 of the object's centre (r grows with the track's scale), 1 elsewhere, on
 * every channel alike; about the disc's area in latent pixels; none for an object out of view. */
static void test_object_weight(void **state)
{
    (void)state;
    enum { FRAMES = 3, C = 2, H = 16, W = 16, F = 4 };
    vd_clip_truth t;
    vd_world_sample(5, 0, H * F, W * F, FRAMES, &t);
    t.object_count = 1;
    t.objects[0].size = VD_SIZE_MEDIUM;
    const float xs[FRAMES] = {20.3f, 40.0f, -60.0f}, scales[FRAMES] = {1.0f, 1.5f, 1.0f}, y0 = 30.0f;
    for (int i = 0; i < FRAMES; i++) t.objects[0].track[i] = (vd_track_point){xs[i], y0, scales[i], 0, 1};
    float *map = vd_malloc((size_t)FRAMES * C * H * W * sizeof(float));
    vd_train_object_weight(&t, FRAMES, C, H, W, F, 3.0f, 0, map);
    float r = vd_size_radius(VD_SIZE_MEDIUM, H * F);
    for (int i = 0; i < FRAMES; i++) {
        float reach = 1.6f * r * scales[i] + F / 2.0f;
        int heavy = 0;
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    float value = map[(((size_t)i * C + c) * H + y) * W + x];
                    float dx = (x + 0.5f) * F - xs[i], dy = (y + 0.5f) * F - y0, d = sqrtf(dx * dx + dy * dy);
                    if (d < reach - 0.01f) assert_true(value == 4.0f);
                    if (d > reach + 0.01f) assert_true(value == 1.0f);
                    heavy += c == 0 && value == 4.0f;
                }
        double disc = 3.14159265 * reach * reach / (F * F);
        fprintf(stderr, "frame %d: %d latent pixels weighed, the disc covers %.1f\n", i, heavy, disc);
        if (i < 2) assert_true(heavy > 0.7 * disc && heavy < 1.3 * disc);
        else assert_int_equal(heavy, 0);
    }
    free(map);
}

/* object_loss_by_size: a small and a large object apart in one frame each get extra weight
 * k (medium reach / reach)^2 on their discs, so the extra weight each adds sums to about the same
 * (a medium object's k times its disc), where without it the large one adds about three times the
 * small one's; a medium object keeps k. */
static void test_object_weight_by_size(void **state)
{
    (void)state;
    enum { C = 1, H = 32, W = 32, F = 4 };
    vd_clip_truth t;
    vd_world_sample(6, 0, H * F, W * F, 1, &t);
    t.object_count = 3;
    const vd_size sizes[3] = {VD_SIZE_SMALL, VD_SIZE_LARGE, VD_SIZE_MEDIUM};
    const float xs[3] = {20.0f, 90.0f, 30.0f}, ys[3] = {20.0f, 40.0f, 100.0f}; /* discs apart */
    for (int o = 0; o < 3; o++) {
        t.objects[o].size = sizes[o];
        t.objects[o].track[0] = (vd_track_point){xs[o], ys[o], 1.0f, 0, 1};
    }
    float *plain = vd_malloc((size_t)C * H * W * sizeof(float)), *sized = vd_malloc((size_t)C * H * W * sizeof(float));
    vd_train_object_weight(&t, 1, C, H, W, F, 3.0f, 0, plain);
    vd_train_object_weight(&t, 1, C, H, W, F, 3.0f, 1, sized);
    float medium_reach = 1.6f * vd_size_radius(VD_SIZE_MEDIUM, H * F) + F / 2.0f;
    double extra_plain[3] = {0}, extra_sized[3] = {0};
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            size_t p = (size_t)y * W + x;
            for (int o = 0; o < 3; o++) {
                float reach = 1.6f * vd_size_radius(sizes[o], H * F) + F / 2.0f;
                float dx = (x + 0.5f) * F - xs[o], dy = (y + 0.5f) * F - ys[o];
                if (dx * dx + dy * dy > reach * reach) continue;
                float want = 1.0f + 3.0f * (medium_reach / reach) * (medium_reach / reach);
                assert_float_equal(sized[p], want, 1e-5);
                extra_plain[o] += plain[p] - 1.0, extra_sized[o] += sized[p] - 1.0;
            }
        }
    double medium_disc = 3.14159265 * medium_reach * medium_reach / (F * F) * 3.0;
    fprintf(stderr, "extra weight small / large / medium: plain %.0f / %.0f / %.0f, by size %.0f / %.0f / %.0f (a medium disc %.0f)\n",
            extra_plain[0], extra_plain[1], extra_plain[2], extra_sized[0], extra_sized[1], extra_sized[2], medium_disc);
    assert_true(extra_plain[1] > 2.5 * extra_plain[0]);
    for (int o = 0; o < 3; o++) assert_true(extra_sized[o] > 0.8 * medium_disc && extra_sized[o] < 1.2 * medium_disc);
    assert_true(extra_sized[2] == extra_plain[2]);
    free(plain), free(sized);
}

static void test_schedule(void **state)
{
    (void)state;
    vd_train_config c;
    vd_train_config_defaults(&c);
    c.steps = 13, c.warmup_steps = 4, c.lr = 1.0f, c.min_lr = 0.1f;
    assert_float_equal(vd_train_lr(&c, 0), 0.25, 1e-6);
    assert_float_equal(vd_train_lr(&c, 1), 0.5, 1e-6);
    assert_float_equal(vd_train_lr(&c, 3), 1.0, 1e-6);
    assert_float_equal(vd_train_lr(&c, 4), 1.0, 1e-6);   /* cosine starts at the peak */
    assert_float_equal(vd_train_lr(&c, 8), 0.55, 1e-6);  /* halfway: the middle of [min_lr, lr] */
    assert_float_equal(vd_train_lr(&c, 12), 0.1, 1e-6);  /* the last step runs at min_lr */
    for (int s = 5; s < 13; s++) assert_true(vd_train_lr(&c, s) < vd_train_lr(&c, s - 1));
    c.warmup_steps = 0;
    assert_float_equal(vd_train_lr(&c, 0), 1.0, 1e-6);
}

static void test_ema(void **state)
{
    (void)state;
    vd_train_config c;
    char err[256];
    tiny_config(&c, "ema");
    vd_train_run *r = vd_train_open(&c, vd_backend_cpu_reference(), NULL, err, sizeof err);
    assert_non_null(r);
    size_t n = vd_train_param_count(r);
    float *w0 = vd_malloc(n * sizeof(float)), *w1 = vd_malloc(n * sizeof(float)), *ema = vd_malloc(n * sizeof(float));
    vd_train_weights(r, 0, w0);
    vd_train_weights(r, 1, ema);
    assert_memory_equal(w0, ema, n * sizeof(float)); /* the EMA starts at the initial weights */
    vd_train_stats st;
    vd_train_step(r, &st);
    assert_int_equal(st.step, 1);
    assert_true(st.loss > 0 && st.grad_norm > 0);
    assert_float_equal(st.lr, c.lr / 2, 1e-9); /* first of two warm-up steps */
    vd_train_weights(r, 0, w1);
    vd_train_weights(r, 1, ema);
    double worst = 0, moved = 0;
    for (size_t i = 0; i < n; i++) {
        double want = c.ema_decay * (double)w0[i] + (1 - c.ema_decay) * (double)w1[i];
        worst = fmax(worst, fabs(ema[i] - want));
        moved = fmax(moved, fabs(w1[i] - w0[i]));
    }
    assert_true(moved > 1e-4);
    assert_true(worst < 1e-6);
    free(w0), free(w1), free(ema);
    vd_train_close(r);
}

/* Runs the denoiser run c (its out_dir in work_dir/NAME) for one step on the CPU reference
 * backend, checkpoints it and exports that checkpoint as the model file out. */
static void one_step_exported(const vd_train_config *c, const char *name, char *out, size_t outlen)
{
    char err[256], ckpt[1200];
    vd_train_run *r = vd_train_open(c, vd_backend_cpu_reference(), NULL, err, sizeof err);
    if (!r) fprintf(stderr, "%s\n", err);
    assert_non_null(r);
    vd_train_stats st;
    vd_train_step(r, &st);
    assert_true(isfinite(st.loss));
    assert_int_equal(vd_train_checkpoint(r, err, sizeof err), 0);
    vd_train_close(r);
    snprintf(ckpt, sizeof ckpt, "%s/%s/step-000001", work_dir, name);
    snprintf(out, outlen, "%s/%s.safetensors", work_dir, name);
    assert_int_equal(vd_train_export_checkpoint(ckpt, out, VD_ST_F32, 0, err, sizeof err), 0);
}

/* "diffusion" in a denoiser run's config replaces init's schedule: the run's checkpoint, exported
 * as a model file, carries the new one; unknown fields and an autoencoder run refuse it. */
/* The backends of a run spread over devices: one on the CPU; several GPUs refused on the CPU, and
 * where there is no GPU. */
static void test_open_backends(void **state)
{
    (void)state;
    vd_backend *be[2] = {NULL, NULL};
    char err[VD_ERR_LEN] = "";
    assert_int_equal(vd_open_backends(VD_DEVICE_CPU, 1, 1, be, err), 0);
    assert_string_equal(be[0]->name, "cpu");
    be[0]->destroy(be[0]);
    assert_int_equal(vd_open_backends(VD_DEVICE_CPU, 0, 2, be, err), -1);
    assert_non_null(strstr(err, "cpu"));
    char cuda_err[VD_ERR_LEN];
    vd_backend *gpu = vd_backend_cuda(0, cuda_err, sizeof cuda_err);
    if (gpu) {
        gpu->destroy(gpu);
    } else {
        assert_int_equal(vd_open_backends(VD_DEVICE_AUTO, 0, 2, be, err), -1);
        assert_non_null(strstr(err, "GPU 0"));
    }
}

static void test_schedule_override(void **state)
{
    (void)state;
    vd_train_config c;
    char err[256], out[1300];
    denoiser_config(&c, "schedule");
    assert_int_equal(vd_train_config_parse("{\"out_dir\": \"x\", \"diffusion\": {\"zero_terminal_snr\": false,"
                                           " \"snr_shift\": 2}}", &c, err, sizeof err), 0);
    snprintf(c.out_dir, sizeof c.out_dir, "%s/schedule", work_dir);
    c.steps = 1, c.warmup_steps = 0;
    one_step_exported(&c, "schedule", out, sizeof out);
    vd_st_file f;
    assert_int_equal(vd_st_read(out, &f, err, sizeof err), 0);
    vd_model_config mc;
    assert_int_equal(vd_config_parse(vd_st_meta(&f, "vdmini.config"), &mc, err, sizeof err), 0);
    assert_int_equal(mc.diffusion.zero_terminal_snr, 0);
    assert_true(mc.diffusion.snr_shift == 2.0f);
    vd_config_free(&mc);
    vd_st_free(&f);

    assert_int_equal(vd_train_config_parse("{\"out_dir\": \"x\", \"diffusion\": {\"beta_end\": 0.02}}", &c, err,
                                           sizeof err), -1);
    assert_non_null(strstr(err, "beta_end"));
    assert_int_equal(vd_train_config_parse("{\"out_dir\": \"x\", \"diffusion\": {\"snr_shift\": 0.5}}", &c, err,
                                           sizeof err), -1);
    assert_non_null(strstr(err, "snr_shift"));
    vd_train_config_defaults(&c);
    assert_int_equal(vd_train_config_parse("{\"out_dir\": \"x\", \"diffusion\": {}}", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "diffusion"));
}

/* A UNet prediction of model file path on the CPU reference backend: fixed inputs (2 videos of
 * 4 frames of 16x16 latents, random text features), into out (malloc'd, n floats). */
static float *predict(const char *path, size_t *n)
{
    vd_model m;
    char err[256];
    assert_int_equal(vd_model_load(&m, path, err, sizeof err), 0);
    vd_backend *be = vd_backend_cpu_reference();
    vd_model_attach(&m, be);
    const vd_unet_config *u = &m.cfg.unet;
    int N = 2, T = 4, L = m.cfg.text.max_tokens, S = u->latent_h * u->latent_w;
    size_t nx = (size_t)N * T * u->in_channels * S, nc = (size_t)N * L * u->context_dim;
    *n = (size_t)N * T * u->out_channels * S;
    float *x = vd_malloc(nx * sizeof(float)), *ctx = vd_malloc(nc * sizeof(float)), t[2] = {500.0f, 900.0f};
    vd_rng_normal(21, 0, x, nx);
    vd_rng_normal(22, 0, ctx, nc);
    float *dx = be->alloc(be, nx * sizeof(float)), *dctx = be->alloc(be, nc * sizeof(float));
    float *dt = be->alloc(be, sizeof t), *dout = be->alloc(be, *n * sizeof(float));
    be->upload(be, dx, x, nx * sizeof(float)), be->upload(be, dctx, ctx, nc * sizeof(float));
    be->upload(be, dt, t, sizeof t);
    vd_unet_forward(&m, dx, dt, dctx, L, N, T, u->latent_h, u->latent_w, dout);
    float *out = vd_malloc(*n * sizeof(float));
    be->download(be, out, dout, *n * sizeof(float));
    be->release(be, dx), be->release(be, dctx), be->release(be, dt), be->release(be, dout);
    free(x), free(ctx);
    vd_model_free(&m);
    return out;
}

/* Saves small_model.h's model, changed by mc's caller and randomly initialised from seed, as
 * work_dir/NAME.safetensors into path; frees mc. */
static void save_small_model(vd_model_config *mc, uint64_t seed, const char *name, char *path, size_t len)
{
    char err[256];
    vd_model m;
    assert_int_equal(vd_model_build(&m, mc, err, sizeof err), 0);
    vd_model_init_random(&m, seed);
    snprintf(path, len, "%s/%s.safetensors", work_dir, name);
    assert_int_equal(vd_model_save(&m, path, VD_ST_F32, err, sizeof err), 0);
    vd_model_free(&m);
    vd_config_free(mc);
}

/* One step at learning rate 0 (and an EMA that is the weights) from model file init with the
 * extra config field growth (e.g. "\"pooled_text\": true"), into work_dir/NAME; the export's
 * path into out. */
static void grow_one_step(const char *init, const char *growth, const char *name, char *out, size_t outlen)
{
    char err[256], json[4096];
    snprintf(json, sizeof json,
             "{\"steps\": 1, \"batch\": 4, \"lr\": 0, \"min_lr\": 0, \"warmup_steps\": 0, \"ema_decay\": 0,"
             " \"loader_threads\": 1, \"out_dir\": \"%s/%s\", \"ae\": \"%s\", \"init\": \"%s\", %s}",
             work_dir, name, init, init, growth);
    vd_train_config c;
    vd_train_config_defaults(&c);
    c.target = VD_TRAIN_DENOISER;
    assert_int_equal(vd_train_config_parse(json, &c, err, sizeof err), 0);
    one_step_exported(&c, name, out, outlen);
}

/* The two model files predict exactly the same. */
static void assert_same_prediction(const char *a_path, const char *b_path)
{
    size_t n_a, n_b;
    float *a = predict(a_path, &n_a), *b = predict(b_path, &n_b);
    assert_int_equal(n_a, n_b);
    assert_memory_equal(a, b, n_a * sizeof(float));
    free(a), free(b);
}

/* "pooled_text": true on a model without it: the run's UNet gains unet.text_pool at zero, so
 * after a step at learning rate 0 its export predicts exactly what the original model did. */
static void test_pooled_text_added(void **state)
{
    (void)state;
    char err[256], plain[1100], out[1300];
    vd_model_config mc;
    assert_int_equal(small_model_config(&mc), 0);
    mc.unet.pooled_text = 0;
    save_small_model(&mc, 11, "no-pool", plain, sizeof plain);
    grow_one_step(plain, "\"pooled_text\": true", "pooled", out, sizeof out);

    vd_model pooled;
    assert_int_equal(vd_model_load(&pooled, out, err, sizeof err), 0);
    assert_true(pooled.cfg.unet.pooled_text);
    const vd_param *w = vd_model_param(&pooled, "unet.text_pool.weight");
    assert_non_null(w);
    for (size_t i = 0; i < w->numel; i++) assert_true(pooled.host[w->offset + i] == 0.0f);
    vd_model_free(&pooled);
    assert_same_prediction(plain, out);

    vd_train_config c;
    vd_train_config_defaults(&c);
    c.target = VD_TRAIN_DENOISER;
    assert_int_equal(vd_train_config_parse("{\"out_dir\": \"x\", \"pooled_text\": false}", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "pooled_text"));
}

/* A denoiser config {"out_dir": "x", FIELD: VALUE} is refused by the parser, naming FIELD. */
static void assert_parse_refuses(const char *field, const char *value)
{
    char err[256], json[256];
    vd_train_config c;
    vd_train_config_defaults(&c);
    c.target = VD_TRAIN_DENOISER;
    snprintf(json, sizeof json, "{\"out_dir\": \"x\", \"%s\": %s}", field, value);
    assert_int_equal(vd_train_config_parse(json, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, field));
}

/* A denoiser run growing init by FIELD: VALUE parses but does not open, naming FIELD. */
static void assert_growth_refused(const char *init, const char *field, const char *value)
{
    char err[256], json[4096];
    vd_train_config c;
    vd_train_config_defaults(&c);
    c.target = VD_TRAIN_DENOISER;
    snprintf(json, sizeof json, "{\"out_dir\": \"%s/refused\", \"ae\": \"%s\", \"init\": \"%s\", \"%s\": %s}",
             work_dir, init, init, field, value);
    assert_int_equal(vd_train_config_parse(json, &c, err, sizeof err), 0);
    assert_null(vd_train_open(&c, vd_backend_cpu_reference(), NULL, err, sizeof err));
    assert_non_null(strstr(err, field));
}

/* "add_attention": [0, 1] on a model with attention at level 1 only: level 0's blocks gain an
 * attention block whose output projection is zero, level 1 keeps the file's, so after a step at
 * learning rate 0 the export predicts exactly what the original model did. Bad lists and a level
 * the model lacks are refused. */
static void test_attention_added(void **state)
{
    (void)state;
    char err[256], plain[1100], out[1300];
    vd_model_config mc;
    assert_int_equal(small_model_config(&mc), 0);
    assert_false(mc.unet.attention[0]);
    assert_true(mc.unet.attention[1]);
    save_small_model(&mc, 12, "no-attn0", plain, sizeof plain);
    grow_one_step(plain, "\"add_attention\": [0, 1]", "attn0", out, sizeof out);

    vd_model grown, m;
    assert_int_equal(vd_model_load(&grown, out, err, sizeof err), 0);
    assert_int_equal(vd_model_load(&m, plain, err, sizeof err), 0);
    assert_true(grown.cfg.unet.attention[0] && grown.cfg.unet.attention[1]);
    const vd_param *po = vd_model_param(&grown, "unet.down.0.0.attn.proj_out.weight");
    const vd_param *q = vd_model_param(&grown, "unet.down.0.0.attn.attn1.to_q.weight");
    assert_non_null(po);
    assert_non_null(q);
    for (size_t i = 0; i < po->numel; i++) assert_true(grown.host[po->offset + i] == 0.0f);
    float q_abs = 0;
    for (size_t i = 0; i < q->numel; i++) q_abs += fabsf(grown.host[q->offset + i]);
    assert_true(q_abs > 0); /* random inside, so that training can move it */
    const vd_param *kept = vd_model_param(&grown, "unet.down.1.0.attn.proj_out.weight");
    const vd_param *orig = vd_model_param(&m, "unet.down.1.0.attn.proj_out.weight");
    assert_non_null(kept);
    assert_non_null(orig);
    assert_memory_equal(grown.host + kept->offset, m.host + orig->offset, kept->numel * sizeof(float));
    vd_model_free(&grown);
    vd_model_free(&m);
    assert_same_prediction(plain, out);

    assert_growth_refused(plain, "add_attention", "[2]"); /* the small model has two levels */
    const char *bad[] = {"[]", "[0, 0]", "[8]", "[-1]", "\"0\"", "[0.5]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) assert_parse_refuses("add_attention", bad[i]);
}

/* "inner_channels": [24, 0] on a model of channels [16, 32]: level 0's ResBlocks grow 8 inner
 * channels (conv1 rows and time rows random, norm2 two new groups of the same width, conv2 reading
 * them with zero weights), the file's values kept in the leading corner of each tensor, so after a
 * step at learning rate 0 the export predicts exactly what the original model did. Widths that
 * shrink, break the group width or miss a level are refused. */
static void test_inner_widened(void **state)
{
    (void)state;
    char err[256], plain[1100], out[1300];
    vd_model_config mc;
    assert_int_equal(small_model_config(&mc), 0);
    save_small_model(&mc, 13, "narrow", plain, sizeof plain);
    grow_one_step(plain, "\"inner_channels\": [24, 0]", "wide", out, sizeof out);

    vd_model grown, m;
    assert_int_equal(vd_model_load(&grown, out, err, sizeof err), 0);
    assert_int_equal(vd_model_load(&m, plain, err, sizeof err), 0);
    assert_int_equal(vd_unet_inner_channels(&grown.cfg.unet, 0), 24);
    assert_int_equal(vd_unet_inner_channels(&grown.cfg.unet, 1), 32);
    const vd_param *c1 = vd_model_param(&grown, "unet.up.0.1.res.conv1.weight");
    const vd_param *c1_old = vd_model_param(&m, "unet.up.0.1.res.conv1.weight");
    const vd_param *c2 = vd_model_param(&grown, "unet.up.0.1.res.conv2.weight");
    const vd_param *c2_old = vd_model_param(&m, "unet.up.0.1.res.conv2.weight");
    assert_non_null(c1), assert_non_null(c1_old), assert_non_null(c2), assert_non_null(c2_old);
    assert_int_equal(c1->shape[0], 24);
    assert_int_equal(c2->shape[1], 24);
    /* conv1: the first 16 rows are the file's, the 8 new ones random */
    assert_memory_equal(grown.host + c1->offset, m.host + c1_old->offset, c1_old->numel * sizeof(float));
    float new_abs = 0;
    for (size_t i = c1_old->numel; i < c1->numel; i++) new_abs += fabsf(grown.host[c1->offset + i]);
    assert_true(new_abs > 0);
    /* conv2: each output row reads the file's 16 inputs, then 8 at zero */
    size_t row = 24 * 9, old_row = 16 * 9;
    for (int o = 0; o < 16; o++) {
        assert_memory_equal(grown.host + c2->offset + o * row, m.host + c2_old->offset + o * old_row,
                            old_row * sizeof(float));
        for (size_t i = old_row; i < row; i++) assert_true(grown.host[c2->offset + o * row + i] == 0.0f);
    }
    assert_true(vd_model_param(&grown, "unet.down.1.0.res.conv1.weight")->shape[0] == 32);
    vd_model_free(&grown);
    vd_model_free(&m);
    assert_same_prediction(plain, out);

    const char *refused[] = {"[8, 0]", "[18, 0]", "[24]"}; /* narrower, not whole groups, one level short */
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) assert_growth_refused(plain, "inner_channels", refused[i]);
    const char *bad[] = {"[]", "[-1, 0]", "\"24\"", "[24.5, 0]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) assert_parse_refuses("inner_channels", bad[i]);
}

/* The schedule's table: the presets' zero terminal SNR ends in pure noise, the shift lowers every
 * SNR, and abar falls step by step in all cases. */
static void test_noise_schedule(void **state)
{
    (void)state;
    vd_model_config mc;
    assert_int_equal(vd_config_preset("tiny", &mc), 0);
    vd_diffusion_config plain = mc.diffusion, shifted = mc.diffusion;
    plain.zero_terminal_snr = 0, plain.snr_shift = 1.0f;
    shifted.zero_terminal_snr = 0;
    double *zt = vd_alphas_cumprod(&mc.diffusion), *a = vd_alphas_cumprod(&plain), *b = vd_alphas_cumprod(&shifted);
    int n = mc.diffusion.train_steps;
    assert_true(mc.diffusion.zero_terminal_snr && mc.diffusion.snr_shift > 1.0f);
    assert_true(zt[n - 1] == 0.0 && a[n - 1] > 0.0);
    assert_true(fabs(zt[0] - b[0]) < 1e-12);
    for (int i = 0; i < n; i++) {
        assert_true(b[i] < a[i]);
        if (i) assert_true(a[i] < a[i - 1] && b[i] < b[i - 1] && zt[i] < zt[i - 1]);
    }
    free(zt), free(a), free(b);
    vd_config_free(&mc);
}

/* Runs the config's steps in work_dir/NAME on `devices` CPU reference backends, stopped after
 * `cut` steps, checkpointed, freed and resumed (cut 0: straight through); returns losses, final
 * weights and EMA. */
static void run(void (*configure)(vd_train_config *, const char *), const char *name, int cut, int devices,
                float *losses, float **weights, float **ema, size_t *n)
{
    vd_train_config c;
    char err[256];
    configure(&c, name);
    vd_backend *be[2];
    assert_true(devices >= 1 && devices <= 2);
    for (int i = 0; i < devices; i++) be[i] = vd_backend_cpu_reference();
    vd_train_run *r = vd_train_open_on(&c, be, devices, NULL, err, sizeof err);
    if (!r) fprintf(stderr, "%s\n", err);
    assert_non_null(r);
    for (int s = 0; s < c.steps; s++) {
        if (cut && s == cut) {
            assert_int_equal(vd_train_checkpoint(r, err, sizeof err), 0);
            vd_train_close(r);
            char dir[1200];
            snprintf(dir, sizeof dir, "%s/step-%06d", c.out_dir, cut);
            r = vd_train_open_on(&c, be, devices, dir, err, sizeof err);
            if (!r) fprintf(stderr, "%s\n", err);
            assert_non_null(r);
            assert_int_equal(vd_train_done_steps(r), cut);
        }
        vd_train_stats st;
        vd_train_step(r, &st);
        assert_int_equal(st.step, s + 1);
        losses[s] = st.loss;
    }
    *n = vd_train_param_count(r);
    *weights = vd_malloc(*n * sizeof(float)), *ema = vd_malloc(*n * sizeof(float));
    vd_train_weights(r, 0, *weights);
    vd_train_weights(r, 1, *ema);
    vd_train_close(r);
    for (int i = 0; i < devices; i++) be[i]->destroy(be[i]);
}

static void test_resume_exact(void **state)
{
    (void)state;
    float straight[STEPS], resumed[STEPS], *w_a, *w_b, *ema_a, *ema_b;
    size_t n_a, n_b;
    run(tiny_config, "straight", 0, 1, straight, &w_a, &ema_a, &n_a);
    run(tiny_config, "resumed", 3, 1, resumed, &w_b, &ema_b, &n_b);
    for (int s = 0; s < STEPS; s++) fprintf(stderr, "step %d: loss %.9g / %.9g\n", s + 1, straight[s], resumed[s]);
    assert_true(straight[STEPS - 1] < straight[0]);
    assert_memory_equal(straight, resumed, sizeof straight);
    assert_int_equal(n_a, n_b);
    assert_memory_equal(w_a, w_b, n_a * sizeof(float));
    assert_memory_equal(ema_a, ema_b, n_a * sizeof(float));
    free(w_a), free(w_b), free(ema_a), free(ema_b);
}

/* The denoiser run with the object-weighted loss. */
static void weighted_config(vd_train_config *c, const char *name)
{
    denoiser_config(c, name);
    c->object_loss_weight = 3.0f;
}

/* The object-weighted loss on the same clips, noise and start as the plain run (its losses and
 * final weights given): its first loss is larger (every weight is at least 1 and the objects' are
 * 4), it falls over the run, and it trains other weights than the plain loss does. */
static void check_object_weighted_loss(const float *plain, const float *w_plain, size_t n_plain)
{
    float weighted[DENOISER_STEPS], *w, *ema;
    size_t n;
    run(weighted_config, "denoiser-weighted", 0, 1, weighted, &w, &ema, &n);
    double first = 0, last = 0, diff = 0;
    for (int s = 0; s < DENOISER_STEPS; s++) {
        fprintf(stderr, "step %d: loss %.9g plain, %.9g weighted\n", s + 1, plain[s], weighted[s]);
        assert_true(isfinite(weighted[s]) && weighted[s] > 0);
        if (s < 3) first += weighted[s];
        if (s >= DENOISER_STEPS - 3) last += weighted[s];
    }
    assert_true(weighted[0] > 1.01f * plain[0]);
    assert_true(last < first);
    assert_int_equal(n_plain, n);
    for (size_t i = 0; i < n; i++) diff = fmax(diff, fabs(w_plain[i] - w[i]));
    assert_true(diff > 1e-4);
    free(w), free(ema);
}

/* The denoiser: a finite loss that falls (the mean of the last three steps below the first
 * three's), and a run cut after 4 steps and resumed that matches the straight run bit for bit;
 * then the object-weighted loss against the straight run. */
static void test_denoiser_resume_exact(void **state)
{
    (void)state;
    float straight[DENOISER_STEPS], resumed[DENOISER_STEPS], *w_a, *w_b, *ema_a, *ema_b;
    size_t n_a, n_b;
    run(denoiser_config, "denoiser-straight", 0, 1, straight, &w_a, &ema_a, &n_a);
    run(denoiser_config, "denoiser-resumed", 4, 1, resumed, &w_b, &ema_b, &n_b);
    double first = 0, last = 0;
    for (int s = 0; s < DENOISER_STEPS; s++) {
        fprintf(stderr, "denoiser step %d: loss %.9g / %.9g\n", s + 1, straight[s], resumed[s]);
        assert_true(isfinite(straight[s]) && straight[s] > 0);
        if (s < 3) first += straight[s];
        if (s >= DENOISER_STEPS - 3) last += straight[s];
    }
    assert_true(last < first);
    assert_memory_equal(straight, resumed, sizeof straight);
    assert_int_equal(n_a, n_b);
    assert_memory_equal(w_a, w_b, n_a * sizeof(float));
    assert_memory_equal(ema_a, ema_b, n_a * sizeof(float));
    check_object_weighted_loss(straight, w_a, n_a);
    free(w_a), free(w_b), free(ema_a), free(ema_b);
}

/* The denoiser run with two micro-batches a step. */
static void accum_config(vd_train_config *c, const char *name)
{
    denoiser_config(c, name);
    c->grad_accum = 2;
}

/* Data parallelism: the denoiser run with two micro-batches a step, spread over two backends,
 * computes what it computes on one (the same clips, noise and update) but for the order of the
 * gradients' sums; cut and resumed on two backends, it matches its straight run bit for bit. A
 * grad_accum that the backends do not divide is refused. */
static void test_data_parallel(void **state)
{
    (void)state;
    float one[DENOISER_STEPS], two[DENOISER_STEPS], resumed[DENOISER_STEPS], *w[3], *ema[3];
    size_t n[3];
    run(accum_config, "parallel-one", 0, 1, one, &w[0], &ema[0], &n[0]);
    run(accum_config, "parallel-two", 0, 2, two, &w[1], &ema[1], &n[1]);
    run(accum_config, "parallel-resumed", 4, 2, resumed, &w[2], &ema[2], &n[2]);
    assert_int_equal(n[0], n[1]);
    double loss_diff = 0, weight_diff = 0, moved = 0;
    for (int s = 0; s < DENOISER_STEPS; s++) {
        fprintf(stderr, "step %d: loss %.9g on one backend, %.9g on two\n", s + 1, one[s], two[s]);
        loss_diff = fmax(loss_diff, fabs(one[s] - two[s]) / one[s]);
    }
    for (size_t i = 0; i < n[0]; i++) {
        weight_diff = fmax(weight_diff, fabs(w[0][i] - w[1][i]));
        moved = fmax(moved, fabs(w[0][i] - ema[0][i]));
    }
    fprintf(stderr, "largest difference: loss %.3g (relative), weight %.3g (the weights moved up to %.3g)\n",
            loss_diff, weight_diff, moved);
    assert_true(moved > 1e-3);
    assert_true(loss_diff < 1e-5);
    assert_true(weight_diff < 1e-5);
    assert_memory_equal(two, resumed, sizeof two);
    assert_memory_equal(w[1], w[2], n[1] * sizeof(float));
    assert_memory_equal(ema[1], ema[2], n[1] * sizeof(float));

    vd_train_config c;
    char err[256];
    accum_config(&c, "parallel-refused");
    c.grad_accum = 3;
    vd_backend *be[2] = {vd_backend_cpu_reference(), vd_backend_cpu_reference()};
    assert_null(vd_train_open_on(&c, be, 2, NULL, err, sizeof err));
    assert_non_null(strstr(err, "grad_accum"));
    for (int i = 0; i < 2; i++) be[i]->destroy(be[i]);
    for (int i = 0; i < 3; i++) free(w[i]), free(ema[i]);
}

/* A shard limit far below the checkpoint's size: several shards, none over the limit, and the
 * checkpoint reads back to the same weights and EMA. */
static void test_shards(void **state)
{
    (void)state;
    const size_t limit = 48 << 10;
    vd_train_config c;
    char err[256], dir[1200], path[1300];
    tiny_config(&c, "shards");
    c.max_shard_bytes = limit;
    vd_backend *be = vd_backend_cpu_reference();
    vd_train_run *r = vd_train_open(&c, be, NULL, err, sizeof err);
    assert_non_null(r);
    vd_train_stats st;
    vd_train_step(r, &st);
    assert_int_equal(vd_train_checkpoint(r, err, sizeof err), 0);
    size_t n = vd_train_param_count(r);
    float *w = vd_malloc(n * sizeof(float)), *ema = vd_malloc(n * sizeof(float)), *back = vd_malloc(n * sizeof(float));
    vd_train_weights(r, 0, w);
    vd_train_weights(r, 1, ema);
    vd_train_close(r);

    snprintf(dir, sizeof dir, "%s/step-000001", c.out_dir);
    int shards = 0;
    size_t total = 0;
    struct stat sb;
    for (;; shards++) {
        snprintf(path, sizeof path, "%s/shard-%05d.safetensors", dir, shards);
        if (stat(path, &sb)) break;
        assert_true((size_t)sb.st_size <= limit);
        total += (size_t)sb.st_size;
    }
    assert_true(total >= 4 * n * sizeof(float));
    assert_true(shards >= 4);
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    assert_int_equal(stat(path, &sb), 0);
    snprintf(path, sizeof path, "%s/.step-000001.tmp", c.out_dir);
    assert_int_not_equal(stat(path, &sb), 0); /* the temporary directory is gone */

    r = vd_train_open(&c, be, dir, err, sizeof err);
    assert_non_null(r);
    vd_train_weights(r, 0, back);
    assert_memory_equal(w, back, n * sizeof(float));
    vd_train_weights(r, 1, back);
    assert_memory_equal(ema, back, n * sizeof(float));
    vd_train_close(r);

    /* a config that does not match the checkpoint is refused */
    c.batch = 3;
    assert_null(vd_train_open(&c, be, dir, err, sizeof err));
    assert_non_null(strstr(err, "batch"));
    free(w), free(ema), free(back);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_ema),
        cmocka_unit_test(test_shards),
        cmocka_unit_test(test_resume_exact),
        cmocka_unit_test(test_denoiser_resume_exact),
        cmocka_unit_test(test_data_parallel),
        cmocka_unit_test(test_shipped_recipes),
        cmocka_unit_test(test_object_weight),
        cmocka_unit_test(test_open_backends),
        cmocka_unit_test(test_schedule_override),
        cmocka_unit_test(test_noise_schedule),
        cmocka_unit_test(test_pooled_text_added),
        cmocka_unit_test(test_attention_added),
        cmocka_unit_test(test_inner_widened),
        cmocka_unit_test(test_object_weight_by_size),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
