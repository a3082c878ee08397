/* bench_step.c: milliseconds per denoiser step of a preset model with random weights on one
 * backend. It links only the engine library, so it travels to the GPU machine in a small bundle.
 *
 *   bench_step --preset tiny|large [--batch N] [--frames T] [--device cpu|cuda] [--bf16]
 *              [--warmup N] [--iters N] [--profile]
 *   bench_step --print-config tiny|large     (the preset's JSON config, for the PyTorch baseline)
 *
 * Prints one JSON line per run: the median over iters, each iteration synchronised. --profile
 * also prints, to stderr, the time per op of one more step run op by op synchronised. */
#include "backend.h"
#include "common.h"
#include "config.h"
#include "model.h"
#include "op_profile.h"
#include "rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static float *random_on(vd_backend *be, size_t n, uint64_t seed, float scale)
{
    float *host = vd_malloc(n * sizeof(float));
    vd_rng_normal(seed, 0, host, n);
    for (size_t i = 0; i < n; i++) host[i] *= scale;
    float *dev = be->alloc(be, n * sizeof(float));
    be->upload(be, dev, host, n * sizeof(float));
    free(host);
    return dev;
}

int main(int argc, char **argv)
{
    const char *preset = "tiny", *device = "cpu";
    int batch = 2, frames = 0, bf16 = 0, warmup = 2, iters = 5, profile = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--print-config") == 0 && v) {
            vd_model_config cfg;
            if (vd_config_preset(v, &cfg)) return fprintf(stderr, "unknown preset %s\n", v), 2;
            char *json = vd_config_to_json(&cfg);
            puts(json);
            free(json);
            vd_config_free(&cfg);
            return 0;
        }
        if (strcmp(a, "--bf16") == 0) { bf16 = 1; continue; }
        if (strcmp(a, "--profile") == 0) { profile = 1; continue; }
        if (!v) return fprintf(stderr, "%s: missing value\n", a), 2;
        if (strcmp(a, "--preset") == 0) preset = v;
        else if (strcmp(a, "--device") == 0) device = v;
        else if (strcmp(a, "--batch") == 0) batch = atoi(v);
        else if (strcmp(a, "--frames") == 0) frames = atoi(v);
        else if (strcmp(a, "--warmup") == 0) warmup = atoi(v);
        else if (strcmp(a, "--iters") == 0) iters = atoi(v);
        else return fprintf(stderr, "unknown option %s\n", a), 2;
        i++;
    }
    if (batch < 1 || iters < 1 || warmup < 0) return fprintf(stderr, "bad --batch, --iters or --warmup\n"), 2;

    vd_model_config cfg;
    if (vd_config_preset(preset, &cfg)) return fprintf(stderr, "unknown preset %s\n", preset), 2;
    cfg.ae.present = 0; /* only the text context size and the UNet matter here */
    vd_model m;
    char err[256];
    if (vd_model_build(&m, &cfg, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
    vd_model_init_random(&m, 1);

    vd_backend *be = NULL;
    if (strcmp(device, "cuda") == 0) {
        be = vd_backend_cuda(0, err, sizeof err);
        if (!be) return fprintf(stderr, "cuda: %s\n", err), 1;
        be->precision = bf16 ? VD_PRECISION_BF16 : VD_PRECISION_F32;
    } else {
        be = vd_backend_cpu();
    }
    vd_model_attach(&m, be);
    const vd_unet_config *u = &cfg.unet;
    int T = frames > 0 ? frames : u->frames, h = u->latent_h, w = u->latent_w, L = cfg.text.max_tokens;
    float *x = random_on(be, (size_t)batch * T * u->in_channels * h * w, 2, 1.0f);
    float *ctx = random_on(be, (size_t)batch * L * u->context_dim, 3, 1.0f);
    float *t = random_on(be, (size_t)batch, 4, 0.0f);
    float *t_host = vd_malloc((size_t)batch * sizeof(float));
    for (int i = 0; i < batch; i++) t_host[i] = (float)(100 + 37 * i % 900);
    be->upload(be, t, t_host, (size_t)batch * sizeof(float));
    free(t_host);
    float *out = be->alloc(be, (size_t)batch * T * u->out_channels * h * w * sizeof(float));

    double *ms = vd_malloc((size_t)iters * sizeof(double));
    for (int i = 0; i < warmup + iters; i++) {
        double t0 = vd_now();
        vd_unet_forward(&m, x, t, ctx, L, batch, T, h, w, out);
        be->synchronize(be);
        if (i >= warmup) ms[i - warmup] = 1e3 * (vd_now() - t0);
    }
    qsort(ms, (size_t)iters, sizeof *ms, compare_doubles);
    if (profile) {
        vd_backend *timed = vd_backend_profiled(be);
        m.be = timed;
        vd_unet_forward(&m, x, t, ctx, L, batch, T, h, w, out);
        vd_profile_print(timed, stderr);
        m.be = be;
        timed->destroy(timed);
    }
    float probe;
    be->download(be, &probe, out, sizeof probe);
    printf("{\"impl\": \"vdmini\", \"preset\": \"%s\", \"batch\": %d, \"frames\": %d, \"device\": \"%s\", "
           "\"precision\": \"%s\", \"ms_per_step\": %.3f, \"min_ms\": %.3f, \"iters\": %d, \"finite\": %s}\n",
           preset, batch, T, be->name, be->precision == VD_PRECISION_BF16 ? "bf16" : "fp32", ms[iters / 2], ms[0],
           iters, probe == probe ? "true" : "false");
    free(ms);
    be->release(be, x), be->release(be, ctx), be->release(be, t), be->release(be, out);
    vd_model_free(&m);
    vd_config_free(&cfg);
    be->destroy(be);
    return 0;
}
