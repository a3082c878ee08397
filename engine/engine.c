/* engine.c: the public interface of vdmini.h — loading models onto a backend, generating a
 * video (text encoding, first-frame conditioning, guided sampling, decoding), presets and the
 * model summary. */
#include "vdmini.h"
#include "common.h"
#include "flop_count.h"
#include "model.h"
#include "prune.h"
#include "rng.h"
#include "sampler.h"
#include "tokenizer.h"

#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct vd_engine {
    vd_model model;     /* text encoder + UNet (+ autoencoder when the file has it) */
    vd_model ae_model;  /* the autoencoder, when it came from its own file */
    vd_model *ae;       /* whichever of the two holds the autoencoder */
    vd_model guide;     /* a weaker model that guided sampling moves away from */
    int has_guide;
    int no_recording; /* vd_engine_record_forwards(e, 0): every UNet forward runs as it is */
    vd_backend *be;
};

vd_backend *vd_open_backend(vd_device device, int bf16, char err[VD_ERR_LEN])
{
    if (device == VD_DEVICE_CPU) return vd_backend_cpu();
    char cuda_err[VD_ERR_LEN];
    vd_backend *be = vd_backend_cuda(0, cuda_err, sizeof cuda_err);
    if (be) {
        be->precision = bf16 ? VD_PRECISION_BF16 : VD_PRECISION_F32;
        return be;
    }
    if (device == VD_DEVICE_CUDA) {
        vd_fail(err, VD_ERR_LEN, "no CUDA device: %s", cuda_err);
        return NULL;
    }
    VD_LOG(VD_LOG_INFO, "no GPU (%s); running on the CPU", cuda_err);
    return vd_backend_cpu();
}

int vd_open_backends(vd_device device, int bf16, int count, vd_backend **be, char err[VD_ERR_LEN])
{
    if (count == 1) return (be[0] = vd_open_backend(device, bf16, err)) ? 0 : -1;
    if (device == VD_DEVICE_CPU) return vd_fail(err, VD_ERR_LEN, "%d GPUs asked for, but the device is cpu", count);
    for (int g = 0; g < count; g++) {
        char cuda_err[VD_ERR_LEN];
        be[g] = vd_backend_cuda(g, cuda_err, sizeof cuda_err);
        if (!be[g]) {
            for (int k = 0; k < g; k++) be[k]->destroy(be[k]);
            return vd_fail(err, VD_ERR_LEN, "%d GPUs asked for, GPU %d: %s", count, g, cuda_err);
        }
        be[g]->precision = bf16 ? VD_PRECISION_BF16 : VD_PRECISION_F32;
    }
    return 0;
}

vd_engine *vd_engine_open(const char *model_path, const char *ae_path, vd_device device, int bf16,
                          char err[VD_ERR_LEN])
{
    vd_engine *e = vd_calloc(1, sizeof *e);
    if (vd_model_load(&e->model, model_path, err, VD_ERR_LEN)) goto fail;
    if (!e->model.cfg.text.present || !e->model.cfg.unet.present) {
        vd_fail(err, VD_ERR_LEN, "%s: a model file needs a text encoder and a UNet", model_path);
        goto fail;
    }
    if (e->model.cfg.ae.present) {
        e->ae = &e->model;
    } else {
        char path[4096];
        if (!ae_path) {
            char *copy = strdup(model_path);
            snprintf(path, sizeof path, "%s/ae.safetensors", dirname(copy));
            free(copy);
            ae_path = path;
        }
        if (vd_model_load(&e->ae_model, ae_path, err, VD_ERR_LEN)) goto fail;
        if (!e->ae_model.cfg.ae.present) {
            vd_fail(err, VD_ERR_LEN, "%s: no autoencoder in this file", ae_path);
            goto fail;
        }
        e->ae = &e->ae_model;
    }
    if (e->ae->cfg.ae.latent_channels * 2 + 1 != e->model.cfg.unet.in_channels) {
        vd_fail(err, VD_ERR_LEN, "the autoencoder's %d latent channels do not fit the UNet's %d input channels",
             e->ae->cfg.ae.latent_channels, e->model.cfg.unet.in_channels);
        goto fail;
    }
    e->be = vd_open_backend(device, bf16, err);
    if (!e->be) goto fail;
    vd_model_attach(&e->model, e->be);
    if (e->ae == &e->ae_model) vd_model_attach(&e->ae_model, e->be);
    return e;
fail:
    vd_engine_close(e);
    return NULL;
}

void vd_engine_close(vd_engine *e)
{
    if (!e) return;
    vd_model_free(&e->model);
    vd_model_free(&e->ae_model);
    vd_model_free(&e->guide);
    if (e->be) e->be->destroy(e->be);
    free(e);
}

int vd_engine_set_guide(vd_engine *e, const char *path, const char *units, char err[VD_ERR_LEN])
{
    if (e->has_guide) return vd_fail(err, VD_ERR_LEN, "the engine has a guide model already");
    if (!path && !(units && *units)) return vd_fail(err, VD_ERR_LEN, "a guide needs a model file or units to remove");
    vd_model loaded = {0};
    const vd_model *base = &e->model;
    if (path) {
        if (vd_model_load(&loaded, path, err, VD_ERR_LEN)) return -1;
        if (vd_model_guide_fits(&e->model, &loaded, path, err, VD_ERR_LEN)) {
            vd_model_free(&loaded);
            return -1;
        }
        base = &loaded;
    }
    if (!(units && *units)) {
        e->guide = loaded;
    } else {
        char *list = strdup(units), *names[VD_PRUNE_MAX_UNITS];
        int count = 0;
        for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok && count < VD_PRUNE_MAX_UNITS;
             tok = strtok_r(NULL, ",", &save))
            names[count++] = tok;
        vd_prune_report report;
        int rc = vd_prune(base, names, count, 0, &e->guide, &report, err, VD_ERR_LEN);
        if (rc == 0 && (report.sliced || report.fresh))
            rc = vd_fail(err, VD_ERR_LEN, "guide units %s: removing them reshapes other blocks; a guide may remove "
                         "only units that leave the rest as it is (mid, temporal.L, <block>.attn)", units);
        free(list);
        vd_model_free(&loaded);
        if (rc) {
            vd_model_free(&e->guide); /* a model vd_prune freed or never built is all zeros: a no-op */
            return -1;
        }
    }
    vd_model_attach(&e->guide, e->be);
    vd_model_record_forwards(&e->guide, !e->no_recording);
    e->has_guide = 1;
    return 0;
}

void vd_engine_record_forwards(vd_engine *e, int on)
{
    e->no_recording = !on;
    vd_model_record_forwards(&e->model, on);
    if (e->has_guide) vd_model_record_forwards(&e->guide, on);
}

int vd_engine_has_guide(const vd_engine *e) { return e->has_guide; }

const char *vd_engine_device_name(const vd_engine *e)
{
    return strcmp(e->be->name, "cuda") == 0 ? "cuda" : "cpu";
}

void vd_engine_memory(const vd_engine *e, size_t *used, size_t *total)
{
    e->be->memory_info(e->be, used, total);
}

int vd_engine_recordings(const vd_engine *e, size_t *scratch_bytes)
{
    size_t model_bytes, guide_bytes = 0;
    int n = vd_model_recordings(&e->model, &model_bytes);
    if (e->has_guide) n += vd_model_recordings(&e->guide, &guide_bytes);
    *scratch_bytes = model_bytes + guide_bytes;
    return n;
}

static int ae_factor(const vd_ae_config *a) { return 1 << (a->levels - 1); }

void vd_engine_limits(const vd_engine *e, vd_model_limits *out)
{
    const vd_unet_config *u = &e->model.cfg.unet;
    int f = ae_factor(&e->ae->cfg.ae);
    out->image_size = u->latent_h * f;
    out->latent_div = f * (1 << (u->levels - 1));
    out->max_tokens = e->model.cfg.text.max_tokens;
    out->default_frames = u->frames;
    out->sampling_guidance = e->model.cfg.sampling.guidance;
}

float vd_default_guidance(const char *model_path)
{
    vd_model_config cfg;
    char err[VD_ERR_LEN];
    if (vd_model_read_config(model_path, &cfg, err, sizeof err)) return VD_DEFAULT_GUIDANCE;
    float g = cfg.sampling.guidance > 0 ? cfg.sampling.guidance : VD_DEFAULT_GUIDANCE;
    vd_config_free(&cfg);
    return g;
}

int vd_engine_vocab_size(const vd_engine *e) { return e->model.cfg.text.vocab_size; }

const char *vd_engine_vocab_word(const vd_engine *e, int i)
{
    return i >= 0 && i < e->model.cfg.text.vocab_size ? e->model.cfg.text.vocab[i] : NULL;
}

int vd_unknown_words(const vd_engine *e, const char *prompt, char *buf, size_t buflen)
{
    int32_t *ids = vd_malloc((size_t)e->model.cfg.text.max_tokens * sizeof *ids);
    int n = vd_tokenize(&e->model.cfg.text, prompt, ids, buf, buflen);
    free(ids);
    return n;
}

struct vd_video {
    vd_gen_params params;
    int T, h, w, L;
    vd_sampler_plan plan;
    vd_latent_video state; /* pointers into the buffers below */
    float *z, *cond, *ctx; /* backend memory: latent, condition + mask, text rows */
    float *ctx_guide;      /* the prompt in the guide's text encoding, or NULL */
};

/* Video-to-video: v->z (backend memory, holding the video's drawn noise) becomes the latents of
 * p->video noised to the timestep of the plan's step where the last p->strength of its steps
 * begin, as training noises a clip; returns that step. */
static int start_from_video(vd_engine *e, const vd_video *v, const vd_gen_params *p)
{
    vd_backend *be = e->be;
    int lc = e->ae->cfg.ae.latent_channels, steps = v->plan.steps;
    int first = steps - (int)lroundf(p->strength * (float)steps);
    if (first > steps - 1) first = steps - 1;
    size_t pixels = (size_t)v->T * 3 * p->height * p->width, zn = (size_t)v->T * lc * v->h * v->w;
    float *video = be->alloc(be, pixels * sizeof(float)), *x0 = be->alloc(be, zn * sizeof(float));
    be->upload(be, video, p->video, pixels * sizeof(float));
    vd_ae_encode(e->ae, video, v->T, p->height, p->width, x0);
    double *abar = vd_alphas_cumprod(&e->model.cfg.diffusion);
    int t = (int)lroundf(v->plan.timestep[first]);
    be->axpby(be, v->z, (float)sqrt(abar[t]), x0, (float)sqrt(1.0 - abar[t]), zn); /* z = keep x0 + add noise */
    be->release(be, video), be->release(be, x0);
    free(abar);
    return first;
}

vd_video *vd_video_begin(vd_engine *e, const vd_gen_params *p, char err[VD_ERR_LEN])
{
    vd_model *m = &e->model;
    vd_backend *be = e->be;
    const vd_ae_config *ac = &e->ae->cfg.ae;
    const vd_text_config *tc = &m->cfg.text;
    vd_model_limits lim;
    vd_engine_limits(e, &lim);
    if (p->frames < 1 || p->frames > 256) return vd_fail(err, VD_ERR_LEN, "frames must be between 1 and 256 (got %d)", p->frames), NULL;
    if (p->width < lim.latent_div || p->height < lim.latent_div || p->width % lim.latent_div || p->height % lim.latent_div)
        return vd_fail(err, VD_ERR_LEN, "width and height must be positive multiples of %d (got %dx%d)", lim.latent_div, p->width, p->height), NULL;
    if (p->steps < 1 || p->steps > m->cfg.diffusion.train_steps)
        return vd_fail(err, VD_ERR_LEN, "steps must be between 1 and %d (got %d)", m->cfg.diffusion.train_steps, p->steps), NULL;
    if (!(p->guidance >= 0.0f && p->guidance <= 100.0f)) return vd_fail(err, VD_ERR_LEN, "guidance must be between 0 and 100"), NULL;
    if (!(p->guidance_rescale >= 0.0f && p->guidance_rescale <= 1.0f))
        return vd_fail(err, VD_ERR_LEN, "guidance_rescale must be between 0 and 1"), NULL;
    if (!(p->guide_scale >= 0.0f && p->guide_scale <= 100.0f))
        return vd_fail(err, VD_ERR_LEN, "guide_scale must be between 0 and 100"), NULL;
    if (p->guide_scale > 0.0f && !e->has_guide)
        return vd_fail(err, VD_ERR_LEN, "guide_scale needs a guide model, and this engine has none"), NULL;
    if (!(p->eta >= 0.0f && p->eta <= 1.0f)) return vd_fail(err, VD_ERR_LEN, "eta must be between 0 and 1"), NULL;
    if (p->eta > 0.0f && p->sampler != VD_SAMPLER_DDIM)
        return vd_fail(err, VD_ERR_LEN, "eta applies to the ddim sampler only (euler takes no fresh noise)"), NULL;
    if (p->video && !(p->strength > 0.0f && p->strength <= 1.0f))
        return vd_fail(err, VD_ERR_LEN, "strength must be above 0 and at most 1 (got %g)", (double)p->strength), NULL;

    vd_video *v = vd_calloc(1, sizeof *v);
    v->params = *p;
    v->params.prompt = NULL;
    v->params.image = NULL;
    v->params.video = NULL;
    int f = ae_factor(ac), lc = ac->latent_channels, guided = p->guidance > 1.0f, R = guided ? 2 : 1;
    v->T = p->frames, v->h = p->height / f, v->w = p->width / f, v->L = tc->max_tokens;
    int T = v->T, S = v->h * v->w, L = v->L;
    vd_sampler_plan_make(&m->cfg.diffusion, p->sampler, p->steps, p->eta, &v->plan);

    /* text: row 0 the prompt, row 1 (with guidance) the empty prompt */
    int32_t *ids_host = vd_calloc((size_t)R * L, sizeof *ids_host);
    vd_tokenize(tc, p->prompt ? p->prompt : "", ids_host, NULL, 0);
    int32_t *ids = be->alloc(be, (size_t)R * L * sizeof *ids);
    be->upload(be, ids, ids_host, (size_t)R * L * sizeof *ids);
    v->ctx = be->alloc(be, (size_t)R * L * tc->dim * sizeof(float));
    vd_text_forward(m, ids, R, v->ctx);
    if (p->guide_scale > 0.0f) {
        v->ctx_guide = be->alloc(be, (size_t)L * tc->dim * sizeof(float));
        vd_text_forward(&e->guide, ids, 1, v->ctx_guide);
    }
    free(ids_host);
    be->release(be, ids);

    /* condition: the first frame's latent on every frame plus a mask channel, or zeros */
    size_t cond_n = (size_t)T * (lc + 1) * S;
    float *cond_host = vd_calloc(cond_n, sizeof(float));
    if (p->image) {
        float *img = be->alloc(be, (size_t)3 * p->height * p->width * sizeof(float));
        float *zi = be->alloc(be, (size_t)lc * S * sizeof(float));
        be->upload(be, img, p->image, (size_t)3 * p->height * p->width * sizeof(float));
        vd_ae_encode(e->ae, img, 1, p->height, p->width, zi);
        float *zi_host = vd_malloc((size_t)lc * S * sizeof(float));
        be->download(be, zi_host, zi, (size_t)lc * S * sizeof(float));
        for (int t = 0; t < T; t++) {
            float *dst = cond_host + (size_t)t * (lc + 1) * S;
            memcpy(dst, zi_host, (size_t)lc * S * sizeof(float));
            for (int s = 0; s < S; s++) dst[(size_t)lc * S + s] = 1.0f;
        }
        free(zi_host);
        be->release(be, img);
        be->release(be, zi);
    }
    v->cond = be->alloc(be, cond_n * sizeof(float));
    be->upload(be, v->cond, cond_host, cond_n * sizeof(float));
    free(cond_host);

    /* initial noise, drawn on the host so that every backend starts from the same bits */
    size_t zn = (size_t)T * lc * S;
    float *z_host = vd_malloc(zn * sizeof(float));
    vd_rng_normal(p->seed, 0, z_host, zn);
    v->z = be->alloc(be, zn * sizeof(float));
    be->upload(be, v->z, z_host, zn * sizeof(float));
    free(z_host);
    int first_step = p->video ? start_from_video(e, v, p) : 0;

    size_t row_ctx = (size_t)L * tc->dim;
    v->state = (vd_latent_video){.z = v->z, .cond = v->cond, .ctx = v->ctx,
                                 .ctx_uncond = guided ? v->ctx + row_ctx : NULL, .plan = &v->plan,
                                 .ctx_guide = v->ctx_guide, .guidance = p->guidance,
                                 .guidance_rescale = p->guidance_rescale, .guide_scale = p->guide_scale,
                                 .pin_first_frame = p->image != NULL, .step = first_step, .noise_seed = p->seed};
    return v;
}

int vd_video_compatible(const vd_video *a, const vd_video *b)
{
    return a->T == b->T && a->h == b->h && a->w == b->w;
}

int vd_video_step_index(const vd_video *v) { return v->state.step; }
int vd_video_steps(const vd_video *v) { return v->plan.steps; }

void vd_step(vd_engine *e, vd_video **videos, int n)
{
    if (n < 1) return;
    vd_latent_video *states = vd_malloc((size_t)n * sizeof *states);
    for (int i = 0; i < n; i++) states[i] = videos[i]->state;
    const vd_video *first = videos[0];
    vd_denoise_step(&e->model, e->has_guide ? &e->guide : NULL, states, n, first->L, first->T, first->h, first->w);
    for (int i = 0; i < n; i++) videos[i]->state.step = states[i].step;
    free(states);
}

void vd_video_decode(vd_engine *e, vd_video *v, float *frames)
{
    vd_backend *be = e->be;
    size_t n = (size_t)v->T * 3 * v->params.height * v->params.width;
    float *img = be->alloc(be, n * sizeof(float));
    vd_ae_decode(e->ae, v->z, v->T, v->h, v->w, img);
    be->download(be, frames, img, n * sizeof(float));
    be->release(be, img);
}

void vd_video_free(vd_engine *e, vd_video *v)
{
    if (!v) return;
    e->be->release(e->be, v->z), e->be->release(e->be, v->cond), e->be->release(e->be, v->ctx);
    if (v->ctx_guide) e->be->release(e->be, v->ctx_guide);
    vd_sampler_plan_free(&v->plan);
    free(v);
}

int vd_generate(vd_engine *e, const vd_gen_params *p, float *frames, vd_progress_fn progress, void *user,
                char err[VD_ERR_LEN])
{
    vd_video *v = vd_video_begin(e, p, err);
    if (!v) return -1;
    int rc = 0;
    while (vd_video_step_index(v) < vd_video_steps(v)) {
        vd_step(e, &v, 1);
        if (progress && progress(user, vd_video_step_index(v), vd_video_steps(v))) {
            rc = 1;
            break;
        }
    }
    if (rc == 0) vd_video_decode(e, v, frames);
    vd_video_free(e, v);
    return rc;
}

int vd_init_preset(const char *preset, const int *inner_channels, int inner_count, uint64_t seed, const char *out_path,
                   char err[VD_ERR_LEN])
{
    vd_model_config cfg;
    if (vd_config_preset(preset, &cfg)) return vd_fail(err, VD_ERR_LEN, "unknown preset \"%s\" (known: tiny, large)", preset);
    vd_model m;
    int rc = inner_count ? vd_unet_set_inner_channels(&cfg.unet, inner_channels, inner_count, err, VD_ERR_LEN) : 0;
    if (rc == 0) rc = vd_model_build(&m, &cfg, err, VD_ERR_LEN);
    vd_config_free(&cfg);
    if (rc) return -1;
    vd_model_init_random(&m, seed);
    rc = vd_model_save(&m, out_path, VD_ST_F32, err, VD_ERR_LEN);
    vd_model_free(&m);
    return rc;
}

int vd_print_info(const char *path_or_preset, FILE *out, char err[VD_ERR_LEN])
{
    vd_model_config cfg;
    if (vd_config_preset(path_or_preset, &cfg) != 0 && vd_model_read_config(path_or_preset, &cfg, err, VD_ERR_LEN))
        return -1;
    vd_model m;
    if (vd_model_build(&m, &cfg, err, VD_ERR_LEN)) {
        vd_config_free(&cfg);
        return -1;
    }
    fprintf(out, "model: %s\n", path_or_preset);
    if (cfg.ae.present) {
        fprintf(out, "autoencoder: channels");
        for (int l = 0; l < cfg.ae.levels; l++) fprintf(out, " %d", cfg.ae.channels[l]);
        fprintf(out, ", %d latent channels, %dx downsampling, %.3f M parameters\n", cfg.ae.latent_channels,
                ae_factor(&cfg.ae), vd_model_count_params(&m, "ae.") / 1e6);
    }
    if (cfg.text.present)
        fprintf(out, "text encoder: %d words, %d tokens, dim %d, %d layers, %d heads, %.3f M parameters\n",
                cfg.text.vocab_size, cfg.text.max_tokens, cfg.text.dim, cfg.text.layers, cfg.text.heads,
                vd_model_count_params(&m, "text.") / 1e6);
    if (cfg.unet.present) {
        const vd_unet_config *u = &cfg.unet;
        fprintf(out, "unet: channels");
        for (int l = 0; l < u->levels; l++) {
            fprintf(out, " %d%s", u->channels[l], u->attention[l] ? "+attn" : "");
            if (vd_unet_inner_channels(u, l) != u->channels[l]) fprintf(out, "(inner %d)", vd_unet_inner_channels(u, l));
        }
        fprintf(out, ", %d blocks per level, head dim %d, %d frames of %dx%d latents, %.3f M parameters\n",
                u->blocks_per_level, u->head_dim, u->frames, u->latent_h, u->latent_w,
                vd_model_count_params(&m, "unet.") / 1e6);
        if (u->removed_count) {
            fprintf(out, "removed blocks:");
            for (int i = 0; i < u->removed_count; i++) fprintf(out, " %s", u->removed[i]);
            fprintf(out, "\n");
        }
        if (cfg.sampling.guidance > 0)
            fprintf(out, "samples at guidance %g where none is asked for%s\n", cfg.sampling.guidance,
                    cfg.sampling.guidance == 1.0f ? " (guidance-distilled: one UNet row a video a step)" : "");
        char names[256][16];
        int nb = vd_unet_block_names(u, names, 256);
        fprintf(out, "%-12s %12s\n", "block", "parameters");
        for (int i = 0; i < nb; i++) {
            char prefix[32];
            snprintf(prefix, sizeof prefix, "unet.%.15s.", names[i]);
            fprintf(out, "%-12s %12zu\n", names[i], vd_model_count_params(&m, prefix));
        }
        double f1 = vd_unet_step_flops(&cfg, 1);
        fprintf(out, "GFLOPs per denoiser step (matrix products; one video, %d frames): %.2f; with guidance "
                "(batch 2): %.2f\n", u->frames, f1 / 1e9, 2 * f1 / 1e9);
    }
    fprintf(out, "total parameters: %.3f M\n", m.total / 1e6);
    vd_model_free(&m);
    vd_config_free(&cfg);
    return 0;
}
