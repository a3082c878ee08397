/* model.c: parameter table, weights I/O and forward passes of the autoencoder, text encoder and
 * 3D UNet (docs/architecture.md is the contract; tools/reference/ implements the same in
 * PyTorch). */
#include "model.h"
#include "common.h"
#include "rng.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------
 * Parameter table
 * ------------------------------------------------------------------------------------------ */

static uint32_t hash_name(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s) h = (h ^ (uint8_t)*s++) * 16777619u;
    return h;
}

static void index_rebuild(vd_model *m)
{
    free(m->index);
    m->index_size = 64;
    while (m->index_size < 2 * m->nparams) m->index_size *= 2;
    m->index = vd_malloc((size_t)m->index_size * sizeof(int));
    for (int i = 0; i < m->index_size; i++) m->index[i] = -1;
    for (int p = 0; p < m->nparams; p++) {
        uint32_t slot = hash_name(m->params[p].name) & (uint32_t)(m->index_size - 1);
        while (m->index[slot] >= 0) slot = (slot + 1) & (uint32_t)(m->index_size - 1);
        m->index[slot] = p;
    }
}

const vd_param *vd_model_param(const vd_model *m, const char *name)
{
    if (!m->index) return NULL;
    uint32_t slot = hash_name(name) & (uint32_t)(m->index_size - 1);
    while (m->index[slot] >= 0) {
        const vd_param *p = &m->params[m->index[slot]];
        if (strcmp(p->name, name) == 0) return p;
        slot = (slot + 1) & (uint32_t)(m->index_size - 1);
    }
    return NULL;
}

float *vd_backend_random_normal(vd_backend *be, size_t n, uint64_t seed, float scale)
{
    float *dev = be->alloc(be, n * sizeof(float));
    be->zero(be, dev, n * sizeof(float));
    be->add_random_normal(be, dev, scale, seed, n);
    return dev;
}

size_t vd_model_count_params(const vd_model *m, const char *prefix)
{
    size_t n = 0, len = strlen(prefix);
    for (int i = 0; i < m->nparams; i++)
        if (strncmp(m->params[i].name, prefix, len) == 0) n += m->params[i].numel;
    return n;
}

/* out = prefix + suffix; names are built from the config and always fit. */
static void join_name(char out[160], const char *prefix, const char *suffix)
{
    size_t a = strlen(prefix), b = strlen(suffix);
    if (a + b >= 160) {
        VD_LOG(VD_LOG_ERROR, "parameter name %s%s too long", prefix, suffix);
        abort();
    }
    memcpy(out, prefix, a);
    memcpy(out + a, suffix, b + 1);
}

static void declare(vd_model *m, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void declare(vd_model *m, int ndim, const int64_t *shape, const char *fmt, ...)
{
    if (m->nparams == m->params_cap) {
        m->params_cap = m->params_cap ? 2 * m->params_cap : 256;
        m->params = vd_realloc(m->params, (size_t)m->params_cap * sizeof *m->params);
    }
    vd_param *p = &m->params[m->nparams++];
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    p->name = strdup(name);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->numel *= (size_t)shape[i];
    }
    p->offset = m->total;
    m->total += p->numel;
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define DECLARE(m, name, ...) declare((m), NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), "%s", (name))

static void declare_conv(vd_model *m, const char *p, int ci, int co, int k)
{
    char n[160];
    join_name(n, p, ".weight");
    DECLARE(m, n, co, ci, k, k);
    join_name(n, p, ".bias");
    DECLARE(m, n, co);
}

static void declare_vec_pair(vd_model *m, const char *p, int c) /* norms: .weight, .bias */
{
    char n[160];
    join_name(n, p, ".weight");
    DECLARE(m, n, c);
    join_name(n, p, ".bias");
    DECLARE(m, n, c);
}

static void declare_linear(vd_model *m, const char *p, int in, int out, int bias)
{
    char n[160];
    join_name(n, p, ".weight");
    DECLARE(m, n, out, in);
    if (bias) {
        join_name(n, p, ".bias");
        DECLARE(m, n, out);
    }
}

static void declare_attention(vd_model *m, const char *p, int qdim, int kvdim)
{
    char n[160];
    join_name(n, p, ".to_q"), declare_linear(m, n, qdim, qdim, 0);
    join_name(n, p, ".to_k"), declare_linear(m, n, kvdim, qdim, 0);
    join_name(n, p, ".to_v"), declare_linear(m, n, kvdim, qdim, 0);
    join_name(n, p, ".to_out"), declare_linear(m, n, qdim, qdim, 1);
}

static void declare_ff(vd_model *m, const char *p, int c)
{
    char n[160];
    join_name(n, p, ".fc1"), declare_linear(m, n, c, 4 * c, 1);
    join_name(n, p, ".fc2"), declare_linear(m, n, 4 * c, c, 1);
}

static void declare_res2d(vd_model *m, const char *p, int ci, int co)
{
    char n[160];
    join_name(n, p, ".norm1"), declare_vec_pair(m, n, ci);
    join_name(n, p, ".conv1"), declare_conv(m, n, ci, co, 3);
    join_name(n, p, ".norm2"), declare_vec_pair(m, n, co);
    join_name(n, p, ".conv2"), declare_conv(m, n, co, co, 3);
    if (ci != co) join_name(n, p, ".skip"), declare_conv(m, n, ci, co, 1);
}

/* temporal: the block keeps its temporal conv (norm3, tconv) */
static void declare_res3d(vd_model *m, const char *p, int ci, int cm, int co, int temb, int temporal)
{
    char n[160];
    join_name(n, p, ".norm1"), declare_vec_pair(m, n, ci);
    join_name(n, p, ".conv1"), declare_conv(m, n, ci, cm, 3);
    join_name(n, p, ".time"), declare_linear(m, n, temb, cm, 1);
    join_name(n, p, ".norm2"), declare_vec_pair(m, n, cm);
    join_name(n, p, ".conv2"), declare_conv(m, n, cm, co, 3);
    if (ci != co) join_name(n, p, ".skip"), declare_conv(m, n, ci, co, 1);
    if (!temporal) return;
    join_name(n, p, ".norm3"), declare_vec_pair(m, n, co);
    join_name(n, p, ".tconv.weight"), DECLARE(m, n, co, co, 3);
    join_name(n, p, ".tconv.bias"), DECLARE(m, n, co);
}

/* temporal: the block keeps its temporal self-attention (norm_t, attn_t) */
static void declare_attn3d(vd_model *m, const char *p, int c, int ctx, int temporal)
{
    char n[160];
    join_name(n, p, ".norm"), declare_vec_pair(m, n, c);
    join_name(n, p, ".proj_in"), declare_linear(m, n, c, c, 1);
    join_name(n, p, ".norm1"), declare_vec_pair(m, n, c);
    join_name(n, p, ".attn1"), declare_attention(m, n, c, c);
    join_name(n, p, ".norm2"), declare_vec_pair(m, n, c);
    join_name(n, p, ".attn2"), declare_attention(m, n, c, ctx);
    join_name(n, p, ".norm3"), declare_vec_pair(m, n, c);
    join_name(n, p, ".ff"), declare_ff(m, n, c);
    if (temporal) {
        join_name(n, p, ".norm_t"), declare_vec_pair(m, n, c);
        join_name(n, p, ".attn_t"), declare_attention(m, n, c, c);
    }
    join_name(n, p, ".proj_out"), declare_linear(m, n, c, c, 1);
}

/* ------------------------------------------------------------------------------------------
 * The UNet's stage plan: one list, derived from the config, that both the parameter
 * declaration, the forward pass and the training pass (denoiser_train.c) walk, so skip
 * bookkeeping lives in one place.
 * ------------------------------------------------------------------------------------------ */

#define MAX_SKIPS 64

int vd_unet_plan(const vd_unet_config *u, vd_unet_stage *st, char *err, size_t errlen)
{
    int n = 0, K = u->levels, R = u->blocks_per_level, h = u->channels[0];
    int skip_ch[VD_MAX_LEVELS][MAX_SKIPS], skip_n[VD_MAX_LEVELS] = {0};
    st[n++] = (vd_unet_stage){.kind = VD_STAGE_CONV_IN, .level = 0, .ci = u->in_channels, .co = h, .push = 0};
    skip_ch[0][skip_n[0]++] = h;
    for (int l = 0; l < K; l++) {
        for (int b = 0; b < R; b++) {
            vd_unet_stage s = {.kind = VD_STAGE_DOWN_BLOCK, .level = l, .ci = h, .co = u->channels[l],
                               .cm = vd_unet_inner_channels(u, l), .push = l,
                               .attn = u->attention[l], .temporal = !vd_unet_temporal_removed(u, l)};
            snprintf(s.name, sizeof s.name, "down.%hhu.%hhu", (unsigned char)l, (unsigned char)b);
            if (vd_unet_block_removed(u, s.name)) continue;
            s.attn = s.attn && !vd_unet_attention_removed(u, s.name);
            if (skip_n[l] >= MAX_SKIPS || n >= VD_UNET_MAX_STAGES - 8) return vd_fail(err, errlen, "UNet config too large");
            st[n++] = s;
            h = s.co;
            skip_ch[l][skip_n[l]++] = h;
        }
        if (l < K - 1) {
            st[n++] = (vd_unet_stage){.kind = VD_STAGE_DOWNSAMPLE, .level = l, .ci = h, .co = h, .push = l + 1};
            skip_ch[l + 1][skip_n[l + 1]++] = h;
        }
    }
    if (!vd_unet_block_removed(u, "mid")) {
        st[n] = (vd_unet_stage){.kind = VD_STAGE_MID, .level = K - 1, .ci = h, .co = h,
                                .cm = vd_unet_inner_channels(u, K - 1), .push = -1,
                                .attn = u->attention[K - 1] && !vd_unet_attention_removed(u, "mid"),
                                .temporal = !vd_unet_temporal_removed(u, K - 1)};
        snprintf(st[n].name, sizeof st[n].name, "mid");
        n++;
    }
    for (int l = K - 1; l >= 0; l--) {
        for (int b = 0; b <= R; b++) {
            vd_unet_stage s = {.kind = VD_STAGE_UP_BLOCK, .level = l, .co = u->channels[l],
                               .cm = vd_unet_inner_channels(u, l), .push = -1, .attn = u->attention[l],
                               .temporal = !vd_unet_temporal_removed(u, l)};
            snprintf(s.name, sizeof s.name, "up.%hhu.%hhu", (unsigned char)l, (unsigned char)b);
            if (vd_unet_block_removed(u, s.name)) continue;
            s.attn = s.attn && !vd_unet_attention_removed(u, s.name);
            if (n >= VD_UNET_MAX_STAGES - 8) return vd_fail(err, errlen, "UNet config too large");
            s.skip_ch = skip_n[l] ? skip_ch[l][--skip_n[l]] : 0;
            s.ci = h + s.skip_ch;
            st[n++] = s;
            h = s.co;
        }
        if (l > 0) st[n++] = (vd_unet_stage){.kind = VD_STAGE_UPSAMPLE, .level = l, .ci = h, .co = h, .push = -1};
    }
    st[n++] = (vd_unet_stage){.kind = VD_STAGE_OUT, .level = 0, .ci = h, .co = u->out_channels, .push = -1};
    for (int i = 0; i < n; i++) {
        const vd_unet_stage *s = &st[i];
        if (s->kind == VD_STAGE_OUT || s->kind == VD_STAGE_CONV_IN) {
            if (s->kind == VD_STAGE_OUT && s->ci % u->groups)
                return vd_fail(err, errlen, "UNet output norm: %d channels not divisible by groups %d", s->ci, u->groups);
            continue;
        }
        if (s->ci % u->groups || s->co % u->groups)
            return vd_fail(err, errlen, "UNet %s: channels %d -> %d not divisible by groups %d",
                        s->name[0] ? s->name : "resample", s->ci, s->co, u->groups);
    }
    return n;
}

int vd_unet_block_names(const vd_unet_config *u, char names[][16], int max)
{
    vd_unet_stage st[VD_UNET_MAX_STAGES];
    char err[128];
    int n = vd_unet_plan(u, st, err, sizeof err), count = 0;
    for (int i = 0; i < n && count < max; i++)
        if (st[i].name[0]) snprintf(names[count++], 16, "%s", st[i].name);
    return count;
}

int vd_unet_removable_units(const vd_unet_config *u, char names[][16], int max)
{
    vd_unet_stage st[VD_UNET_MAX_STAGES];
    char err[128];
    int n = vd_unet_plan(u, st, err, sizeof err), count = 0, has_temporal[VD_MAX_LEVELS] = {0};
    for (int i = 0; i < n; i++) {
        if (!st[i].name[0]) continue;
        if (st[i].temporal) has_temporal[st[i].level] = 1;
        if (count < max) snprintf(names[count++], 16, "%s", st[i].name);
    }
    for (int l = 0; l < u->levels && count < max; l++)
        if (has_temporal[l]) snprintf(names[count++], 16, "temporal.%d", l);
    for (int i = 0; i < n && count < max; i++)
        if (st[i].name[0] && st[i].attn) snprintf(names[count++], 16, "%.10s.attn", st[i].name);
    return count;
}

static int declare_unet(vd_model *m, char *err, size_t errlen)
{
    const vd_unet_config *u = &m->cfg.unet;
    vd_unet_stage st[VD_UNET_MAX_STAGES];
    int n = vd_unet_plan(u, st, err, errlen);
    if (n < 0) return -1;
    int c0 = u->channels[0], temb = 4 * c0;
    char p[96];
    declare_linear(m, "unet.time.fc1", c0, temb, 1);
    declare_linear(m, "unet.time.fc2", temb, temb, 1);
    if (u->pooled_text) declare_linear(m, "unet.text_pool", u->context_dim, temb, 1);
    for (int i = 0; i < n; i++) {
        const vd_unet_stage *s = &st[i];
        switch (s->kind) {
        case VD_STAGE_CONV_IN: declare_conv(m, "unet.conv_in", s->ci, s->co, 3); break;
        case VD_STAGE_DOWN_BLOCK:
        case VD_STAGE_UP_BLOCK:
            snprintf(p, sizeof p, "unet.%s.res", s->name), declare_res3d(m, p, s->ci, s->cm, s->co, temb, s->temporal);
            if (s->attn) {
                snprintf(p, sizeof p, "unet.%s.attn", s->name);
                declare_attn3d(m, p, s->co, u->context_dim, s->temporal);
            }
            break;
        case VD_STAGE_DOWNSAMPLE: snprintf(p, sizeof p, "unet.down.%d.down", s->level), declare_conv(m, p, s->ci, s->co, 3); break;
        case VD_STAGE_UPSAMPLE: snprintf(p, sizeof p, "unet.up.%d.up", s->level), declare_conv(m, p, s->ci, s->co, 3); break;
        case VD_STAGE_MID:
            declare_res3d(m, "unet.mid.res1", s->ci, s->cm, s->co, temb, s->temporal);
            if (s->attn) declare_attn3d(m, "unet.mid.attn", s->co, u->context_dim, s->temporal);
            declare_res3d(m, "unet.mid.res2", s->co, s->cm, s->co, temb, s->temporal);
            break;
        case VD_STAGE_OUT:
            declare_vec_pair(m, "unet.norm_out", s->ci);
            declare_conv(m, "unet.conv_out", s->ci, s->co, 3);
            break;
        }
    }
    return 0;
}

static void declare_ae(vd_model *m)
{
    const vd_ae_config *a = &m->cfg.ae;
    int K = a->levels, last = a->channels[K - 1];
    char p[96];
    declare_conv(m, "ae.enc.conv_in", 3, a->channels[0], 3);
    int c = a->channels[0];
    for (int l = 0; l < K; l++) {
        snprintf(p, sizeof p, "ae.enc.down.%d.res", l), declare_res2d(m, p, c, a->channels[l]);
        c = a->channels[l];
        if (l < K - 1) snprintf(p, sizeof p, "ae.enc.down.%d.down", l), declare_conv(m, p, c, c, 3);
    }
    declare_res2d(m, "ae.enc.mid", last, last);
    declare_vec_pair(m, "ae.enc.norm_out", last);
    declare_conv(m, "ae.enc.conv_out", last, a->latent_channels, 3);

    declare_conv(m, "ae.dec.conv_in", a->latent_channels, last, 3);
    declare_res2d(m, "ae.dec.mid", last, last);
    c = last;
    for (int l = K - 1; l >= 0; l--) {
        snprintf(p, sizeof p, "ae.dec.up.%d.res", l), declare_res2d(m, p, c, a->channels[l]);
        c = a->channels[l];
        if (l > 0) snprintf(p, sizeof p, "ae.dec.up.%d.up", l), declare_conv(m, p, c, c, 3);
    }
    declare_vec_pair(m, "ae.dec.norm_out", c);
    declare_conv(m, "ae.dec.conv_out", c, 3, 3);
}

static void declare_text(vd_model *m)
{
    const vd_text_config *t = &m->cfg.text;
    char p[96];
    DECLARE(m, "text.token_emb", t->vocab_size, t->dim);
    DECLARE(m, "text.pos_emb", t->max_tokens, t->dim);
    for (int i = 0; i < t->layers; i++) {
        snprintf(p, sizeof p, "text.layers.%d.norm1", i), declare_vec_pair(m, p, t->dim);
        snprintf(p, sizeof p, "text.layers.%d.attn", i), declare_attention(m, p, t->dim, t->dim);
        snprintf(p, sizeof p, "text.layers.%d.norm2", i), declare_vec_pair(m, p, t->dim);
        snprintf(p, sizeof p, "text.layers.%d.ff", i), declare_ff(m, p, t->dim);
    }
    declare_vec_pair(m, "text.norm_out", t->dim);
}

int vd_model_build(vd_model *m, const vd_model_config *cfg, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    vd_config_copy(&m->cfg, cfg);
    if (cfg->ae.present) {
        for (int l = 0; l < cfg->ae.levels; l++)
            if (cfg->ae.channels[l] % cfg->ae.groups) return vd_fail(err, errlen, "autoencoder channels not divisible by groups");
        declare_ae(m);
    }
    if (cfg->text.present) declare_text(m);
    if (cfg->unet.present) {
        if (cfg->text.present && cfg->unet.context_dim != cfg->text.dim)
            return vd_fail(err, errlen, "unet.context_dim %d differs from text.dim %d", cfg->unet.context_dim, cfg->text.dim);
        if (declare_unet(m, err, errlen)) return -1;
    }
    index_rebuild(m);
    return 0;
}

void vd_model_init_random(vd_model *m, uint64_t seed)
{
    if (!m->host) m->host = vd_malloc(m->total * sizeof(float));
#pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < m->nparams; i++) {
        vd_param *p = &m->params[i];
        float *w = m->host + p->offset;
        size_t len = strlen(p->name);
        int is_bias = len > 5 && strcmp(p->name + len - 5, ".bias") == 0;
        int is_norm = strstr(p->name, "norm") != NULL;
        if (is_bias || is_norm) {
            /* small random offsets rather than exact 0 and 1, so that a test comparing two
             * implementations notices a bias or a gamma/beta put in the wrong place */
            vd_rng_normal(seed ^ hash_name(p->name), 0, w, p->numel);
            float base = is_norm && !is_bias ? 1.0f : 0.0f;
            for (size_t j = 0; j < p->numel; j++) w[j] = base + 0.02f * w[j];
        } else {
            /* fan_in: all dims but the first; embeddings use a small fixed scale */
            size_t fan_in = p->ndim > 1 ? p->numel / (size_t)p->shape[0] : 1;
            int is_emb = strstr(p->name, "_emb") != NULL;
            float std = is_emb ? 0.02f : 1.0f / sqrtf((float)fan_in);
            vd_rng_normal(seed ^ hash_name(p->name), 0, w, p->numel);
            for (size_t j = 0; j < p->numel; j++) w[j] *= std;
        }
    }
}

int vd_model_load_file(vd_model *m, const vd_st_file *f, char *err, size_t errlen)
{
    const char *json = vd_st_meta(f, "vdmini.config");
    if (!json) return vd_fail(err, errlen, "no vdmini.config in the file's __metadata__: not a vdmini weights file");
    vd_model_config cfg;
    if (vd_config_parse(json, &cfg, err, errlen)) return -1;
    int rc = vd_model_build(m, &cfg, err, errlen);
    vd_config_free(&cfg);
    if (rc) {
        vd_model_free(m);
        return -1;
    }
    m->host = vd_malloc(m->total * sizeof(float));
    for (int i = 0; i < m->nparams && !rc; i++) {
        const vd_param *p = &m->params[i];
        const vd_st_tensor *t = vd_st_find(f, p->name);
        if (!t) { rc = vd_fail(err, errlen, "tensor %s is missing", p->name); break; }
        int same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        if (!same) { rc = vd_fail(err, errlen, "tensor %s has the wrong shape for this config", p->name); break; }
        if (vd_st_to_f32(t, m->host + p->offset)) rc = vd_fail(err, errlen, "tensor %s: not a floating-point dtype", p->name);
    }
    if (!rc && f->count != m->nparams) {
        for (int i = 0; i < f->count; i++)
            if (!vd_model_param(m, f->tensors[i].name)) {
                rc = vd_fail(err, errlen, "tensor %s is not part of the model its config describes", f->tensors[i].name);
                break;
            }
    }
    if (rc) vd_model_free(m);
    return rc;
}

int vd_model_load(vd_model *m, const char *path, char *err, size_t errlen)
{
    vd_st_file f;
    char inner[256];
    if (vd_st_read(path, &f, err, errlen)) return -1;
    int rc = vd_model_load_file(m, &f, inner, sizeof inner);
    if (rc) vd_fail(err, errlen, "%s: %s", path, inner);
    vd_st_free(&f);
    return rc;
}

int vd_model_read_config(const char *path, vd_model_config *cfg, char *err, size_t errlen)
{
    vd_st_file f;
    if (vd_st_read(path, &f, err, errlen)) return -1;
    const char *json = vd_st_meta(&f, "vdmini.config");
    int rc = json ? vd_config_parse(json, cfg, err, errlen) : vd_fail(err, errlen, "%s: no vdmini.config metadata", path);
    vd_st_free(&f);
    return rc;
}

int vd_model_save(const vd_model *m, const char *path, vd_st_dtype dtype, char *err, size_t errlen)
{
    return vd_model_save_parts(m, path, dtype, 0, err, errlen);
}

int vd_model_save_parts(const vd_model *m, const char *path, vd_st_dtype dtype, size_t max_file_bytes, char *err,
                        size_t errlen)
{
    vd_st_writer *w = vd_st_writer_new();
    char *json = vd_config_to_json(&m->cfg);
    vd_st_writer_meta(w, "vdmini.config", json);
    free(json);
    for (int i = 0; i < m->nparams; i++) {
        const vd_param *p = &m->params[i];
        vd_st_writer_add_f32(w, p->name, dtype, m->host + p->offset, p->ndim, p->shape);
    }
    int rc = max_file_bytes ? vd_st_writer_save_parts(w, path, max_file_bytes, err, errlen)
                            : vd_st_writer_save(w, path, err, errlen);
    vd_st_writer_free(w);
    return rc;
}

void vd_model_attach(vd_model *m, vd_backend *be)
{
    m->be = be;
    vd_model_record_forwards(m, 1);
    m->weights = be->alloc(be, m->total * sizeof(float));
    if (m->host) be->upload(be, m->weights, m->host, m->total * sizeof(float));
    be->declare_constant(be, m->weights, m->total * sizeof(float));
}

void vd_model_detach(vd_model *m)
{
    if (m->be) {
        vd_model_drop_recordings(m);
        if (m->frame_index) m->be->release(m->be, m->frame_index);
        vd_pool_clear(&m->pool, m->be);
        if (m->weights) m->be->release(m->be, m->weights);
    }
    m->weights = NULL;
    m->frame_index = NULL, m->frame_index_len = 0;
    m->be = NULL;
}

void vd_model_free(vd_model *m)
{
    vd_model_detach(m);
    for (int i = 0; i < m->nparams; i++) free(m->params[i].name);
    free(m->params);
    free(m->index);
    free(m->host);
    vd_config_free(&m->cfg);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------------------------------
 * Forward helpers
 * ------------------------------------------------------------------------------------------ */

#define tmp vd_model_scratch
#define done vd_model_scratch_done

float *vd_model_scratch(vd_model *m, size_t n) { return vd_pool_take(&m->pool, m->be, n); }

void vd_model_scratch_done(vd_model *m, const float *p) { vd_pool_give(&m->pool, p); }

/* Weight pointer in backend memory by name; a missing name is a programming error. */
static const float *W(vd_model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const float *W(vd_model *m, const char *fmt, ...)
{
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const vd_param *p = vd_model_param(m, name);
    if (!p) {
        VD_LOG(VD_LOG_ERROR, "parameter %s missing from the model", name);
        abort();
    }
    return m->weights + p->offset;
}

static const float *W_opt(vd_model *m, const char *prefix, const char *suffix)
{
    char name[160];
    snprintf(name, sizeof name, "%s%s", prefix, suffix);
    const vd_param *p = vd_model_param(m, name);
    return p ? m->weights + p->offset : NULL;
}

/* y (B, co, S') = conv(x (B, ci, H, W)) with prefix's weight and bias. */
static void conv(vd_model *m, const char *p, float *y, const float *x, int B, int ci, int H, int Wd,
                 int co, int k, int stride)
{
    m->be->conv2d(m->be, y, x, W(m, "%s.weight", p), W(m, "%s.bias", p), B, ci, H, Wd, co, k, stride);
}

/* y = SiLU(GroupNorm(x)) over images (B, C, S). */
static void norm_silu(vd_model *m, const char *p, float *y, const float *x, int B, int C, int S, int G)
{
    m->be->group_norm(m->be, y, x, W(m, "%s.weight", p), W(m, "%s.bias", p), B, C, S, G, VD_NORM_EPS);
    m->be->silu(m->be, y, y, (size_t)B * C * S);
}

static void linear(vd_model *m, const char *p, float *y, const float *x, int M, int in, int out)
{
    m->be->linear(m->be, y, x, W(m, "%s.weight", p), W_opt(m, p, ".bias"), M, in, out);
}

/* out (B, C, H, W) = ResBlock2D(x (B, ci, H, W)); returns a new pool buffer. */
static float *res2d(vd_model *m, const char *p, const float *x, int B, int ci, int co, int H, int Wd, int G)
{
    vd_backend *be = m->be;
    int S = H * Wd;
    char n[160];
    float *a = tmp(m, (size_t)B * ci * S), *h = tmp(m, (size_t)B * co * S), *out = tmp(m, (size_t)B * co * S);
    join_name(n, p, ".norm1"), norm_silu(m, n, a, x, B, ci, S, G);
    join_name(n, p, ".conv1"), conv(m, n, h, a, B, ci, H, Wd, co, 3, 1);
    done(m, a);
    float *b = tmp(m, (size_t)B * co * S);
    join_name(n, p, ".norm2"), norm_silu(m, n, b, h, B, co, S, G);
    join_name(n, p, ".conv2"), conv(m, n, h, b, B, co, H, Wd, co, 3, 1);
    done(m, b);
    if (ci != co) {
        join_name(n, p, ".skip"), conv(m, n, out, x, B, ci, H, Wd, co, 1, 1);
        be->add(be, out, out, h, (size_t)B * co * S);
    } else {
        be->add(be, out, x, h, (size_t)B * co * S);
    }
    done(m, h);
    return out;
}

/* Multi-head attention with prefix's projections: q from xq (B*Lq, qdim), k and v from
 * xkv (B/kv_group * Lk, kvdim); the output projection is written to y (B*Lq, qdim). */
static void attention(vd_model *m, const char *p, float *y, const float *xq, const float *xkv, int B, int Lq,
                      int Lk, int qdim, int kvdim, int heads, int kv_group)
{
    vd_backend *be = m->be;
    char n[160];
    size_t nq = (size_t)B * Lq * qdim, nkv = (size_t)(B / kv_group) * Lk * qdim;
    float *q = tmp(m, nq), *k = tmp(m, nkv), *v = tmp(m, nkv), *o = tmp(m, nq);
    join_name(n, p, ".to_q"), linear(m, n, q, xq, B * Lq, qdim, qdim);
    join_name(n, p, ".to_k"), linear(m, n, k, xkv, (B / kv_group) * Lk, kvdim, qdim);
    join_name(n, p, ".to_v"), linear(m, n, v, xkv, (B / kv_group) * Lk, kvdim, qdim);
    be->attention(be, o, q, k, v, B, Lq, Lk, heads, qdim / heads, kv_group);
    join_name(n, p, ".to_out"), linear(m, n, y, o, B * Lq, qdim, qdim);
    done(m, q), done(m, k), done(m, v), done(m, o);
}

/* h (M, c) += FF(LayerNorm(h)). */
static void ff_residual(vd_model *m, const char *norm, const char *ff, float *h, int M, int c)
{
    vd_backend *be = m->be;
    char n[160];
    float *a = tmp(m, (size_t)M * c), *mid = tmp(m, (size_t)M * 4 * c);
    be->layer_norm(be, a, h, W(m, "%s.weight", norm), W(m, "%s.bias", norm), M, c, VD_NORM_EPS);
    snprintf(n, sizeof n, "%s.fc1", ff), linear(m, n, mid, a, M, c, 4 * c);
    be->gelu(be, mid, mid, (size_t)M * 4 * c);
    snprintf(n, sizeof n, "%s.fc2", ff), linear(m, n, a, mid, M, 4 * c, c);
    be->add(be, h, h, a, (size_t)M * c);
    done(m, a), done(m, mid);
}

/* h (B*L, c) += Attention(LayerNorm(src)) with keys from ctx (or self when ctx is NULL). */
static void attn_residual(vd_model *m, const char *norm, const char *attn, float *h, const float *src, int B, int L,
                          int c, int heads, const float *ctx, int Lk, int kvdim, int kv_group)
{
    vd_backend *be = m->be;
    float *a = tmp(m, (size_t)B * L * c), *o = tmp(m, (size_t)B * L * c);
    be->layer_norm(be, a, src, W(m, "%s.weight", norm), W(m, "%s.bias", norm), B * L, c, VD_NORM_EPS);
    if (ctx) attention(m, attn, o, a, ctx, B, L, Lk, c, kvdim, heads, kv_group);
    else attention(m, attn, o, a, a, B, L, L, c, c, heads, 1);
    be->add(be, h, h, o, (size_t)B * L * c);
    done(m, a), done(m, o);
}

/* ------------------------------------------------------------------------------------------
 * Text encoder
 * ------------------------------------------------------------------------------------------ */

void vd_text_forward(vd_model *m, const int32_t *ids, int N, float *out)
{
    const vd_text_config *t = &m->cfg.text;
    vd_backend *be = m->be;
    int L = t->max_tokens, D = t->dim;
    char p1[96], p2[96];
    float *x = tmp(m, (size_t)N * L * D);
    be->embedding(be, x, ids, W(m, "text.token_emb"), N * L, D);
    be->add_broadcast(be, x, W(m, "text.pos_emb"), (size_t)N, (size_t)L * D);
    for (int i = 0; i < t->layers; i++) {
        snprintf(p1, sizeof p1, "text.layers.%d.norm1", i), snprintf(p2, sizeof p2, "text.layers.%d.attn", i);
        attn_residual(m, p1, p2, x, x, N, L, D, t->heads, NULL, 0, 0, 1);
        snprintf(p1, sizeof p1, "text.layers.%d.norm2", i), snprintf(p2, sizeof p2, "text.layers.%d.ff", i);
        ff_residual(m, p1, p2, x, N * L, D);
    }
    be->layer_norm(be, out, x, W(m, "text.norm_out.weight"), W(m, "text.norm_out.bias"), N * L, D, VD_NORM_EPS);
    done(m, x);
}

/* ------------------------------------------------------------------------------------------
 * Autoencoder
 * ------------------------------------------------------------------------------------------ */

void vd_ae_encode(vd_model *m, const float *img, int B, int H, int Wd, float *z)
{
    const vd_ae_config *a = &m->cfg.ae;
    vd_backend *be = m->be;
    int K = a->levels, G = a->groups, c = a->channels[0];
    char p[96];
    float *x = tmp(m, (size_t)B * c * H * Wd);
    conv(m, "ae.enc.conv_in", x, img, B, 3, H, Wd, c, 3, 1);
    for (int l = 0; l < K; l++) {
        snprintf(p, sizeof p, "ae.enc.down.%d.res", l);
        float *y = res2d(m, p, x, B, c, a->channels[l], H, Wd, G);
        done(m, x), x = y, c = a->channels[l];
        if (l < K - 1) {
            float *d = tmp(m, (size_t)B * c * (H / 2) * (Wd / 2));
            snprintf(p, sizeof p, "ae.enc.down.%d.down", l), conv(m, p, d, x, B, c, H, Wd, c, 3, 2);
            done(m, x), x = d, H /= 2, Wd /= 2;
        }
    }
    float *y = res2d(m, "ae.enc.mid", x, B, c, c, H, Wd, G);
    done(m, x);
    norm_silu(m, "ae.enc.norm_out", y, y, B, c, H * Wd, G);
    conv(m, "ae.enc.conv_out", z, y, B, c, H, Wd, a->latent_channels, 3, 1);
    done(m, y);
    if (a->scale_factor != 1.0f) be->axpby(be, z, 0.0f, z, a->scale_factor, (size_t)B * a->latent_channels * H * Wd);
}

void vd_ae_decode(vd_model *m, const float *z, int B, int h, int w, float *img)
{
    const vd_ae_config *a = &m->cfg.ae;
    vd_backend *be = m->be;
    int K = a->levels, G = a->groups, c = a->channels[K - 1], lc = a->latent_channels;
    char p[96];
    float *zs = tmp(m, (size_t)B * lc * h * w);
    be->copy(be, zs, z, (size_t)B * lc * h * w * sizeof(float));
    if (a->scale_factor != 1.0f) be->axpby(be, zs, 0.0f, zs, 1.0f / a->scale_factor, (size_t)B * lc * h * w);
    float *x = tmp(m, (size_t)B * c * h * w);
    conv(m, "ae.dec.conv_in", x, zs, B, lc, h, w, c, 3, 1);
    done(m, zs);
    float *y = res2d(m, "ae.dec.mid", x, B, c, c, h, w, G);
    done(m, x), x = y;
    for (int l = K - 1; l >= 0; l--) {
        snprintf(p, sizeof p, "ae.dec.up.%d.res", l);
        y = res2d(m, p, x, B, c, a->channels[l], h, w, G);
        done(m, x), x = y, c = a->channels[l];
        if (l > 0) {
            float *u = tmp(m, (size_t)B * c * 4 * h * w), *o = tmp(m, (size_t)B * c * 4 * h * w);
            be->upsample2x(be, u, x, B, c, h, w);
            h *= 2, w *= 2;
            snprintf(p, sizeof p, "ae.dec.up.%d.up", l), conv(m, p, o, u, B, c, h, w, c, 3, 1);
            done(m, u), done(m, x), x = o;
        }
    }
    norm_silu(m, "ae.dec.norm_out", x, x, B, c, h * w, G);
    conv(m, "ae.dec.conv_out", img, x, B, c, h, w, 3, 3, 1);
    done(m, x);
}

/* ------------------------------------------------------------------------------------------
 * 3D UNet
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    int N, T, G;
    const float *temb_act; /* SiLU(time embedding) (N, 4c0) */
    int temb_dim;
    const float *ctx; /* (N, L, context_dim) */
    int L;
    const float *frame_index; /* (T) 0..T-1 */
} unet_ctx;

/* ResBlock3D on x (N*T, ci, H, W) -> new buffer (N*T, co, H, W), cm channels wide inside (norm2
 * keeps the group width of co's groups); without its temporal conv unless temporal. */
static float *res3d(vd_model *m, const unet_ctx *u, const char *p, const float *x, int ci, int cm, int co, int H,
                    int Wd, int temporal)
{
    vd_backend *be = m->be;
    int B = u->N * u->T, S = H * Wd, G = u->G;
    size_t nco = (size_t)B * co * S, ncm = (size_t)B * cm * S;
    char n[160];
    float *a = tmp(m, (size_t)B * ci * S), *h = tmp(m, ncm);
    join_name(n, p, ".norm1"), norm_silu(m, n, a, x, B, ci, S, G);
    join_name(n, p, ".conv1"), conv(m, n, h, a, B, ci, H, Wd, cm, 3, 1);
    done(m, a);
    float *tb = tmp(m, (size_t)u->N * cm);
    join_name(n, p, ".time"), linear(m, n, tb, u->temb_act, u->N, u->temb_dim, cm);
    be->add_channel_bias(be, h, tb, u->N, u->T, cm, S);
    done(m, tb);
    float *b = tmp(m, ncm), *out = tmp(m, nco);
    join_name(n, p, ".norm2"), norm_silu(m, n, b, h, B, cm, S, G * cm / co);
    join_name(n, p, ".conv2"), conv(m, n, h, b, B, cm, H, Wd, co, 3, 1);
    if (ci != co) {
        join_name(n, p, ".skip"), conv(m, n, out, x, B, ci, H, Wd, co, 1, 1);
        be->add(be, out, out, h, nco);
    } else {
        be->add(be, out, x, h, nco);
    }
    if (temporal) {
        join_name(n, p, ".norm3"), norm_silu(m, n, b, out, B, co, S, G);
        be->temporal_conv(be, h, b, W(m, "%s.tconv.weight", p), W(m, "%s.tconv.bias", p), u->N, u->T, co, co, S);
        be->add(be, out, out, h, nco);
    }
    done(m, b), done(m, h);
    return out;
}

/* x (N*T, c, H, W) += AttnBlock3D(x), in place; without its temporal self-attention unless
 * temporal. */
static void attn3d(vd_model *m, const unet_ctx *u, const char *p, float *x, int c, int H, int Wd, int head_dim,
                   int context_dim, int temporal)
{
    vd_backend *be = m->be;
    int N = u->N, T = u->T, B = N * T, S = H * Wd, heads = c / head_dim;
    size_t n_all = (size_t)B * S * c;
    char n1[160], n2[160];
    float *g = tmp(m, n_all), *h = tmp(m, n_all);
    join_name(n1, p, ".norm");
    be->group_norm(be, g, x, W(m, "%s.weight", n1), W(m, "%s.bias", n1), B, c, S, u->G, VD_NORM_EPS);
    be->transpose(be, h, g, B, c, S, 1); /* (B, c, S) -> (B, S, c) */
    join_name(n1, p, ".proj_in"), linear(m, n1, g, h, B * S, c, c);
    /* g is now the token stream (B, S, c) */
    join_name(n1, p, ".norm1"), join_name(n2, p, ".attn1");
    attn_residual(m, n1, n2, g, g, B, S, c, heads, NULL, 0, 0, 1);
    join_name(n1, p, ".norm2"), join_name(n2, p, ".attn2");
    attn_residual(m, n1, n2, g, g, B, S, c, heads, u->ctx, u->L, context_dim, T);
    join_name(n1, p, ".norm3"), join_name(n2, p, ".ff");
    ff_residual(m, n1, n2, g, B * S, c);
    if (temporal) {
        /* temporal: (N, T, S, c) -> (N, S, T, c); attention over T with frame positions added */
        be->transpose(be, h, g, N, T, S, c);
        float *fe = tmp(m, (size_t)T * c), *hp = tmp(m, n_all);
        be->timestep_embedding(be, fe, u->frame_index, T, c);
        be->copy(be, hp, h, n_all * sizeof(float));
        be->add_broadcast(be, hp, fe, (size_t)N * S, (size_t)T * c);
        join_name(n1, p, ".norm_t"), join_name(n2, p, ".attn_t");
        attn_residual(m, n1, n2, h, hp, N * S, T, c, heads, NULL, 0, 0, 1);
        done(m, fe), done(m, hp);
        be->transpose(be, g, h, N, S, T, c); /* back to (N, T, S, c) */
    }
    join_name(n1, p, ".proj_out"), linear(m, n1, h, g, B * S, c, c);
    be->transpose(be, g, h, B, S, c, 1); /* (B, S, c) -> (B, c, S) */
    be->add(be, x, x, g, n_all);
    done(m, g), done(m, h);
}

static float *unet_block(vd_model *m, const unet_ctx *u, const vd_unet_stage *s, const float *x, int H, int Wd)
{
    const vd_unet_config *c = &m->cfg.unet;
    char p[96];
    snprintf(p, sizeof p, "unet.%s.res", s->name);
    float *y = res3d(m, u, p, x, s->ci, s->cm, s->co, H, Wd, s->temporal);
    if (s->attn) {
        snprintf(p, sizeof p, "unet.%s.attn", s->name);
        attn3d(m, u, p, y, s->co, H, Wd, c->head_dim, c->context_dim, s->temporal);
    }
    return y;
}

void vd_text_mean(vd_backend *be, float *mean, const float *text, int N, int L, int D)
{
    be->zero(be, mean, (size_t)N * D * sizeof(float));
    be->add_channel_bias_backward(be, mean, text, N, L, D, 1); /* the sum over the L tokens */
    be->axpby(be, mean, 1.0f / (float)L, mean, 0.0f, (size_t)N * D);
}

/* 0, 1, ..., T - 1 in backend memory, kept by the model: uploaded once, so that a forward makes
 * no transfer and can be recorded. A longer one replaces it, and the recordings that read it. */
static const float *frame_positions(vd_model *m, int T)
{
    if (m->frame_index_len >= T) return m->frame_index;
    vd_model_drop_recordings(m);
    if (m->frame_index) m->be->release(m->be, m->frame_index);
    float *host = vd_malloc((size_t)T * sizeof(float));
    for (int i = 0; i < T; i++) host[i] = (float)i;
    m->frame_index = m->be->alloc(m->be, (size_t)T * sizeof(float));
    m->be->upload(m->be, m->frame_index, host, (size_t)T * sizeof(float));
    free(host);
    m->frame_index_len = T;
    return m->frame_index;
}

void vd_unet_forward(vd_model *m, const float *x, const float *t, const float *ctx, int L, int N, int T, int h,
                     int w, float *out)
{
    const vd_unet_config *cfg = &m->cfg.unet;
    vd_backend *be = m->be;
    vd_unet_stage st[VD_UNET_MAX_STAGES];
    char err[128];
    int nst = vd_unet_plan(cfg, st, err, sizeof err);
    int c0 = cfg->channels[0], B = N * T;
    unet_ctx u = {.N = N, .T = T, .G = cfg->groups, .ctx = ctx, .L = L, .temb_dim = 4 * c0};

    /* time embedding */
    float *te0 = tmp(m, (size_t)N * c0), *te1 = tmp(m, (size_t)N * 4 * c0), *te2 = tmp(m, (size_t)N * 4 * c0);
    be->timestep_embedding(be, te0, t, N, c0);
    linear(m, "unet.time.fc1", te1, te0, N, c0, 4 * c0);
    be->silu(be, te1, te1, (size_t)N * 4 * c0);
    linear(m, "unet.time.fc2", te2, te1, N, 4 * c0, 4 * c0);
    if (cfg->pooled_text) {
        /* te += Linear(mean over the L tokens of each video's text) */
        int D = cfg->context_dim;
        float *pooled = tmp(m, (size_t)N * D);
        vd_text_mean(be, pooled, ctx, N, L, D);
        linear(m, "unet.text_pool", te1, pooled, N, D, 4 * c0);
        be->add(be, te2, te2, te1, (size_t)N * 4 * c0);
        done(m, pooled);
    }
    be->silu(be, te2, te2, (size_t)N * 4 * c0);
    done(m, te0), done(m, te1);
    u.temb_act = te2;
    u.frame_index = frame_positions(m, T);

    float *skips[VD_MAX_LEVELS][MAX_SKIPS];
    int skip_n[VD_MAX_LEVELS] = {0};
    float *cur = NULL;
    int H = h, Wd = w;
    for (int i = 0; i < nst; i++) {
        const vd_unet_stage *s = &st[i];
        float *y = NULL;
        switch (s->kind) {
        case VD_STAGE_CONV_IN:
            y = tmp(m, (size_t)B * s->co * H * Wd);
            conv(m, "unet.conv_in", y, x, B, s->ci, H, Wd, s->co, 3, 1);
            break;
        case VD_STAGE_DOWN_BLOCK:
            y = unet_block(m, &u, s, cur, H, Wd);
            break;
        case VD_STAGE_DOWNSAMPLE: {
            char p[96];
            y = tmp(m, (size_t)B * s->co * (H / 2) * (Wd / 2));
            snprintf(p, sizeof p, "unet.down.%d.down", s->level), conv(m, p, y, cur, B, s->ci, H, Wd, s->co, 3, 2);
            H /= 2, Wd /= 2;
            break;
        }
        case VD_STAGE_MID: {
            float *a = res3d(m, &u, "unet.mid.res1", cur, s->ci, s->cm, s->co, H, Wd, s->temporal);
            if (s->attn) attn3d(m, &u, "unet.mid.attn", a, s->co, H, Wd, cfg->head_dim, cfg->context_dim, s->temporal);
            y = res3d(m, &u, "unet.mid.res2", a, s->co, s->cm, s->co, H, Wd, s->temporal);
            done(m, a);
            break;
        }
        case VD_STAGE_UP_BLOCK: {
            const float *in = cur;
            float *cat = NULL;
            if (s->skip_ch) {
                float *skip = skips[s->level][--skip_n[s->level]];
                cat = tmp(m, (size_t)B * s->ci * H * Wd);
                be->concat_channels(be, cat, cur, s->ci - s->skip_ch, skip, s->skip_ch, B, H * Wd);
                done(m, skip);
                in = cat;
            }
            y = unet_block(m, &u, s, in, H, Wd);
            if (cat) done(m, cat);
            break;
        }
        case VD_STAGE_UPSAMPLE: {
            char p[96];
            float *up = tmp(m, (size_t)B * s->ci * H * Wd * 4);
            be->upsample2x(be, up, cur, B, s->ci, H, Wd);
            H *= 2, Wd *= 2;
            y = tmp(m, (size_t)B * s->co * H * Wd);
            snprintf(p, sizeof p, "unet.up.%d.up", s->level), conv(m, p, y, up, B, s->ci, H, Wd, s->co, 3, 1);
            done(m, up);
            break;
        }
        case VD_STAGE_OUT: {
            float *a = tmp(m, (size_t)B * s->ci * H * Wd);
            norm_silu(m, "unet.norm_out", a, cur, B, s->ci, H * Wd, cfg->groups);
            conv(m, "unet.conv_out", out, a, B, s->ci, H, Wd, s->co, 3, 1);
            done(m, a);
            break;
        }
        }
        /* the previous activation is dropped unless a skip stack holds it */
        if (cur) {
            int held = 0;
            for (int l = 0; l < cfg->levels && !held; l++)
                for (int j = 0; j < skip_n[l] && !held; j++) held = skips[l][j] == cur;
            if (!held) done(m, cur);
        }
        cur = y;
        if (s->push >= 0) skips[s->push][skip_n[s->push]++] = y;
    }
    /* skips never popped (a config whose up path takes fewer than the down path gives) */
    for (int l = 0; l < cfg->levels; l++)
        for (int j = 0; j < skip_n[l]; j++) done(m, skips[l][j]);
    done(m, te2);
}

/* Frees one entry's recording and its scratch. */
static void forget_recording(vd_model *m, vd_unet_recording *r)
{
    if (r->recording) m->be->release_recording(m->be, r->recording);
    vd_pool_clear(&r->pool, m->be);
}

void vd_model_drop_recordings(vd_model *m)
{
    for (int i = 0; i < m->recording_count; i++) forget_recording(m, &m->recordings[i]);
    m->recording_count = 0;
}

void vd_model_record_forwards(vd_model *m, int on)
{
    m->record_forwards = on && m->be && m->be->record_begin != NULL;
    if (!m->record_forwards && m->be) vd_model_drop_recordings(m);
}

int vd_model_recordings(const vd_model *m, size_t *scratch_bytes)
{
    int recorded = 0;
    size_t bytes = 0;
    for (int i = 0; i < m->recording_count; i++) {
        recorded += m->recordings[i].recording != NULL;
        bytes += vd_pool_bytes(&m->recordings[i].pool);
    }
    if (scratch_bytes) *scratch_bytes = bytes;
    return recorded;
}

/* The recording of this forward's key, or a fresh entry for it (replacing the least recently used). */
static vd_unet_recording *recording_for(vd_model *m, const vd_unet_recording *key)
{
    vd_unet_recording *r = NULL;
    for (int i = 0; i < m->recording_count && !r; i++) {
        vd_unet_recording *c = &m->recordings[i];
        if (c->x == key->x && c->t == key->t && c->ctx == key->ctx && c->out == key->out && c->L == key->L &&
            c->N == key->N && c->T == key->T && c->h == key->h && c->w == key->w && c->precision == key->precision)
            r = c;
    }
    if (!r) {
        if (m->recording_count < VD_MAX_RECORDINGS) {
            r = &m->recordings[m->recording_count++];
        } else {
            r = &m->recordings[0];
            for (int i = 1; i < m->recording_count; i++)
                if (m->recordings[i].last_use < r->last_use) r = &m->recordings[i];
            forget_recording(m, r);
        }
        *r = *key;
    }
    r->last_use = ++m->recording_clock;
    return r;
}

void vd_unet_forward_recorded(vd_model *m, const float *x, const float *t, const float *ctx, int L, int N, int T,
                              int h, int w, float *out)
{
    vd_backend *be = m->be;
    if (!m->record_forwards || N > VD_RECORD_MAX_ROWS) { /* on only where the backend records */
        vd_unet_forward(m, x, t, ctx, L, N, T, h, w, out);
        return;
    }
    frame_positions(m, T); /* before any recording is chosen: a longer one drops them all */
    vd_unet_recording key = {.x = x, .t = t, .ctx = ctx, .out = out, .L = L, .N = N, .T = T, .h = h, .w = w,
                             .precision = be->precision};
    vd_unet_recording *r = recording_for(m, &key);
    if (r->recording) {
        if (be->replay(be, r->recording) == 0) return;
        be->release_recording(be, r->recording); /* the backend replaced a buffer: size and record again */
        r->recording = NULL, r->runs = 0;
    }
    vd_pool shared = m->pool; /* the forward's scratch comes from the recording's own pool */
    m->pool = r->pool;
    if (r->runs <= 0 || be->record_begin(be) != 0) {
        vd_unet_forward(m, x, t, ctx, L, N, T, h, w, out);
        if (r->runs >= 0) r->runs++;
    } else {
        vd_unet_forward(m, x, t, ctx, L, N, T, h, w, out); /* recorded, not run */
        r->recording = be->record_end(be);
        if (!r->recording || be->replay(be, r->recording) != 0) {
            if (r->recording) be->release_recording(be, r->recording);
            r->recording = NULL, r->runs = -1; /* never again for this key: run it as it is */
            vd_unet_forward(m, x, t, ctx, L, N, T, h, w, out);
        }
    }
    r->pool = m->pool;
    m->pool = shared;
}

int vd_model_guide_fits(const vd_model *model, const vd_model *guide, const char *path, char *err, size_t errlen)
{
    const vd_model_config *a = &model->cfg, *b = &guide->cfg;
    if (!b->text.present || !b->unet.present)
        return vd_fail(err, errlen, "guide %s: a guide model needs a text encoder and a UNet", path);
    int same_vocab = a->text.vocab_size == b->text.vocab_size;
    for (int i = 0; same_vocab && i < a->text.vocab_size; i++) same_vocab = strcmp(a->text.vocab[i], b->text.vocab[i]) == 0;
    if (!same_vocab || a->text.max_tokens != b->text.max_tokens)
        return vd_fail(err, errlen, "guide %s: its vocabulary or token count differs from the model's", path);
    if (a->unet.in_channels != b->unet.in_channels || a->unet.out_channels != b->unet.out_channels ||
        a->unet.context_dim != b->unet.context_dim)
        return vd_fail(err, errlen, "guide %s: its UNet's inputs or outputs differ from the model's", path);
    const vd_diffusion_config *da = &a->diffusion, *db = &b->diffusion;
    if (da->train_steps != db->train_steps || da->beta_start != db->beta_start || da->beta_end != db->beta_end ||
        da->zero_terminal_snr != db->zero_terminal_snr || da->snr_shift != db->snr_shift)
        return vd_fail(err, errlen, "guide %s: its noise schedule differs from the model's", path);
    return 0;
}
