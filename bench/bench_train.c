/* bench_train.c: milliseconds per training step of the denoiser (text encoder and UNet) of a
 * preset model with random weights on one backend: zero the gradients, the forward and backward
 * of the v-prediction loss (vd_denoiser_loss_and_grads), one AdamW step over the text.* and
 * unet.* parameters with the global gradient norm clipped to 1 (as the training driver does).
 * The inputs are random latents: the autoencoder is not part of it. It links only the engine
 * library, so it travels to the GPU machine in a small bundle; tools/reference/
 * bench_train_torch.py times the same step in PyTorch.
 *
 *   bench_train --preset tiny|large [--clips N] [--frames T] [--device cpu|cuda] [--bf16]
 *               [--warmup W] [--iters K] [--profile]
 *
 * Prints one JSON line: the median over K steps after W warm-up steps, each step synchronised.
 * --profile then runs one more step with every op synchronised and timed, and prints the time
 * per op to stderr. */
#include "ae_train.h"
#include "bench_common.h"
#include "denoiser_train.h"
#include "op_profile.h"
#include "rng.h"

int main(int argc, char **argv)
{
    const char *preset = "tiny", *device = "cpu";
    int clips = 1, frames = 0, bf16 = 0, warmup = 2, iters = 5, profile = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--bf16") == 0) { bf16 = 1; continue; }
        if (strcmp(a, "--profile") == 0) { profile = 1; continue; }
        if (!v) return fprintf(stderr, "%s: missing value\n", a), 2;
        if (strcmp(a, "--preset") == 0) preset = v;
        else if (strcmp(a, "--device") == 0) device = v;
        else if (strcmp(a, "--clips") == 0) clips = atoi(v);
        else if (strcmp(a, "--frames") == 0) frames = atoi(v);
        else if (strcmp(a, "--warmup") == 0) warmup = atoi(v);
        else if (strcmp(a, "--iters") == 0) iters = atoi(v);
        else return fprintf(stderr, "unknown option %s\n", a), 2;
        i++;
    }
    if (clips < 1 || frames < 0 || iters < 1 || warmup < 0)
        return fprintf(stderr, "bad --clips, --frames, --iters or --warmup\n"), 2;

    vd_model_config cfg;
    vd_model m;
    vd_backend *be;
    int status = bench_model_open(preset, device, bf16, &cfg, &m, &be);
    if (status) return status;
    vd_ae_trainer trainer;
    vd_ae_trainer_init(&trainer, &m);
    static const char *const denoiser_parts[] = {"text.", "unet."};
    size_t begin, end;
    vd_param_range(&m, denoiser_parts, 2, &begin, &end);
    /* the training driver's defaults (train.h), at a constant learning rate */
    const vd_adamw_config opt = {.lr = 4e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f,
                                 .clip_norm = 1.0f};

    /* the batch: UNet inputs x, targets v, timesteps t and token ids, all random */
    const vd_unet_config *u = &cfg.unet;
    int N = clips, T = frames > 0 ? frames : u->frames, h = u->latent_h, w = u->latent_w, L = cfg.text.max_tokens;
    float *x = vd_backend_random_normal(be, (size_t)N * T * u->in_channels * h * w, 2, 1.0f);
    float *v = vd_backend_random_normal(be, (size_t)N * T * u->out_channels * h * w, 3, 1.0f);
    float *t_host = vd_malloc((size_t)N * sizeof(float));
    for (int i = 0; i < N; i++) t_host[i] = (float)(vd_rng_u64(4, (uint64_t)i) % (uint64_t)cfg.diffusion.train_steps);
    float *t = be->alloc(be, (size_t)N * sizeof(float));
    be->upload(be, t, t_host, (size_t)N * sizeof(float));
    free(t_host);
    int32_t *ids_host = vd_malloc((size_t)N * L * sizeof(int32_t));
    for (int i = 0; i < N * L; i++) ids_host[i] = (int32_t)(vd_rng_u64(5, (uint64_t)i) % (uint64_t)cfg.text.vocab_size);
    int32_t *ids = be->alloc(be, (size_t)N * L * sizeof(int32_t));
    be->upload(be, ids, ids_host, (size_t)N * L * sizeof(int32_t));
    free(ids_host);

    double *ms = vd_malloc((size_t)iters * sizeof(double));
    float loss = 0.0f;
    for (int i = 0; i < warmup + iters; i++) {
        double t0 = vd_now();
        vd_ae_zero_grads(&trainer);
        loss = vd_denoiser_loss_and_grads(&m, trainer.grads, ids, x, t, v, NULL, N, T, h, w);
        vd_adamw_range_step(&trainer, &opt, begin, end);
        be->synchronize(be);
        if (i >= warmup) ms[i - warmup] = 1e3 * (vd_now() - t0);
    }
    bench_sort_timings(ms, iters);
    if (profile) {
        vd_backend *timed = vd_backend_profiled(be);
        m.be = timed;
        vd_ae_zero_grads(&trainer);
        vd_denoiser_loss_and_grads(&m, trainer.grads, ids, x, t, v, NULL, N, T, h, w);
        vd_adamw_range_step(&trainer, &opt, begin, end);
        vd_profile_print(timed, stderr);
        m.be = be;
        timed->destroy(timed);
    }
    printf("{\"impl\": \"vdmini\", \"what\": \"train\", \"preset\": \"%s\", \"clips\": %d, \"frames\": %d, "
           "\"latent\": [%d, %d], \"device\": \"%s\", \"dtype\": \"%s\", \"params\": %zu, \"ms_per_step\": %.3f, "
           "\"min_ms\": %.3f, \"iters\": %d, \"loss\": %.6g, \"finite\": %s}\n",
           preset, N, T, h, w, be->name, be->precision == VD_PRECISION_BF16 ? "bf16" : "fp32", end - begin,
           ms[iters / 2], ms[0], iters, loss, loss == loss ? "true" : "false");
    free(ms);
    be->release(be, x), be->release(be, v), be->release(be, t), be->release(be, ids);
    vd_ae_trainer_free(&trainer);
    vd_model_free(&m);
    vd_config_free(&cfg);
    be->destroy(be);
    return 0;
}
