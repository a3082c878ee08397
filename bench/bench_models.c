/* bench_models.c: a pruned student against its teacher (or any models of one frame size) in one
 * process on one backend — milliseconds per denoiser step (the UNet at each batch size, random
 * inputs), per served step (one sampler step of `batch` videos as the model samples them: two
 * UNet rows a video with guidance above 1, one without, and the guide's row where it has one)
 * and per video (vd_generate: the text encoder, 25 DDIM steps, the autoencoder's decode, and
 * with --eta the fresh noise each step), with each model's UNet parameters. The models take turns in every round, so drift on a busy machine
 * touches them alike. Links only the engine.
 *
 *   bench_models --model A.safetensors [--guidance G] [--guide GUIDE.safetensors --guide-scale S] [--eta E]
 *                [--record 0|1] --model B.safetensors [...] [--ae AE.safetensors]
 *                [--device cpu|cuda] [--bf16] [--batch 2 --batch 16] [--iters 5] [--videos 2]
 *
 * --guidance (default 4), --guide, --guide-scale, --eta (DDIM's fresh noise, default 0; the
 * per-video measure only) and --record (replay recorded UNet forwards where the backend records,
 * model.h's vd_unet_forward_recorded; default 1, in every measure) set how the model named
 * before them samples;
 * the same file twice, with --record 0 and 1, measures what the recordings save.
 * Prints one JSON line per model and measure (medians), then each model's ratios to the first:
 * "speedup" is the first model's time over this one's. */
#include "bench_common.h"
#include "vdmini.h"

#define MAX_MODELS 4
#define MAX_BATCHES 4

/* Random UNet inputs for rows rows, and room for the output: kept for all of a size's runs, so
 * that recorded forwards (--record) are replayed on the same buffers as a sampler's would be. */
typedef struct {
    float *x, *ctx, *t, *out;
} unet_inputs;

typedef struct {
    const char *path, *guide_path;
    float guidance, guide_scale, eta;
    int record;
    vd_model m, guide;
    vd_engine *engine;
    unet_inputs step_in[MAX_BATCHES], served_in[MAX_BATCHES], guide_in[MAX_BATCHES];
    double *step_ms[MAX_BATCHES], *served_ms[MAX_BATCHES], *video_ms;
} bench_model;

/* Whether b samples with its guide. */
static int guided(const bench_model *b) { return b->guide_path && b->guide_scale > 0.0f; }

static int open_backend(const char *device, int bf16, vd_backend **be)
{
    char err[256];
    if (strcmp(device, "cuda") == 0) {
        *be = vd_backend_cuda(0, err, sizeof err);
        if (!*be) return fprintf(stderr, "cuda: %s\n", err), 1;
        (*be)->precision = bf16 ? VD_PRECISION_BF16 : VD_PRECISION_F32;
        return 0;
    }
    if (strcmp(device, "cpu") != 0) return fprintf(stderr, "unknown device %s\n", device), 2;
    *be = vd_backend_cpu();
    return 0;
}

/* Random UNet inputs for rows rows of model m, and room for its output. */
static unet_inputs make_inputs(vd_model *m, vd_backend *be, int rows)
{
    const vd_unet_config *u = &m->cfg.unet;
    size_t S = (size_t)u->frames * u->latent_h * u->latent_w;
    return (unet_inputs){.x = vd_backend_random_normal(be, (size_t)rows * S * u->in_channels, 2, 1.0f),
                         .ctx = vd_backend_random_normal(be, (size_t)rows * m->cfg.text.max_tokens * u->context_dim, 3, 1.0f),
                         .t = vd_backend_random_normal(be, (size_t)rows, 4, 0.0f),
                         .out = be->alloc(be, (size_t)rows * S * u->out_channels * sizeof(float))};
}

static void free_inputs(vd_backend *be, unet_inputs *in)
{
    if (!in->x) return;
    be->release(be, in->x), be->release(be, in->ctx), be->release(be, in->t), be->release(be, in->out);
}

static void forward(vd_model *m, const unet_inputs *in, int rows)
{
    const vd_unet_config *u = &m->cfg.unet;
    vd_unet_forward_recorded(m, in->x, in->t, in->ctx, m->cfg.text.max_tokens, rows, u->frames, u->latent_h,
                             u->latent_w, in->out);
}

/* One UNet step of batch rows, synchronised: milliseconds. */
static double time_step(vd_model *m, vd_backend *be, const unet_inputs *in, int batch)
{
    be->synchronize(be);
    double t0 = vd_now();
    forward(m, in, batch);
    be->synchronize(be);
    return 1e3 * (vd_now() - t0);
}

static int served_rows(const bench_model *b, int videos) { return videos * (b->guidance > 1.0f ? 2 : 1); }

/* One sampler step of the k-th batch size's videos as b samples them, synchronised: milliseconds. */
static double time_served_step(bench_model *b, vd_backend *be, int k, int videos)
{
    be->synchronize(be);
    double t0 = vd_now();
    if (guided(b)) forward(&b->guide, &b->guide_in[k], videos);
    forward(&b->m, &b->served_in[k], served_rows(b, videos));
    be->synchronize(be);
    return 1e3 * (vd_now() - t0);
}

static double time_video(const bench_model *b, int side, int frames, float *pixels)
{
    vd_gen_params p = {.prompt = "a big red square moves right on a white background", .frames = frames,
                       .width = side, .height = side, .steps = 25, .guidance = b->guidance,
                       .guide_scale = guided(b) ? b->guide_scale : 0.0f, .eta = b->eta, .seed = 1};
    vd_engine *e = b->engine;
    char err[VD_ERR_LEN];
    double t0 = vd_now();
    if (vd_generate(e, &p, pixels, NULL, NULL, err)) {
        fprintf(stderr, "generate: %s\n", err);
        exit(1);
    }
    return 1e3 * (vd_now() - t0);
}

static void print_line(const bench_model *b, const char *what, int batch, const double *ms, int n, const char *device)
{
    printf("{\"model\": \"%s\", \"what\": \"%s\", \"batch\": %d, \"device\": \"%s\", \"unet_params\": %zu, "
           "\"guidance\": %g, \"guide\": \"%s\", \"guide_scale\": %g, \"eta\": %g, \"median_ms\": %.3f, "
           "\"record\": %d, \"min_ms\": %.3f, \"runs\": %d}\n",
           b->path, what, batch, device, vd_model_count_params(&b->m, "unet."), b->guidance,
           guided(b) ? b->guide_path : "", guided(b) ? b->guide_scale : 0.0, b->eta, ms[n / 2], b->m.record_forwards, ms[0], n);
}

int main(int argc, char **argv)
{
    bench_model models[MAX_MODELS];
    int nmodels = 0, batches[MAX_BATCHES], nbatches = 0, bf16 = 0, iters = 5, videos = 2;
    const char *device = "cpu", *ae = NULL;
    memset(models, 0, sizeof models);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--bf16") == 0) { bf16 = 1; continue; }
        if (!v) return fprintf(stderr, "%s: missing value\n", a), 2;
        if (strcmp(a, "--model") == 0 && nmodels < MAX_MODELS)
            models[nmodels].path = v, models[nmodels].record = 1, models[nmodels++].guidance = VD_DEFAULT_GUIDANCE;
        else if ((strcmp(a, "--guidance") == 0 || strcmp(a, "--guide") == 0 || strcmp(a, "--guide-scale") == 0 ||
                  strcmp(a, "--eta") == 0 || strcmp(a, "--record") == 0) &&
                 nmodels == 0)
            return fprintf(stderr, "%s: give it after the --model it applies to\n", a), 2;
        else if (strcmp(a, "--guidance") == 0) models[nmodels - 1].guidance = (float)atof(v);
        else if (strcmp(a, "--guide") == 0) models[nmodels - 1].guide_path = v;
        else if (strcmp(a, "--guide-scale") == 0) models[nmodels - 1].guide_scale = (float)atof(v);
        else if (strcmp(a, "--eta") == 0) models[nmodels - 1].eta = (float)atof(v);
        else if (strcmp(a, "--record") == 0) models[nmodels - 1].record = atoi(v);
        else if (strcmp(a, "--batch") == 0 && nbatches < MAX_BATCHES) batches[nbatches++] = atoi(v);
        else if (strcmp(a, "--ae") == 0) ae = v;
        else if (strcmp(a, "--device") == 0) device = v;
        else if (strcmp(a, "--iters") == 0) iters = atoi(v);
        else if (strcmp(a, "--videos") == 0) videos = atoi(v);
        else return fprintf(stderr, "unknown option %s (or too many)\n", a), 2;
        i++;
    }
    if (nbatches == 0) batches[0] = 2, batches[1] = 16, nbatches = 2;
    if (nmodels < 1 || iters < 1 || videos < 0) return fprintf(stderr, "need --model, and iters >= 1\n"), 2;
    for (int i = 0; i < nmodels; i++)
        if (!models[i].guide_path != !(models[i].guide_scale > 0))
            return fprintf(stderr, "%s: --guide and a --guide-scale above 0 go together\n", models[i].path), 2;
    for (int k = 0; k < nbatches; k++)
        if (batches[k] < 1) return fprintf(stderr, "bad --batch\n"), 2;

    vd_backend *be;
    int status = open_backend(device, bf16, &be);
    if (status) return status;
    char err[VD_ERR_LEN];
    vd_device dev = strcmp(device, "cuda") == 0 ? VD_DEVICE_CUDA : VD_DEVICE_CPU;
    for (int i = 0; i < nmodels; i++) {
        bench_model *b = &models[i];
        if (vd_model_load(&b->m, b->path, err, sizeof err)) return fprintf(stderr, "%s: %s\n", b->path, err), 1;
        if (!b->m.cfg.unet.present) return fprintf(stderr, "%s: no UNet\n", b->path), 1;
        vd_model_attach(&b->m, be);
        if (guided(b)) {
            if (vd_model_load(&b->guide, b->guide_path, err, sizeof err) ||
                vd_model_guide_fits(&b->m, &b->guide, b->guide_path, err, sizeof err))
                return fprintf(stderr, "%s: %s\n", b->guide_path, err), 1;
            vd_model_attach(&b->guide, be);
        }
        if (videos && !(b->engine = vd_engine_open(b->path, ae, dev, bf16, err)))
            return fprintf(stderr, "%s: %s\n", b->path, err), 1;
        if (videos && guided(b) && vd_engine_set_guide(b->engine, b->guide_path, NULL, err))
            return fprintf(stderr, "%s: %s\n", b->guide_path, err), 1;
        vd_model_record_forwards(&b->m, b->record), vd_model_record_forwards(&b->guide, b->record);
        if (videos) vd_engine_record_forwards(b->engine, b->record);
        for (int k = 0; k < nbatches; k++) {
            b->step_ms[k] = vd_malloc((size_t)iters * sizeof(double));
            b->served_ms[k] = vd_malloc((size_t)iters * sizeof(double));
            b->step_in[k] = make_inputs(&b->m, be, batches[k]);
            b->served_in[k] = make_inputs(&b->m, be, served_rows(b, batches[k]));
            if (guided(b)) b->guide_in[k] = make_inputs(&b->guide, be, batches[k]);
        }
        b->video_ms = vd_malloc((size_t)(videos ? videos : 1) * sizeof(double));
    }
    const vd_unet_config *u0 = &models[0].m.cfg.unet;
    vd_model_limits lim;
    if (videos) vd_engine_limits(models[0].engine, &lim);
    float *pixels = videos ? vd_malloc((size_t)u0->frames * 3 * lim.image_size * lim.image_size * sizeof(float)) : NULL;

    for (int w = 0; w < 2; w++) /* warm-up: every size twice (the second run records, with --record 1) */
        for (int i = 0; i < nmodels; i++)
            for (int k = 0; k < nbatches; k++) {
                bench_model *b = &models[i];
                time_step(&b->m, be, &b->step_in[k], batches[k]), time_served_step(b, be, k, batches[k]);
            }
    for (int r = 0; r < iters; r++)
        for (int i = 0; i < nmodels; i++)
            for (int k = 0; k < nbatches; k++) {
                bench_model *b = &models[i];
                b->step_ms[k][r] = time_step(&b->m, be, &b->step_in[k], batches[k]);
                b->served_ms[k][r] = time_served_step(b, be, k, batches[k]);
            }
    for (int r = 0; r < videos; r++)
        for (int i = 0; i < nmodels; i++) models[i].video_ms[r] = time_video(&models[i], lim.image_size, u0->frames, pixels);

    for (int i = 0; i < nmodels; i++) {
        bench_model *b = &models[i];
        for (int k = 0; k < nbatches; k++) {
            bench_sort_timings(b->step_ms[k], iters);
            print_line(b, "step", batches[k], b->step_ms[k], iters, be->name);
            bench_sort_timings(b->served_ms[k], iters);
            print_line(b, "served_step", batches[k], b->served_ms[k], iters, be->name);
        }
        if (videos) {
            bench_sort_timings(b->video_ms, videos);
            print_line(b, "video", 1, b->video_ms, videos, be->name);
        }
    }
    for (int i = 1; i < nmodels; i++) {
        bench_model *b = &models[i], *base = &models[0];
        printf("{\"model\": \"%s\", \"against\": \"%s\", \"params_ratio\": %.3f", b->path, base->path,
               (double)vd_model_count_params(&b->m, "unet.") / (double)vd_model_count_params(&base->m, "unet."));
        for (int k = 0; k < nbatches; k++)
            printf(", \"speedup_step_batch%d\": %.3f, \"speedup_served_step_batch%d\": %.3f", batches[k],
                   base->step_ms[k][iters / 2] / b->step_ms[k][iters / 2], batches[k],
                   base->served_ms[k][iters / 2] / b->served_ms[k][iters / 2]);
        if (videos) printf(", \"speedup_video\": %.3f", base->video_ms[videos / 2] / b->video_ms[videos / 2]);
        printf("}\n");
    }
    for (int i = 0; i < nmodels; i++) {
        for (int k = 0; k < nbatches; k++) {
            free(models[i].step_ms[k]), free(models[i].served_ms[k]);
            free_inputs(be, &models[i].step_in[k]), free_inputs(be, &models[i].served_in[k]);
            free_inputs(be, &models[i].guide_in[k]);
        }
        free(models[i].video_ms);
        if (models[i].engine) vd_engine_close(models[i].engine);
        vd_model_free(&models[i].m);
        if (guided(&models[i])) vd_model_free(&models[i].guide);
    }
    free(pixels);
    be->destroy(be);
    return 0;
}
