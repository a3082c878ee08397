/* test_cuda_model.c: whole-model passes on the GPU against the CPU — a tiny model's (its level-0
 * ResBlocks wider inside than the level, as in every model of these tests) text encoder,
 * autoencoder decode and UNet denoiser step, in fp32 and bf16, on fresh random weights and inputs
 * each run (seed printed) with the GPU outputs poisoned first; a guided sampling run (guidance,
 * a guide model of other weights, image-to-video and text-to-video in one batch), whose recorded
 * forwards must also match a GPU run that records none; and the
 * denoiser's training driver
 * (the world's clips encoded, noised and conditioned on the backend, loss, update) for a few fp32
 * steps of a small model on both, and spread over two GPUs against one where there are two
 * (training, and distilling a pruned copy).
 * Skips (77) without a GPU. */
#include "backend.h"
#include "common.h"
#include "config.h"
#include "model.h"
#include "prune.h"
#include "rng.h"
#include "sampler.h"
#include "../engine/small_model.h"
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int passed, failed;

typedef struct {
    vd_model m;
    vd_backend *be;
} side;

static float *put(vd_backend *be, const float *host, size_t n)
{
    float *d = be->alloc(be, n * sizeof(float));
    be->upload(be, d, host, n * sizeof(float));
    return d;
}

static float *poisoned(vd_backend *be, size_t n)
{
    float *host = vd_malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) host[i] = NAN;
    float *d = put(be, host, n);
    free(host);
    return d;
}

static void compare(const char *what, const char *precision, vd_backend *gpu, const float *g, vd_backend *cpu,
                    const float *c, size_t n, double tol)
{
    float *a = vd_malloc(n * sizeof(float)), *b = vd_malloc(n * sizeof(float));
    gpu->download(gpu, a, g, n * sizeof(float));
    cpu->download(cpu, b, c, n * sizeof(float));
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d, den += (double)b[i] * b[i];
    }
    double rel = sqrt(num) / (sqrt(den) + 1e-30);
    int ok = rel <= tol;
    printf("%-22s %-5s rel err %.3e (tolerance %.0e)  %s\n", what, precision, rel, tol, ok ? "ok" : "FAIL");
    ok ? passed++ : failed++;
    free(a), free(b);
}

#define DRIVER_STEPS 3

/* The losses of DRIVER_STEPS denoiser training steps (two micro-batches each) of small_model.h's
 * model (from the file model, which also gives the autoencoder), spread over count backends; with
 * a student file, the distillation of that student from the model instead; extra is more of the
 * config's fields (", ..." or ""). */
static int driver_losses(vd_backend *const *be, int count, const char *model, const char *student, const char *out_dir,
                         const char *extra, float *losses)
{
    char json[2048], err[256];
    snprintf(json, sizeof json,
             "{\"steps\": %d, \"batch\": 4, \"clips\": 2, \"grad_accum\": 2, \"warmup_steps\": 1,"
             " \"loader_threads\": 2, \"seed\": 5, \"out_dir\": \"%s\", \"ae\": \"%s\", \"init\": \"%s\"%s%s%s%s}",
             DRIVER_STEPS, out_dir, model, student ? student : model, student ? ", \"teacher\": \"" : "",
             student ? model : "", student ? "\"" : "", extra);
    vd_train_config c;
    vd_train_config_defaults(&c);
    c.target = VD_TRAIN_DENOISER;
    vd_train_run *r = vd_train_config_parse(json, &c, err, sizeof err) ? NULL
                                                                       : vd_train_open_on(&c, be, count, NULL, err, sizeof err);
    if (!r) {
        fprintf(stderr, "training driver: %s\n", err);
        return -1;
    }
    for (int s = 0; s < DRIVER_STEPS; s++) {
        vd_train_stats st;
        vd_train_step(r, &st);
        losses[s] = st.loss;
    }
    vd_train_close(r);
    return 0;
}

static void report_driver(const char *what, const float *got, const float *want, double tol)
{
    for (int s = 0; s < DRIVER_STEPS; s++) {
        double rel = fabs((double)got[s] - want[s]) / fabs((double)want[s]);
        int ok = isfinite(got[s]) && rel <= tol;
        printf("training driver %s step %d  loss %.6f / %.6f rel err %.3e (tolerance %.0e)  %s\n", what, s + 1,
               got[s], want[s], rel, tol, ok ? "ok" : "FAIL");
        ok ? passed++ : failed++;
    }
}

/* The driver on the GPU against the CPU, training and distilling toward the teacher's guided
 * prediction (down.0.0 removed; the student file stands in as the guide), and, where there is a
 * second GPU, spread over two GPUs against one, training and distilling. */
static void check_training_driver(vd_backend *gpu, vd_backend *cpu)
{
    char dir[] = "vdmini-gpu-train-XXXXXX", model[64], student[64], err[256];
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        failed++;
        return;
    }
    snprintf(model, sizeof model, "%s/model.safetensors", dir);
    snprintf(student, sizeof student, "%s/student.safetensors", dir);
    vd_model_config mc;
    vd_model m, pruned;
    int rc = small_model_config(&mc);
    mc.unet.inner_channels[0] = 24; /* level 0's ResBlocks wider inside than the level */
    rc = rc || vd_model_build(&m, &mc, err, sizeof err);
    if (rc == 0) {
        vd_model_init_random(&m, 3);
        char *remove[] = {"down.0.0"};
        vd_prune_report report;
        rc = vd_model_save(&m, model, VD_ST_F32, err, sizeof err) ||
             vd_prune(&m, remove, 1, 5, &pruned, &report, err, sizeof err);
        if (rc == 0) rc = vd_model_save(&pruned, student, VD_ST_F32, err, sizeof err), vd_model_free(&pruned);
        vd_model_free(&m);
    }
    vd_config_free(&mc);
    float on_cpu[DRIVER_STEPS], on_gpu[DRIVER_STEPS], on_two[DRIVER_STEPS];
    gpu->precision = VD_PRECISION_F32;
    if (rc == 0)
        rc = driver_losses(&cpu, 1, model, NULL, dir, "", on_cpu) || driver_losses(&gpu, 1, model, NULL, dir, "", on_gpu);
    if (rc == 0) report_driver("GPU / CPU", on_gpu, on_cpu, 1e-3);
    char guided[200];
    snprintf(guided, sizeof guided, ", \"teacher_guidance\": 3, \"teacher_guide\": \"%s\", \"teacher_guide_scale\": 1",
             student);
    if (rc == 0)
        rc = driver_losses(&cpu, 1, model, student, dir, guided, on_cpu) ||
             driver_losses(&gpu, 1, model, student, dir, guided, on_gpu);
    if (rc == 0) report_driver("guided distilling, GPU / CPU", on_gpu, on_cpu, 1e-3);
    vd_backend *second = rc == 0 ? vd_backend_cuda(1, err, sizeof err) : NULL;
    if (second) {
        vd_backend *pair[2] = {gpu, second};
        rc = driver_losses(&gpu, 1, model, NULL, dir, "", on_gpu) || driver_losses(pair, 2, model, NULL, dir, "", on_two);
        if (rc == 0) report_driver("2 GPUs / 1", on_two, on_gpu, 1e-5);
        if (rc == 0) rc = driver_losses(&gpu, 1, model, student, dir, "", on_gpu) ||
                          driver_losses(pair, 2, model, student, dir, "", on_two);
        if (rc == 0) report_driver("distilling, 2 GPUs / 1", on_two, on_gpu, 1e-5);
        second->destroy(second);
        gpu->activate(gpu);
    } else if (rc == 0) {
        printf("training driver on 2 GPUs: skipped (%s)\n", err);
    }
    if (rc) failed++;
    unlink(model), unlink(student);
    rmdir(dir);
}

/* A forward of 16 rows, not recorded: it grows the backend's scratch buffers, which recordings
 * made before it may reach (the backend then refuses to replay them, and they are made again). */
static void grow_scratch(vd_model *m, vd_backend *be, int L, int T, int h, int w)
{
    const vd_unet_config *u = &m->cfg.unet;
    int N = 16;
    size_t nx = (size_t)N * T * u->in_channels * h * w, nctx = (size_t)N * L * u->context_dim;
    float *x = vd_backend_random_normal(be, nx, 7, 1.0f), *ctx = vd_backend_random_normal(be, nctx, 8, 1.0f);
    float *t = vd_backend_random_normal(be, (size_t)N, 9, 0.0f), *out = be->alloc(be, (size_t)N * T * u->out_channels * h * w * sizeof(float));
    vd_unet_forward(m, x, t, ctx, L, N, T, h, w, out);
    be->release(be, x), be->release(be, ctx), be->release(be, t), be->release(be, out);
}

/* Four guided DDIM steps with fresh noise (eta 1) of two videos (the first image-to-video) with a
 * guide of other weights, on the GPU against the CPU; then a larger forward that grows the
 * backend's scratch, and the four steps again from where the first run ended. On the GPU the steps
 * after the first two replay recorded forwards (vd_unet_forward_recorded); they must match a GPU
 * run that records nothing, and recordings must have been made. model and guide are host models
 * of cfg, each attached in turn. */
static void check_guided_sampling(vd_backend *gpu, vd_backend *cpu, vd_model *model, vd_model *guide,
                                  const vd_model_config *cfg, uint64_t seed)
{
    int N = 2, T = 4, h = 16, w = 16, L = cfg->text.max_tokens, lc = cfg->unet.out_channels;
    size_t nz = (size_t)N * T * lc * h * w, ncond = (size_t)N * T * (lc + 1) * h * w, nctx = (size_t)2 * N * L * cfg->text.dim;
    float *z = vd_malloc(nz * sizeof(float)), *cond = vd_calloc(ncond, sizeof(float)), *ctx = vd_malloc(nctx * sizeof(float));
    vd_rng_normal(seed + 3, 0, z, nz);
    vd_rng_normal(seed + 4, 0, ctx, nctx);
    vd_rng_normal(seed + 5, 0, cond, (size_t)lc * h * w); /* video 0: one latent on every frame, mask 1 */
    for (int t = 0; t < T; t++) {
        float *frame = cond + (size_t)t * (lc + 1) * h * w;
        memcpy(frame, cond, (size_t)lc * h * w * sizeof(float));
        for (int i = 0; i < h * w; i++) frame[(size_t)lc * h * w + i] = 1.0f;
    }
    vd_sampler_plan plan;
    vd_sampler_plan_make(&cfg->diffusion, VD_SAMPLER_DDIM, 4, 1.0f, &plan);
    vd_backend *be[3] = {cpu, gpu, gpu}; /* the CPU, the GPU recording, the GPU not recording */
    float *first[3], *out[3]; /* after the first four steps, and after all eight */
    for (int prec = 0; prec < 2; prec++) {
        gpu->precision = prec ? VD_PRECISION_BF16 : VD_PRECISION_F32;
        int recorded = 0;
        for (int b = 0; b < 3; b++) {
            vd_model_attach(model, be[b]), vd_model_attach(guide, be[b]);
            vd_model_record_forwards(model, b == 1), vd_model_record_forwards(guide, b == 1);
            out[b] = put(be[b], z, nz);
            float *c = put(be[b], cond, ncond), *x = put(be[b], ctx, nctx);
            vd_sample(model, &plan, out[b], c, x, L, N, T, h, w, 3.0f, 0.0f, guide, 1.5f, seed + 6, NULL, NULL);
            first[b] = be[b]->alloc(be[b], nz * sizeof(float));
            be[b]->copy(be[b], first[b], out[b], nz * sizeof(float));
            grow_scratch(model, be[b], L, T, h, w);
            vd_sample(model, &plan, out[b], c, x, L, N, T, h, w, 3.0f, 0.0f, guide, 1.5f, seed + 7, NULL, NULL);
            if (b == 1) { /* recordings made, their scratch counted, and both gone when switched off */
                size_t model_bytes, guide_bytes;
                recorded = vd_model_recordings(model, &model_bytes) > 0 && model_bytes > 0 &&
                           vd_model_recordings(guide, &guide_bytes) > 0 && guide_bytes > 0;
                vd_model_record_forwards(model, 0);
                recorded = recorded && vd_model_recordings(model, &model_bytes) == 0 && model_bytes == 0;
            }
            be[b]->release(be[b], c), be[b]->release(be[b], x);
            vd_model_detach(model), vd_model_detach(guide);
        }
        const char *name = prec ? "bf16" : "fp32";
        compare("guided sampling", name, gpu, first[1], cpu, first[0], nz, prec ? 3e-2 : 1e-4);
        compare("recorded / not", name, gpu, out[1], gpu, out[2], nz, 1e-5);
        printf("%-22s %-5s %s\n", "forwards recorded", name,
               recorded ? "ok" : "FAIL (no recording, or its scratch miscounted)");
        recorded ? passed++ : failed++;
        for (int b = 0; b < 3; b++) be[b]->release(be[b], first[b]), be[b]->release(be[b], out[b]);
    }
    vd_sampler_plan_free(&plan);
    free(z), free(cond), free(ctx);
}

int main(void)
{
    char err[256];
    vd_backend *gpu = vd_backend_cuda(0, err, sizeof err);
    if (!gpu) {
        printf("SKIP: %s\n", err);
        return 77;
    }
    vd_backend *cpu = vd_backend_cpu();
    uint64_t seed = (uint64_t)time(NULL);
    printf("seed %llu\n", (unsigned long long)seed);

    vd_model_config cfg;
    vd_config_preset("tiny", &cfg);
    cfg.unet.inner_channels[0] = 48; /* level 0's ResBlocks wider inside than the level */
    vd_model mc, mg;
    if (vd_model_build(&mc, &cfg, err, sizeof err) || vd_model_build(&mg, &cfg, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    vd_model_init_random(&mc, seed);
    vd_model_init_random(&mg, seed);
    vd_model_attach(&mc, cpu);
    vd_model_attach(&mg, gpu);

    int N = 2, T = 4, h = 16, w = 16, L = cfg.text.max_tokens, D = cfg.text.dim;
    size_t nx = (size_t)N * T * cfg.unet.in_channels * h * w, nctx = (size_t)N * L * D;
    size_t nout = (size_t)N * T * cfg.unet.out_channels * h * w;
    float *x = vd_malloc(nx * sizeof(float)), *ctx = vd_malloc(nctx * sizeof(float));
    vd_rng_normal(seed + 1, 0, x, nx);
    vd_rng_normal(seed + 2, 0, ctx, nctx);
    float t[2] = {(float)(seed % 1000), 17.0f};
    int32_t *ids = vd_malloc((size_t)N * L * sizeof *ids);
    for (int i = 0; i < N * L; i++) ids[i] = (int32_t)(vd_rng_u64(seed, (uint64_t)i) % (uint64_t)cfg.text.vocab_size);

    float *xc = put(cpu, x, nx), *cc = put(cpu, ctx, nctx), *tc = put(cpu, t, 2), *oc = cpu->alloc(cpu, nout * sizeof(float));
    vd_unet_forward(&mc, xc, tc, cc, L, N, T, h, w, oc);
    int32_t *idc = cpu->alloc(cpu, (size_t)N * L * sizeof *ids);
    cpu->upload(cpu, idc, ids, (size_t)N * L * sizeof *ids);
    float *tec = cpu->alloc(cpu, nctx * sizeof(float));
    vd_text_forward(&mc, idc, N, tec);
    int f = 1 << (cfg.ae.levels - 1);
    size_t nz = (size_t)T * cfg.ae.latent_channels * h * w, nimg = (size_t)T * 3 * h * f * w * f;
    float *zc = put(cpu, x, nz), *ic = cpu->alloc(cpu, nimg * sizeof(float));
    vd_ae_decode(&mc, zc, T, h, w, ic);

    for (int prec = 0; prec < 2; prec++) {
        const char *pname = prec ? "bf16" : "fp32";
        double tol = prec ? 3e-2 : 1e-4;
        gpu->precision = prec ? VD_PRECISION_BF16 : VD_PRECISION_F32;
        float *xg = put(gpu, x, nx), *cg = put(gpu, ctx, nctx), *tg = put(gpu, t, 2), *og = poisoned(gpu, nout);
        vd_unet_forward(&mg, xg, tg, cg, L, N, T, h, w, og);
        compare("unet denoiser step", pname, gpu, og, cpu, oc, nout, tol);
        int32_t *idg = gpu->alloc(gpu, (size_t)N * L * sizeof *ids);
        gpu->upload(gpu, idg, ids, (size_t)N * L * sizeof *ids);
        float *teg = poisoned(gpu, nctx);
        vd_text_forward(&mg, idg, N, teg);
        compare("text encoder", pname, gpu, teg, cpu, tec, nctx, tol);
        float *zg = put(gpu, x, nz), *ig = poisoned(gpu, nimg);
        vd_ae_decode(&mg, zg, T, h, w, ig);
        compare("autoencoder decode", pname, gpu, ig, cpu, ic, nimg, tol);
        gpu->release(gpu, xg), gpu->release(gpu, cg), gpu->release(gpu, tg), gpu->release(gpu, og);
        gpu->release(gpu, idg), gpu->release(gpu, teg), gpu->release(gpu, zg), gpu->release(gpu, ig);
    }
    cpu->release(cpu, xc), cpu->release(cpu, cc), cpu->release(cpu, tc), cpu->release(cpu, oc);
    cpu->release(cpu, idc), cpu->release(cpu, tec), cpu->release(cpu, zc), cpu->release(cpu, ic);
    free(x), free(ctx), free(ids);
    vd_model_free(&mg);
    vd_model guide;
    if (vd_model_build(&guide, &cfg, err, sizeof err) == 0) {
        vd_model_init_random(&guide, seed + 6);
        vd_model_detach(&mc);
        check_guided_sampling(gpu, cpu, &mc, &guide, &cfg, seed);
        vd_model_free(&guide);
    } else {
        fprintf(stderr, "%s\n", err);
        failed++;
    }
    vd_model_free(&mc);
    vd_config_free(&cfg);
    check_training_driver(gpu, cpu);
    cpu->destroy(cpu), gpu->destroy(gpu);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
