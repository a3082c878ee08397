/* distill.c: the ICMD consistency loss of a distillation step and its discriminator (see
 * distill.h). The teacher's passes and the student's come from denoiser_train.h: a forward that
 * keeps its activations, and a backward that takes extra gradients at stage outputs (ICD's, and
 * the heads' at the backbone's features) and can give the input's gradient (MCA's path back to
 * the student's prediction). The heads are a few backend ops over one contiguous parameter
 * buffer with a table of (name, shape, offset), like the model's. */
#include "distill.h"
#include "common.h"
#include "denoiser_train.h"
#include "rng.h"
#include "tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FEATURES (2 * VD_MAX_LEVELS)
#define DISC_BETA1 0.5f
#define DISC_BETA2 0.999f
#define DISC_EPS 1e-8f

/* One level's heads: offsets into the heads' buffer. */
typedef struct {
    int stage; /* the backbone stage whose output feeds them */
    int C, level;
    int H, W; /* the feature's size in the current micro-batch */
    size_t s_w1, s_b1, s_w2, s_b2; /* spatial: 1x1 conv C -> C, 1x1 conv C -> 1 */
    size_t t_w1, t_b1, t_w2, t_b2; /* temporal: conv over frames C -> C, linear C -> 1 */
} level_heads;

/* A feature ICD compares: the student's stage and the teacher's stage of the same kind and level. */
typedef struct {
    int student, teacher;
} icd_pair;

struct vd_distill {
    vd_model teacher;
    vd_backend *be;
    float lambda_icd, lambda_mca, disc_lr;
    icd_pair pairs[MAX_FEATURES];
    int npairs;
    int backbone_stages; /* the teacher's stages before the mid block */
    level_heads heads[VD_MAX_LEVELS];
    int nheads;
    size_t disc_total;
    float *disc, *disc_grad, *disc_m, *disc_v; /* backend memory, disc_total floats each */
    int disc_step;
    float *ones[VD_MAX_LEVELS]; /* 1/S over a level's S pixels: the mean over pixels as a product */
    int ones_S[VD_MAX_LEVELS];  /* the S they were made for */
    float *frozen_grads;        /* where the frozen teacher's parameter gradients go */
    /* a guided target (vd_distill_set_guided_target): guidance > 1 turns it on */
    float guidance, guide_scale;
    vd_model guide;
    int has_guide;
    float *empty_ctx; /* (empty_n, L, dim) the teacher's encoding of the empty prompt, in backend memory */
    int empty_n;
};

/* Index of the last stage of kind at level (-1 when none) in a plan of n stages. */
static int last_stage(const vd_unet_stage *st, int n, vd_unet_stage_kind kind, int level)
{
    int found = -1;
    for (int i = 0; i < n; i++)
        if (st[i].kind == kind && st[i].level == level) found = i;
    return found;
}

static int plan_of(const vd_model *m, vd_unet_stage *st, char *err, size_t errlen)
{
    char inner[160];
    int n = vd_unet_plan(&m->cfg.unet, st, inner, sizeof inner);
    if (n < 0) vd_fail(err, errlen, "%s", inner);
    return n;
}

/* The features ICD compares, and the backbone's stages and heads. */
static int plan_features(vd_distill *d, const vd_model *student, char *err, size_t errlen)
{
    vd_unet_stage *ss = vd_malloc(VD_UNET_MAX_STAGES * sizeof *ss), *ts = vd_malloc(VD_UNET_MAX_STAGES * sizeof *ts);
    int ns = plan_of(student, ss, err, errlen), nt = ns < 0 ? -1 : plan_of(&d->teacher, ts, err, errlen);
    int rc = ns < 0 || nt < 0 ? -1 : 0;
    static const vd_unet_stage_kind kinds[] = {VD_STAGE_DOWN_BLOCK, VD_STAGE_UP_BLOCK};
    for (int k = 0; rc == 0 && k < 2; k++)
        for (int level = 0; level < d->teacher.cfg.unet.levels; level++) {
            int s = last_stage(ss, ns, kinds[k], level), t = last_stage(ts, nt, kinds[k], level);
            if (s >= 0 && t >= 0 && ss[s].co == ts[t].co) d->pairs[d->npairs++] = (icd_pair){s, t};
        }
    /* the backbone: the encoder half, every stage before the mid block (or the first up block);
     * a level's feature is its last stage's output */
    int mid = 0;
    while (rc == 0 && mid < nt && (ts[mid].kind == VD_STAGE_CONV_IN || ts[mid].kind == VD_STAGE_DOWN_BLOCK ||
                                   ts[mid].kind == VD_STAGE_DOWNSAMPLE))
        mid++;
    d->backbone_stages = mid;
    for (int i = 0; rc == 0 && i < mid; i++) {
        if (i + 1 < mid && ts[i + 1].kind != VD_STAGE_DOWNSAMPLE) continue;
        d->heads[d->nheads++] = (level_heads){.stage = i, .C = ts[i].co, .level = ts[i].level};
    }
    if (rc == 0 && d->nheads == 0) rc = vd_fail(err, errlen, "the teacher's UNet has no stage before its mid block");
    free(ss), free(ts);
    return rc;
}

/* Lays the heads' parameters out, allocates their buffers and draws them: weights normal with
 * standard deviation 1/sqrt(fan_in), biases zero. */
static void build_heads(vd_distill *d, uint64_t seed)
{
    size_t total = 0;
    for (int k = 0; k < d->nheads; k++) {
        level_heads *h = &d->heads[k];
        size_t C = (size_t)h->C;
        h->s_w1 = total, total += C * C;
        h->s_b1 = total, total += C;
        h->s_w2 = total, total += C;
        h->s_b2 = total, total += 1;
        h->t_w1 = total, total += C * C * 3;
        h->t_b1 = total, total += C;
        h->t_w2 = total, total += C;
        h->t_b2 = total, total += 1;
    }
    d->disc_total = total;
    float *host = vd_calloc(total, sizeof(float));
    for (int k = 0; k < d->nheads; k++) {
        level_heads *h = &d->heads[k];
        size_t C = (size_t)h->C;
        const struct { size_t at, n, fan_in; } w[] = {{h->s_w1, C * C, C}, {h->s_w2, C, C}, {h->t_w1, C * C * 3, 3 * C},
                                                      {h->t_w2, C, C}};
        for (size_t i = 0; i < sizeof w / sizeof *w; i++) {
            vd_rng_normal(seed, w[i].at, host + w[i].at, w[i].n);
            for (size_t j = 0; j < w[i].n; j++) host[w[i].at + j] /= sqrtf((float)w[i].fan_in);
        }
    }
    vd_backend *be = d->be;
    size_t bytes = total * sizeof(float);
    d->disc = be->alloc(be, bytes), d->disc_grad = be->alloc(be, bytes);
    d->disc_m = be->alloc(be, bytes), d->disc_v = be->alloc(be, bytes);
    be->upload(be, d->disc, host, bytes);
    be->zero(be, d->disc_grad, bytes), be->zero(be, d->disc_m, bytes), be->zero(be, d->disc_v, bytes);
    free(host);
}

/* Sizes the heads' features for latents h x w, and their pixel means. */
static void size_heads(vd_distill *d, int h, int w)
{
    vd_backend *be = d->be;
    for (int k = 0; k < d->nheads; k++) {
        level_heads *hd = &d->heads[k];
        hd->H = h >> hd->level, hd->W = w >> hd->level;
        int S = hd->H * hd->W;
        if (d->ones[k] && d->ones_S[k] == S) continue;
        if (d->ones[k]) be->release(be, d->ones[k]);
        float *ones = vd_malloc((size_t)S * sizeof(float));
        for (int i = 0; i < S; i++) ones[i] = 1.0f / (float)S;
        d->ones[k] = be->alloc(be, (size_t)S * sizeof(float));
        be->upload(be, d->ones[k], ones, (size_t)S * sizeof(float));
        d->ones_S[k] = S;
        free(ones);
    }
}

static int check_student(const vd_model *t, const vd_model *s, char *err, size_t errlen)
{
    const vd_text_config *tt = &t->cfg.text, *st = &s->cfg.text;
    const vd_unet_config *tu = &t->cfg.unet, *su = &s->cfg.unet;
    if (!tt->present || !tu->present) return vd_fail(err, errlen, "teacher: the file has no text encoder and UNet");
    if (tt->dim != st->dim || tt->max_tokens != st->max_tokens || tt->vocab_size != st->vocab_size)
        return vd_fail(err, errlen, "teacher: its text encoder does not match the student's");
    if (tu->in_channels != su->in_channels || tu->out_channels != su->out_channels || tu->levels != su->levels ||
        tu->latent_h != su->latent_h || tu->latent_w != su->latent_w)
        return vd_fail(err, errlen, "teacher: its UNet's channels, levels or latent size differ from the student's");
    return 0;
}

vd_distill *vd_distill_open(const char *teacher_path, const vd_model *student, vd_backend *be, float lambda_icd,
                            float lambda_mca, float disc_lr, uint64_t seed, char *err, size_t errlen)
{
    vd_distill *d = vd_calloc(1, sizeof *d);
    d->be = be, d->lambda_icd = lambda_icd, d->lambda_mca = lambda_mca, d->disc_lr = disc_lr;
    char inner[256];
    if (vd_model_load(&d->teacher, teacher_path, inner, sizeof inner)) {
        vd_fail(err, errlen, "teacher %s: %s", teacher_path, inner);
        free(d);
        return NULL;
    }
    if (check_student(&d->teacher, student, err, errlen) || plan_features(d, student, err, errlen)) {
        vd_model_free(&d->teacher);
        free(d);
        return NULL;
    }
    vd_model_attach(&d->teacher, be);
    build_heads(d, seed);
    d->frozen_grads = be->alloc(be, d->teacher.total * sizeof(float));
    return d;
}

void vd_distill_free(vd_distill *d)
{
    if (!d) return;
    vd_backend *be = d->be;
    be->release(be, d->disc), be->release(be, d->disc_grad), be->release(be, d->disc_m), be->release(be, d->disc_v);
    for (int k = 0; k < d->nheads; k++)
        if (d->ones[k]) be->release(be, d->ones[k]);
    be->release(be, d->frozen_grads);
    if (d->empty_ctx) be->release(be, d->empty_ctx);
    if (d->has_guide) vd_model_free(&d->guide);
    vd_model_free(&d->teacher);
    free(d);
}

int vd_distill_set_guided_target(vd_distill *d, float guidance, const char *guide_path, float guide_scale, char *err,
                                 size_t errlen)
{
    if (!(guidance > 1.0f)) return vd_fail(err, errlen, "guided target: guidance %g is not above 1", guidance);
    if (guide_scale < 0.0f) return vd_fail(err, errlen, "guided target: guide scale %g is negative", guide_scale);
    if (guide_path && *guide_path && !d->has_guide) {
        char inner[256];
        if (vd_model_load(&d->guide, guide_path, inner, sizeof inner))
            return vd_fail(err, errlen, "guide %s: %s", guide_path, inner);
        if (vd_model_guide_fits(&d->teacher, &d->guide, guide_path, err, errlen)) {
            vd_model_free(&d->guide);
            return -1;
        }
        vd_model_attach(&d->guide, d->be);
        d->has_guide = 1;
    }
    if (guide_scale > 0.0f && !d->has_guide)
        return vd_fail(err, errlen, "guided target: a guide scale needs a guide model");
    d->guidance = guidance, d->guide_scale = guide_scale;
    return 0;
}

/* ---- the heads ---- */

/* What a level's heads keep from their forward for the backward. */
typedef struct {
    const float *f;     /* the feature (B, C, S) */
    float *h1, *a1, *o; /* spatial: conv1, SiLU, conv2 (B, 1, S) */
    float *p, *h2, *a2; /* temporal: pooled (B, C), temporal conv, SiLU */
} heads_rec;

/* Level k's heads on its feature f (N*T, C, H, W): each frame's two logits are added into logits (N*T). */
static void heads_fwd(vd_distill *d, vd_model *pool, int k, heads_rec *r, const float *f, int N, int T, float *logits)
{
    vd_backend *be = d->be;
    const level_heads *h = &d->heads[k];
    int B = N * T, C = h->C, S = h->H * h->W;
    const float *w = d->disc;
    size_t n = (size_t)B * C * S;
    r->f = f;
    r->h1 = vd_model_scratch(pool, n), r->a1 = vd_model_scratch(pool, n), r->o = vd_model_scratch(pool, (size_t)B * S);
    r->p = vd_model_scratch(pool, (size_t)B * C), r->h2 = vd_model_scratch(pool, (size_t)B * C);
    r->a2 = vd_model_scratch(pool, (size_t)B * C);
    float *y = vd_model_scratch(pool, (size_t)B);
    be->conv2d(be, r->h1, f, w + h->s_w1, w + h->s_b1, B, C, h->H, h->W, C, 1, 1);
    be->silu(be, r->a1, r->h1, n);
    be->conv2d(be, r->o, r->a1, w + h->s_w2, w + h->s_b2, B, C, h->H, h->W, 1, 1, 1);
    be->linear(be, y, r->o, d->ones[k], NULL, B, S, 1); /* mean over pixels */
    be->add(be, logits, logits, y, (size_t)B);
    be->linear(be, r->p, f, d->ones[k], NULL, B * C, S, 1); /* (N, T, C): each frame's mean feature */
    be->temporal_conv(be, r->h2, r->p, w + h->t_w1, w + h->t_b1, N, T, C, C, 1);
    be->silu(be, r->a2, r->h2, (size_t)B * C);
    be->linear(be, y, r->a2, w + h->t_w2, w + h->t_b2, B, C, 1);
    be->add(be, logits, logits, y, (size_t)B);
    vd_model_scratch_done(pool, y);
}

/* dlogits (B): each frame's gradient of both its logits. The heads' gradients accumulate into
 * gw (NULL: not wanted); the feature's gradient is written to df unless it is NULL. */
static void heads_bwd(vd_distill *d, vd_model *pool, int k, const heads_rec *r, const float *dlogits, int N, int T,
                      float *gw, float *df)
{
    vd_backend *be = d->be;
    const level_heads *h = &d->heads[k];
    int B = N * T, C = h->C, S = h->H * h->W;
    const float *w = d->disc;
    size_t n = (size_t)B * C * S;
#define G(off) (gw ? gw + (off) : NULL)
    float *dout = vd_model_scratch(pool, (size_t)B * S), *da = vd_model_scratch(pool, n), *dh = vd_model_scratch(pool, n);
    be->linear_backward(be, dout, NULL, NULL, dlogits, r->o, d->ones[k], B, S, 1);
    be->conv2d_backward(be, da, G(h->s_w2), G(h->s_b2), dout, r->a1, w + h->s_w2, B, C, h->H, h->W, 1, 1, 1);
    be->silu_backward(be, dh, da, r->h1, n);
    be->conv2d_backward(be, df, G(h->s_w1), G(h->s_b1), dh, r->f, w + h->s_w1, B, C, h->H, h->W, C, 1, 1);
    float *da2 = vd_model_scratch(pool, (size_t)B * C), *dh2 = vd_model_scratch(pool, (size_t)B * C);
    float *dp = vd_model_scratch(pool, (size_t)B * C);
    be->linear_backward(be, da2, G(h->t_w2), G(h->t_b2), dlogits, r->a2, w + h->t_w2, B, C, 1);
    be->silu_backward(be, dh2, da2, r->h2, (size_t)B * C);
    be->temporal_conv_backward(be, dp, G(h->t_w1), G(h->t_b1), dh2, r->p, w + h->t_w1, N, T, C, C, 1);
    if (df) { /* the pooling's share: dp spread over the pixels */
        be->linear_backward(be, dh, NULL, NULL, dp, r->f, d->ones[k], B * C, S, 1);
        be->add(be, df, df, dh, n);
    }
#undef G
    vd_model_scratch_done(pool, dout), vd_model_scratch_done(pool, da), vd_model_scratch_done(pool, dh);
    vd_model_scratch_done(pool, da2), vd_model_scratch_done(pool, dh2), vd_model_scratch_done(pool, dp);
}

static void heads_release(vd_model *pool, heads_rec *r)
{
    vd_model_scratch_done(pool, r->h1), vd_model_scratch_done(pool, r->a1), vd_model_scratch_done(pool, r->o);
    vd_model_scratch_done(pool, r->p), vd_model_scratch_done(pool, r->h2), vd_model_scratch_done(pool, r->a2);
}

/* ---- MCA ---- */

/* One side of the discriminator: the backbone pass on x (N, T, in_channels, h, w) and every
 * level's heads; D (N, host) per clip. The pass and the records stay for a backward. */
typedef struct {
    vd_denoiser_pass *pass;
    heads_rec rec[VD_MAX_LEVELS];
    float D[VD_DISTILL_MAX_CLIPS];
} disc_side;

static void disc_fwd(vd_distill *d, disc_side *s, const int32_t *ids, const float *x, const float *t, int N, int T,
                     int h, int w)
{
    vd_backend *be = d->be;
    vd_model *pool = &d->teacher;
    int B = N * T;
    s->pass = vd_denoiser_forward(&d->teacher, ids, x, t, N, T, h, w, d->backbone_stages);
    float *logits = vd_model_scratch(pool, (size_t)B);
    be->zero(be, logits, (size_t)B * sizeof(float));
    for (int k = 0; k < d->nheads; k++)
        heads_fwd(d, pool, k, &s->rec[k], vd_denoiser_pass_output(s->pass, d->heads[k].stage, NULL), N, T, logits);
    float *host = vd_malloc((size_t)B * sizeof(float));
    be->download(be, host, logits, (size_t)B * sizeof(float));
    vd_model_scratch_done(pool, logits);
    float scale = 1.0f / (2.0f * (float)d->nheads * (float)T);
    for (int n = 0; n < N; n++) {
        double sum = 0;
        for (int i = 0; i < T; i++) sum += host[n * T + i];
        s->D[n] = (float)(sum * scale);
    }
    free(host);
}

/* dD (N, host): the gradient of each clip's D. Heads' gradients into gw (or not, NULL); with
 * want_dx, the backbone's input gradient into dx (N, T, in_channels, h, w). */
static void disc_bwd(vd_distill *d, disc_side *s, const float *dD, int N, int T, float *gw, float *dx)
{
    vd_backend *be = d->be;
    vd_model *pool = &d->teacher;
    int B = N * T;
    float scale = 1.0f / (2.0f * (float)d->nheads * (float)T);
    float *host = vd_malloc((size_t)B * sizeof(float)), *dlogits = vd_model_scratch(pool, (size_t)B);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < T; i++) host[n * T + i] = dD[n] * scale;
    be->upload(be, dlogits, host, (size_t)B * sizeof(float));
    free(host);
    float *extra[VD_UNET_MAX_STAGES] = {NULL};
    for (int k = 0; k < d->nheads; k++) {
        size_t n;
        vd_denoiser_pass_output(s->pass, d->heads[k].stage, &n);
        float *df = dx ? vd_model_scratch(pool, n) : NULL;
        heads_bwd(d, pool, k, &s->rec[k], dlogits, N, T, gw, df);
        extra[d->heads[k].stage] = df;
    }
    if (dx) {
        be->zero(be, d->frozen_grads, d->teacher.total * sizeof(float));
        vd_denoiser_backward(s->pass, d->frozen_grads, NULL, extra, dx);
    }
    for (int k = 0; k < d->nheads; k++)
        if (extra[d->heads[k].stage]) vd_model_scratch_done(pool, extra[d->heads[k].stage]);
    vd_model_scratch_done(pool, dlogits);
}

static void disc_release(vd_distill *d, disc_side *s)
{
    for (int k = 0; k < d->nheads; k++) heads_release(&d->teacher, &s->rec[k]);
    vd_denoiser_pass_free(s->pass);
    s->pass = NULL;
}

/* x0 = a z_t - b v per clip, re-noised: a' x0 + b' eps (both in place of out), written with the
 * condition channels as the backbone's input x_bb (N, T, in_channels, S). */
static void renoise_input(vd_backend *be, float *x_bb, float *x0, const float *zt, const float *v, const float *cond,
                          const float *eps, const float *a, const float *b, const float *a2, const float *b2, int N,
                          int T, int lc, int S)
{
    size_t clip = (size_t)T * lc * S;
    for (int n = 0; n < N; n++) {
        float *y = x0 + n * clip;
        be->copy(be, y, zt + n * clip, clip * sizeof(float));
        be->axpby(be, y, -b[n], v + n * clip, a[n], clip);  /* a z_t - b v */
        be->axpby(be, y, b2[n], eps + n * clip, a2[n], clip); /* a' x0 + b' eps */
    }
    be->concat_channels(be, x_bb, x0, lc, cond, lc + 1, N * T, S);
}

/* The MCA term's gradient reaches the student's prediction (dpred += lambda dL/dv); the heads'
 * hinge gradients accumulate; returns -mean D(fake) and the hinge loss in *disc. */
static float mca(vd_distill *d, const int32_t *ids, const float *x_in, const float *pred_s, const float *pred_t,
                 const float *t_host, const double *abar, int N, int T, int h, int w, const vd_distill_renoise *renoise,
                 float *dpred, float *disc)
{
    vd_backend *be = d->be;
    vd_model *pool = &d->teacher;
    const vd_unet_config *u = &d->teacher.cfg.unet;
    int lc = u->out_channels, in = u->in_channels, S = h * w, B = N * T, steps = d->teacher.cfg.diffusion.train_steps;
    size_t zn = (size_t)B * lc * S, xn = (size_t)B * in * S;
    float a[VD_DISTILL_MAX_CLIPS], b[VD_DISTILL_MAX_CLIPS], a2[VD_DISTILL_MAX_CLIPS], b2[VD_DISTILL_MAX_CLIPS];
    size_heads(d, h, w);
    for (int n = 0; n < N; n++) {
        int t = (int)t_host[n], t2 = (int)renoise->t_host[n];
        if (t2 < 0 || t2 >= steps) t2 = t2 < 0 ? 0 : steps - 1;
        a[n] = (float)sqrt(abar[t]), b[n] = (float)sqrt(1.0 - abar[t]);
        a2[n] = (float)sqrt(abar[t2]), b2[n] = (float)sqrt(1.0 - abar[t2]);
    }
    const float *eps = renoise->eps;
    float *zt = vd_model_scratch(pool, zn), *cond = vd_model_scratch(pool, (size_t)B * (lc + 1) * S);
    float *x0 = vd_model_scratch(pool, zn), *t2 = vd_model_scratch(pool, (size_t)N);
    float *x_real = vd_model_scratch(pool, xn), *x_fake = vd_model_scratch(pool, xn);
    be->upload(be, t2, renoise->t_host, (size_t)N * sizeof(float));
    be->concat_channels_backward(be, zt, cond, x_in, lc, lc + 1, B, S);
    renoise_input(be, x_real, x0, zt, pred_t, cond, eps, a, b, a2, b2, N, T, lc, S);
    renoise_input(be, x_fake, x0, zt, pred_s, cond, eps, a, b, a2, b2, N, T, lc, S);

    /* the heads: hinge loss on real and fake */
    disc_side real, fake;
    float dD[VD_DISTILL_MAX_CLIPS] = {0};
    double hinge = 0, gen = 0;
    disc_fwd(d, &real, ids, x_real, t2, N, T, h, w);
    for (int n = 0; n < N; n++) hinge += fmax(0.0, 1.0 - real.D[n]), dD[n] = real.D[n] < 1.0f ? -1.0f / N : 0.0f;
    disc_bwd(d, &real, dD, N, T, d->disc_grad, NULL);
    disc_release(d, &real);
    disc_fwd(d, &fake, ids, x_fake, t2, N, T, h, w);
    for (int n = 0; n < N; n++) hinge += fmax(0.0, 1.0 + fake.D[n]), dD[n] = fake.D[n] > -1.0f ? 1.0f / N : 0.0f;
    disc_bwd(d, &fake, dD, N, T, d->disc_grad, NULL);

    /* the student: -mean D(fake) back through the heads and the frozen backbone */
    for (int n = 0; n < N; n++) gen -= fake.D[n], dD[n] = -d->lambda_mca / N;
    float *dx = vd_model_scratch(pool, xn), *dxr = vd_model_scratch(pool, zn);
    disc_bwd(d, &fake, dD, N, T, NULL, dx);
    disc_release(d, &fake);
    be->concat_channels_backward(be, dxr, NULL, dx, lc, lc + 1, B, S);
    size_t clip = (size_t)T * lc * S;
    for (int n = 0; n < N; n++) /* x' = a' (a z_t - b v) + b' eps: dx'/dv = -a' b */
        be->axpby(be, dpred + n * clip, -a2[n] * b[n], dxr + n * clip, 1.0f, clip);
    vd_model_scratch_done(pool, dx), vd_model_scratch_done(pool, dxr);
    vd_model_scratch_done(pool, zt), vd_model_scratch_done(pool, cond);
    vd_model_scratch_done(pool, x0), vd_model_scratch_done(pool, t2);
    vd_model_scratch_done(pool, x_real), vd_model_scratch_done(pool, x_fake);
    *disc = (float)(hinge / N);
    return (float)(gen / N);
}

/* ---- the step ---- */

/* The frozen teacher's encoding of the empty prompt for N clips, in backend memory: made once
 * (again for a larger N), since it never changes. */
static const float *empty_ctx(vd_distill *d, int N)
{
    if (d->empty_n < N) {
        vd_backend *be = d->be;
        int L = d->teacher.cfg.text.max_tokens;
        int32_t *host = vd_malloc((size_t)N * L * sizeof *host);
        vd_tokenize(&d->teacher.cfg.text, "", host, NULL, 0);
        for (int n = 1; n < N; n++) memcpy(host + (size_t)n * L, host, (size_t)L * sizeof *host);
        int32_t *ids = be->alloc(be, (size_t)N * L * sizeof *host);
        be->upload(be, ids, host, (size_t)N * L * sizeof *host);
        free(host);
        if (d->empty_ctx) be->release(be, d->empty_ctx);
        d->empty_ctx = be->alloc(be, (size_t)N * L * d->teacher.cfg.text.dim * sizeof(float));
        vd_text_forward(&d->teacher, ids, N, d->empty_ctx);
        be->release(be, ids);
        d->empty_n = N;
    }
    return d->empty_ctx;
}

/* The prediction of model m on the input, into out: the inference forward, which keeps nothing
 * for a backward. */
static void predict(vd_model *m, const int32_t *ids, const float *x_in, const float *t, int N, int T, int h, int w,
                    float *out)
{
    int L = m->cfg.text.max_tokens;
    float *ctx = vd_model_scratch(m, (size_t)N * L * m->cfg.text.dim);
    vd_text_forward(m, ids, N, ctx);
    vd_unet_forward(m, x_in, t, ctx, L, N, T, h, w, out);
    vd_model_scratch_done(m, ctx);
}

/* The teacher's guided prediction, as the sampler forms it, into target (n floats), from its
 * conditional prediction v_c: v = v_u + g (v_c - v_u) + a (v_c - v_guide). */
static void guided_target(vd_distill *d, const int32_t *ids, const float *x_in, const float *t, int N, int T, int h,
                          int w, const float *v_c, float *target, size_t n)
{
    vd_backend *be = d->be;
    vd_unet_forward(&d->teacher, x_in, t, empty_ctx(d, N), d->teacher.cfg.text.max_tokens, N, T, h, w, target);
    be->axpby(be, target, d->guidance, v_c, 1.0f - d->guidance, n);
    if (d->has_guide && d->guide_scale > 0.0f) {
        float *v_guide = vd_model_scratch(&d->teacher, n);
        predict(&d->guide, ids, x_in, t, N, T, h, w, v_guide);
        be->axpby(be, v_guide, 1.0f, v_c, -1.0f, n); /* v_c - v_guide */
        be->axpby(be, target, d->guide_scale, v_guide, 1.0f, n);
        vd_model_scratch_done(&d->teacher, v_guide);
    }
}

float vd_distill_loss_and_grads(vd_distill *d, vd_model *student, float *grads, const int32_t *ids, const float *x_in,
                                const float *t, const float *t_host, const double *abar, const float *v_target,
                                const float *weight, int N, int T, int h, int w, const vd_distill_renoise *renoise,
                                vd_distill_terms *terms)
{
    vd_backend *be = d->be;
    if (N > VD_DISTILL_MAX_CLIPS) {
        VD_LOG(VD_LOG_ERROR, "distillation: %d clips in a micro-batch, at most %d", N, VD_DISTILL_MAX_CLIPS);
        abort();
    }
    *terms = (vd_distill_terms){0};
    vd_denoiser_pass *sp = vd_denoiser_forward(student, ids, x_in, t, N, T, h, w, 0);
    int ns = vd_denoiser_pass_stages(sp);
    size_t n;
    const float *pred = vd_denoiser_pass_output(sp, ns - 1, &n);
    float *dpred = vd_model_scratch(student, n);

    float **extra = vd_calloc((size_t)ns, sizeof *extra);
    int want_icd = d->lambda_icd > 0 && d->npairs > 0, want_mca = d->lambda_mca > 0, guided = d->guidance > 1.0f;
    float *guided_v = guided ? vd_model_scratch(student, n) : NULL;
    if (!guided) be->mse_loss(be, &terms->task, dpred, pred, v_target, weight, n, 1.0f);
    if (want_icd || want_mca || guided) {
        vd_denoiser_pass *tp = vd_denoiser_forward(&d->teacher, ids, x_in, t, N, T, h, w, 0);
        if (guided) {
            guided_target(d, ids, x_in, t, N, T, h, w, vd_denoiser_pass_output(tp, vd_denoiser_pass_stages(tp) - 1, NULL),
                          guided_v, n);
            be->mse_loss(be, &terms->task, dpred, pred, guided_v, weight, n, 1.0f);
        }
        for (int k = 0; want_icd && k < d->npairs; k++) {
            size_t fn;
            const float *fs = vd_denoiser_pass_output(sp, d->pairs[k].student, &fn);
            const float *ft = vd_denoiser_pass_output(tp, d->pairs[k].teacher, NULL);
            float part = 0;
            extra[d->pairs[k].student] = vd_model_scratch(student, fn);
            be->mse_loss(be, &part, extra[d->pairs[k].student], fs, ft, NULL, fn, d->lambda_icd / (float)d->npairs);
            terms->icd += part / (float)d->npairs;
        }
        if (want_mca) {
            const float *pred_t =
                guided ? guided_v : vd_denoiser_pass_output(tp, vd_denoiser_pass_stages(tp) - 1, NULL);
            terms->mca = mca(d, ids, x_in, pred, pred_t, t_host, abar, N, T, h, w, renoise, dpred, &terms->disc);
        }
        vd_denoiser_pass_free(tp);
    }
    vd_denoiser_backward(sp, grads, dpred, extra, NULL);
    for (int i = 0; i < ns; i++)
        if (extra[i]) vd_model_scratch_done(student, extra[i]);
    free(extra);
    if (guided_v) vd_model_scratch_done(student, guided_v);
    vd_model_scratch_done(student, dpred);
    vd_denoiser_pass_free(sp);
    return terms->task + d->lambda_icd * terms->icd + d->lambda_mca * terms->mca;
}

void vd_distill_disc_step(vd_distill *d, float grad_scale)
{
    if (d->lambda_mca <= 0) return;
    d->disc_step++;
    d->be->adamw(d->be, d->disc, d->disc_grad, d->disc_m, d->disc_v, d->disc_total, d->disc_lr, DISC_BETA1, DISC_BETA2,
                 DISC_EPS, 0.0f, d->disc_step, grad_scale);
    d->be->zero(d->be, d->disc_grad, d->disc_total * sizeof(float));
}

size_t vd_distill_disc_size(const vd_distill *d) { return d->disc_total; }

float *vd_distill_disc_grads(vd_distill *d) { return d->disc_grad; }

void vd_distill_disc_get(const vd_distill *d, float *host, float *grads_host)
{
    size_t bytes = d->disc_total * sizeof(float);
    if (host) d->be->download(d->be, host, d->disc, bytes);
    if (grads_host) d->be->download(d->be, grads_host, d->disc_grad, bytes);
}

void vd_distill_disc_set(vd_distill *d, const float *host)
{
    d->be->upload(d->be, d->disc, host, d->disc_total * sizeof(float));
}

/* ---- the discriminator's state on disk ---- */

static const char *const STATE_NAMES[] = {"disc.heads", "disc.adam_m", "disc.adam_v"};

int vd_distill_save(const vd_distill *d, const char *path, char *err, size_t errlen)
{
    float *bufs[] = {d->disc, d->disc_m, d->disc_v};
    float *host = vd_malloc(d->disc_total * sizeof(float));
    int64_t shape[1] = {(int64_t)d->disc_total};
    char step[32];
    snprintf(step, sizeof step, "%d", d->disc_step);
    vd_st_writer *w = vd_st_writer_new();
    vd_st_writer_meta(w, "vdmini.disc_step", step);
    for (int i = 0; i < 3; i++) {
        d->be->download(d->be, host, bufs[i], d->disc_total * sizeof(float));
        vd_st_writer_add_f32(w, STATE_NAMES[i], VD_ST_F32, host, 1, shape);
    }
    free(host);
    int rc = vd_st_writer_save(w, path, err, errlen);
    vd_st_writer_free(w);
    return rc;
}

int vd_distill_load(vd_distill *d, const char *path, char *err, size_t errlen)
{
    vd_st_file f;
    char inner[256];
    if (vd_st_read(path, &f, inner, sizeof inner)) return vd_fail(err, errlen, "%s", inner);
    float *bufs[] = {d->disc, d->disc_m, d->disc_v};
    float *host = vd_malloc(d->disc_total * sizeof(float));
    const char *step = vd_st_meta(&f, "vdmini.disc_step");
    int rc = step ? 0 : vd_fail(err, errlen, "%s: no vdmini.disc_step", path);
    for (int i = 0; rc == 0 && i < 3; i++) {
        const vd_st_tensor *t = vd_st_find(&f, STATE_NAMES[i]);
        if (!t || (size_t)vd_st_numel(t) != d->disc_total || vd_st_to_f32(t, host))
            rc = vd_fail(err, errlen, "%s: %s missing or not %zu values (another teacher?)", path, STATE_NAMES[i],
                         d->disc_total);
        else
            d->be->upload(d->be, bufs[i], host, d->disc_total * sizeof(float));
    }
    if (rc == 0) d->disc_step = atoi(step);
    free(host);
    vd_st_free(&f);
    return rc;
}
