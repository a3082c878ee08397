/* bench_common.h: what the engine benchmarks (bench_step.c, bench_train.c) share — a preset's
 * text encoder and UNet with random weights, or a model file's, on the CPU or a GPU backend, and
 * sorted timings (random inputs come from the engine's vd_backend_random_normal). */
#ifndef VD_BENCH_COMMON_H
#define VD_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "common.h"
#include "config.h"
#include "model.h"

/* Opens a new backend *be ("cpu", or "cuda" with bf16 matrix products when bf16) and attaches m
 * to it. Returns 0, or 1 after a message when the GPU fails. */
static inline int bench_backend_attach(const char *device, int bf16, vd_model *m, vd_backend **be)
{
    char err[256];
    if (strcmp(device, "cuda") == 0) {
        *be = vd_backend_cuda(0, err, sizeof err);
        if (!*be) return fprintf(stderr, "cuda: %s\n", err), 1;
        (*be)->precision = bf16 ? VD_PRECISION_BF16 : VD_PRECISION_F32;
    } else {
        *be = vd_backend_cpu();
    }
    vd_model_attach(m, *be);
    return 0;
}

/* Builds preset's text encoder and UNet (no autoencoder) into *cfg and *m with random weights on
 * a new backend *be. Returns 0, or the exit status after a message: 2 for an unknown preset, 1
 * when the model or the GPU fails. */
static inline int bench_model_open(const char *preset, const char *device, int bf16, vd_model_config *cfg, vd_model *m,
                                   vd_backend **be)
{
    if (vd_config_preset(preset, cfg)) return fprintf(stderr, "unknown preset %s\n", preset), 2;
    cfg->ae.present = 0;
    char err[256];
    if (vd_model_build(m, cfg, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
    vd_model_init_random(m, 1);
    return bench_backend_attach(device, bf16, m, be);
}

/* As bench_model_open, with a model file's text encoder and UNet and their weights. */
static inline int bench_model_file_open(const char *path, const char *device, int bf16, vd_model_config *cfg,
                                        vd_model *m, vd_backend **be)
{
    char err[256];
    if (vd_model_load(m, path, err, sizeof err)) return fprintf(stderr, "%s: %s\n", path, err), 1;
    vd_config_copy(cfg, &m->cfg);
    return bench_backend_attach(device, bf16, m, be);
}

static inline int bench_compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts n timings: the median is then ms[n / 2] and the fastest ms[0]. */
static inline void bench_sort_timings(double *ms, int n) { qsort(ms, (size_t)n, sizeof *ms, bench_compare_doubles); }

#endif
