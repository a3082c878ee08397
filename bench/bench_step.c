/* bench_step.c: milliseconds per denoiser step of a preset model with random weights, or of a
 * model file, on one backend. It links only the engine library, so it travels to the GPU machine
 * in a small bundle.
 *
 *   bench_step --preset tiny|large | --model PATH [--batch N] [--frames T] [--device cpu|cuda]
 *              [--bf16] [--warmup N] [--iters N] [--record] [--profile]
 *   bench_step --print-config tiny|large     (the preset's JSON config, for the PyTorch baseline)
 *
 * Prints one JSON line per run: the median over iters, each iteration synchronised. --record
 * replays a recorded forward where the backend records (model.h, vd_unet_forward_recorded; at
 * least 2 warm-up steps, the second of which records), and the line says whether one was used and
 * the MiB of scratch the recording holds.
 * --profile also prints, to stderr, the time per op of one more step run op by op synchronised. */
#include "bench_common.h"
#include "op_profile.h"

int main(int argc, char **argv)
{
    const char *preset = "tiny", *model_path = NULL, *device = "cpu";
    int batch = 2, frames = 0, bf16 = 0, warmup = 2, iters = 5, profile = 0, record = 0;
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
        if (strcmp(a, "--record") == 0) { record = 1; continue; }
        if (!v) return fprintf(stderr, "%s: missing value\n", a), 2;
        if (strcmp(a, "--preset") == 0) preset = v;
        else if (strcmp(a, "--model") == 0) model_path = v;
        else if (strcmp(a, "--device") == 0) device = v;
        else if (strcmp(a, "--batch") == 0) batch = atoi(v);
        else if (strcmp(a, "--frames") == 0) frames = atoi(v);
        else if (strcmp(a, "--warmup") == 0) warmup = atoi(v);
        else if (strcmp(a, "--iters") == 0) iters = atoi(v);
        else return fprintf(stderr, "unknown option %s\n", a), 2;
        i++;
    }
    if (batch < 1 || iters < 1 || warmup < 0) return fprintf(stderr, "bad --batch, --iters or --warmup\n"), 2;
    if (record && warmup < 2) warmup = 2;

    vd_model_config cfg;
    vd_model m;
    vd_backend *be;
    int status = model_path ? bench_model_file_open(model_path, device, bf16, &cfg, &m, &be)
                            : bench_model_open(preset, device, bf16, &cfg, &m, &be);
    if (status) return status;
    const vd_unet_config *u = &cfg.unet;
    int T = frames > 0 ? frames : u->frames, h = u->latent_h, w = u->latent_w, L = cfg.text.max_tokens;
    float *x = vd_backend_random_normal(be, (size_t)batch * T * u->in_channels * h * w, 2, 1.0f);
    float *ctx = vd_backend_random_normal(be, (size_t)batch * L * u->context_dim, 3, 1.0f);
    float *t = vd_backend_random_normal(be, (size_t)batch, 4, 0.0f);
    float *t_host = vd_malloc((size_t)batch * sizeof(float));
    for (int i = 0; i < batch; i++) t_host[i] = (float)(100 + 37 * i % 900);
    be->upload(be, t, t_host, (size_t)batch * sizeof(float));
    free(t_host);
    float *out = be->alloc(be, (size_t)batch * T * u->out_channels * h * w * sizeof(float));

    double *ms = vd_malloc((size_t)iters * sizeof(double));
    for (int i = 0; i < warmup + iters; i++) {
        double t0 = vd_now();
        if (record) vd_unet_forward_recorded(&m, x, t, ctx, L, batch, T, h, w, out);
        else vd_unet_forward(&m, x, t, ctx, L, batch, T, h, w, out);
        be->synchronize(be);
        if (i >= warmup) ms[i - warmup] = 1e3 * (vd_now() - t0);
    }
    size_t recorded_bytes;
    int recorded = vd_model_recordings(&m, &recorded_bytes) > 0;
    bench_sort_timings(ms, iters);
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
    printf("{\"impl\": \"vdmini\", \"%s\": \"%s\", \"batch\": %d, \"frames\": %d, \"device\": \"%s\", "
           "\"precision\": \"%s\", \"recorded\": %s, \"recorded_mb\": %.1f, \"ms_per_step\": %.3f, "
           "\"min_ms\": %.3f, \"iters\": %d, \"finite\": %s}\n",
           model_path ? "model" : "preset", model_path ? model_path : preset, batch, T, be->name,
           be->precision == VD_PRECISION_BF16 ? "bf16" : "fp32", recorded ? "true" : "false",
           recorded_bytes / 1048576.0, ms[iters / 2], ms[0], iters, probe == probe ? "true" : "false");
    free(ms);
    be->release(be, x), be->release(be, ctx), be->release(be, t), be->release(be, out);
    vd_model_free(&m);
    vd_config_free(&cfg);
    be->destroy(be);
    return 0;
}
