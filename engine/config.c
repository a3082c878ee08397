/* config.c: parsing, printing and presets of the model config (see config.h). */
#include "config.h"
#include "common.h"
#include "world.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The presets' SNR shift (config.h): high-noise steps where the redundant frames of a clip still
 * give away its objects are where a model learns to place them (docs/models.md). */
#define VD_PRESET_SNR_SHIFT 3.0f

static char **copy_strings(char *const *src, int n)
{
    char **dst = vd_calloc((size_t)(n ? n : 1), sizeof(char *));
    for (int i = 0; i < n; i++) dst[i] = strdup(src[i]);
    return dst;
}

void vd_config_free(vd_model_config *c)
{
    for (int i = 0; i < c->text.vocab_size; i++) free(c->text.vocab[i]);
    free(c->text.vocab);
    for (int i = 0; i < c->unet.removed_count; i++) free(c->unet.removed[i]);
    free(c->unet.removed);
    memset(c, 0, sizeof *c);
}

void vd_config_copy(vd_model_config *dst, const vd_model_config *src)
{
    *dst = *src;
    dst->text.vocab = copy_strings(src->text.vocab, src->text.vocab_size);
    dst->unet.removed = copy_strings(src->unet.removed, src->unet.removed_count);
}

int vd_unet_block_removed(const vd_unet_config *u, const char *name)
{
    for (int i = 0; i < u->removed_count; i++)
        if (strcmp(u->removed[i], name) == 0) return 1;
    return 0;
}

int vd_unet_temporal_removed(const vd_unet_config *u, int level)
{
    char name[32];
    snprintf(name, sizeof name, "temporal.%d", level);
    return vd_unet_block_removed(u, name);
}

int vd_unet_inner_channels(const vd_unet_config *u, int level)
{
    return u->inner_channels[level] ? u->inner_channels[level] : u->channels[level];
}

int vd_unet_set_inner_channels(vd_unet_config *u, const int *widths, int count, char *err, size_t errlen)
{
    if (count != u->levels)
        return vd_fail(err, errlen, "inner_channels: %d entries for a UNet of %d levels", count, u->levels);
    for (int l = 0; l < count; l++) {
        int width = widths[l] ? widths[l] : vd_unet_inner_channels(u, l), group_width = u->channels[l] / u->groups;
        if (width < vd_unet_inner_channels(u, l) || width % group_width)
            return vd_fail(err, errlen, "inner_channels[%d]: %d must be at least %d (the level's width now) and a "
                           "multiple of its group width %d", l, width, vd_unet_inner_channels(u, l), group_width);
    }
    for (int l = 0; l < count; l++)
        if (widths[l]) u->inner_channels[l] = widths[l];
    return 0;
}

int vd_unet_attention_removed(const vd_unet_config *u, const char *block)
{
    char name[48];
    snprintf(name, sizeof name, "%s.attn", block);
    return vd_unet_block_removed(u, name);
}

int vd_unet_is_attention_of(const char *unit, const char *block)
{
    size_t len = strlen(block);
    return strncmp(unit, block, len) == 0 && strcmp(unit + len, ".attn") == 0;
}

int vd_unet_unit_is_block(const char *name)
{
    return strncmp(name, "temporal.", 9) != 0 && !strstr(name, ".attn");
}

/* The level of block name ("down.l.b", "up.l.b", "mid": the deepest), or -1 when it names no
 * block of u. */
static int block_name_level(const vd_unet_config *u, const char *name)
{
    int l = -1, b = -1, n = 0;
    if (strcmp(name, "mid") == 0) return u->levels - 1;
    if (sscanf(name, "down.%d.%d%n", &l, &b, &n) != 2 && sscanf(name, "up.%d.%d%n", &l, &b, &n) != 2) return -1;
    int ok = name[n] == 0 && l >= 0 && l < u->levels && b >= 0 && b < u->blocks_per_level + (name[0] == 'u');
    return ok ? l : -1;
}

/* Whether name is a removable unit of u: a block ("down.l.b", "up.l.b", "mid"), the temporal
 * layers of a level ("temporal.l") or the attention part of a block whose level has one
 * ("<block>.attn"). */
static int is_unit_name(const vd_unet_config *u, const char *name)
{
    int l = -1, n = 0;
    if (sscanf(name, "temporal.%d%n", &l, &n) == 1 && name[n] == 0) return l >= 0 && l < u->levels;
    size_t len = strlen(name);
    if (len > 5 && len < 40 && strcmp(name + len - 5, ".attn") == 0) {
        char block[40];
        snprintf(block, sizeof block, "%.*s", (int)(len - 5), name);
        l = block_name_level(u, block);
        return l >= 0 && u->attention[l];
    }
    return block_name_level(u, name) >= 0;
}

int vd_config_preset(const char *name, vd_model_config *c)
{
    memset(c, 0, sizeof *c);
    int tiny = strcmp(name, "tiny") == 0;
    if (!tiny && strcmp(name, "large") != 0) return -1;
    /* the shifted, zero-terminal schedule: docs/models.md says why */
    c->diffusion = (vd_diffusion_config){.train_steps = 1000, .beta_start = 0.00085f, .beta_end = 0.012f,
                                         .zero_terminal_snr = 1, .snr_shift = VD_PRESET_SNR_SHIFT};
    c->ae = (vd_ae_config){.present = 1, .levels = 3, .channels = {32, 64, 64}, .latent_channels = 4,
                           .groups = 8, .image_size = 128, .scale_factor = 1.0f};
    c->text.present = 1;
    const char *const *vocab = vd_world_vocabulary(&c->text.vocab_size); /* the synthetic world's words */
    c->text.vocab = copy_strings((char *const *)vocab, c->text.vocab_size);
    vd_unet_config *u = &c->unet;
    u->present = 1;
    u->blocks_per_level = 2;
    u->in_channels = 9;
    u->out_channels = 4;
    u->frames = 16;
    if (tiny) {
        c->text.max_tokens = 16, c->text.dim = 128, c->text.layers = 2, c->text.heads = 4;
        u->levels = 3;
        int ch[] = {32, 64, 96}, at[] = {0, 1, 1};
        memcpy(u->channels, ch, sizeof ch);
        memcpy(u->attention, at, sizeof at);
        u->head_dim = 32, u->groups = 16, u->latent_h = 32, u->latent_w = 32;
    } else {
        /* VideoCrafter2-like scale, random weights, for speed measurement only. */
        c->text.max_tokens = 77, c->text.dim = 1024, c->text.layers = 2, c->text.heads = 16;
        c->ae.image_size = 256; /* 4x the latent side; the AE stays small */
        u->levels = 4;
        int ch[] = {320, 640, 1280, 1280}, at[] = {1, 1, 1, 0};
        memcpy(u->channels, ch, sizeof ch);
        memcpy(u->attention, at, sizeof at);
        u->head_dim = 64, u->groups = 32, u->latent_h = 40, u->latent_w = 64;
    }
    u->context_dim = c->text.dim;
    u->pooled_text = 1;
    return 0;
}

/* ---- JSON ---- */

static int get_int(json_t *obj, const char *section, const char *key, int lo, int hi, int *out,
                   char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v)) return vd_fail(err, errlen, "config %s.%s: missing or not an integer", section, key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) return vd_fail(err, errlen, "config %s.%s: %lld is outside [%d, %d]", section, key, (long long)x, lo, hi);
    *out = (int)x;
    return 0;
}

static int get_int_list(json_t *obj, const char *section, const char *key, int lo, int hi, int *out,
                        int *count, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > VD_MAX_LEVELS)
        return vd_fail(err, errlen, "config %s.%s: must be a list of 1 to %d integers", section, key, VD_MAX_LEVELS);
    *count = (int)json_array_size(v);
    for (int i = 0; i < *count; i++) {
        json_t *e = json_array_get(v, (size_t)i);
        json_int_t x = json_is_boolean(e) ? json_is_true(e) : json_is_integer(e) ? json_integer_value(e) : -1;
        if ((!json_is_integer(e) && !json_is_boolean(e)) || x < lo || x > hi)
            return vd_fail(err, errlen, "config %s.%s[%d]: must be in [%d, %d]", section, key, i, lo, hi);
        out[i] = (int)x;
    }
    return 0;
}

static int get_float(json_t *obj, const char *section, const char *key, double lo, double hi, float dflt,
                     float *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (!v) { *out = dflt; return 0; }
    if (!json_is_number(v)) return vd_fail(err, errlen, "config %s.%s: not a number", section, key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return vd_fail(err, errlen, "config %s.%s: %g is outside [%g, %g]", section, key, x, lo, hi);
    *out = (float)x;
    return 0;
}

static int parse_ae(json_t *j, vd_ae_config *a, char *err, size_t errlen)
{
    a->present = 1;
    if (get_int_list(j, "ae", "channels", 1, 4096, a->channels, &a->levels, err, errlen) ||
        get_int(j, "ae", "latent_channels", 1, 64, &a->latent_channels, err, errlen) ||
        get_int(j, "ae", "groups", 1, 1024, &a->groups, err, errlen) ||
        get_int(j, "ae", "image_size", 8, 4096, &a->image_size, err, errlen) ||
        get_float(j, "ae", "scale_factor", 1e-6, 1e6, 1.0f, &a->scale_factor, err, errlen))
        return -1;
    for (int l = 0; l < a->levels; l++)
        if (a->channels[l] % a->groups) return vd_fail(err, errlen, "config ae.channels[%d] = %d is not divisible by groups %d", l, a->channels[l], a->groups);
    if (a->image_size % (1 << (a->levels - 1))) return vd_fail(err, errlen, "config ae.image_size is not divisible by 2^(levels-1)");
    return 0;
}

static int parse_text(json_t *j, vd_text_config *t, char *err, size_t errlen)
{
    t->present = 1;
    if (get_int(j, "text", "max_tokens", 1, 4096, &t->max_tokens, err, errlen) ||
        get_int(j, "text", "dim", 1, 16384, &t->dim, err, errlen) ||
        get_int(j, "text", "layers", 0, 256, &t->layers, err, errlen) ||
        get_int(j, "text", "heads", 1, 256, &t->heads, err, errlen))
        return -1;
    if (t->dim % t->heads) return vd_fail(err, errlen, "config text.dim %d is not divisible by text.heads %d", t->dim, t->heads);
    json_t *v = json_object_get(j, "vocab");
    if (!json_is_array(v) || json_array_size(v) < 2 || json_array_size(v) > 1000000)
        return vd_fail(err, errlen, "config text.vocab: must be a list of at least 2 words");
    t->vocab_size = (int)json_array_size(v);
    t->vocab = vd_calloc((size_t)t->vocab_size, sizeof(char *));
    for (int i = 0; i < t->vocab_size; i++) {
        const char *w = json_string_value(json_array_get(v, (size_t)i));
        if (!w || !*w) { t->vocab_size = i; return vd_fail(err, errlen, "config text.vocab[%d]: not a non-empty string", i); }
        t->vocab[i] = strdup(w);
    }
    if (strcmp(t->vocab[0], "<pad>") || strcmp(t->vocab[1], "<unk>"))
        return vd_fail(err, errlen, "config text.vocab must start with \"<pad>\", \"<unk>\"");
    return 0;
}

static int parse_unet(json_t *j, vd_unet_config *u, char *err, size_t errlen)
{
    u->present = 1;
    int nat = 0, nls = 0, ls[2];
    if (get_int_list(j, "unet", "channels", 1, 65536, u->channels, &u->levels, err, errlen) ||
        get_int_list(j, "unet", "attention", 0, 1, u->attention, &nat, err, errlen) ||
        get_int(j, "unet", "blocks_per_level", 0, 64, &u->blocks_per_level, err, errlen) ||
        get_int(j, "unet", "head_dim", 1, 4096, &u->head_dim, err, errlen) ||
        get_int(j, "unet", "groups", 1, 4096, &u->groups, err, errlen) ||
        get_int(j, "unet", "in_channels", 1, 1024, &u->in_channels, err, errlen) ||
        get_int(j, "unet", "out_channels", 1, 1024, &u->out_channels, err, errlen) ||
        get_int(j, "unet", "context_dim", 1, 65536, &u->context_dim, err, errlen) ||
        get_int(j, "unet", "frames", 1, 4096, &u->frames, err, errlen) ||
        get_int_list(j, "unet", "latent_size", 1, 4096, ls, &nls, err, errlen))
        return -1;
    if (nat != u->levels) return vd_fail(err, errlen, "config unet.attention has %d entries for %d levels", nat, u->levels);
    if (nls != 2) return vd_fail(err, errlen, "config unet.latent_size must be [height, width]");
    u->latent_h = ls[0], u->latent_w = ls[1];
    json_t *pooled = json_object_get(j, "pooled_text");
    if (pooled && !json_is_boolean(pooled)) return vd_fail(err, errlen, "config unet.pooled_text: not true or false");
    u->pooled_text = pooled && json_is_true(pooled);
    for (int l = 0; l < u->levels; l++) {
        if (u->channels[l] % u->groups) return vd_fail(err, errlen, "config unet.channels[%d] = %d is not divisible by groups %d", l, u->channels[l], u->groups);
        if (u->attention[l] && u->channels[l] % u->head_dim) return vd_fail(err, errlen, "config unet.channels[%d] = %d is not divisible by head_dim %d", l, u->channels[l], u->head_dim);
        if (u->channels[l] % 2) return vd_fail(err, errlen, "config unet.channels[%d] must be even", l);
    }
    if (json_object_get(j, "inner_channels")) {
        int widths[VD_MAX_LEVELS], count = 0;
        char why[160];
        if (get_int_list(j, "unet", "inner_channels", 1, 65536, widths, &count, err, errlen)) return -1;
        if (vd_unet_set_inner_channels(u, widths, count, why, sizeof why))
            return vd_fail(err, errlen, "config unet.%s", why);
    }
    json_t *rm = json_object_get(j, "removed");
    if (rm && !json_is_array(rm))
        return vd_fail(err, errlen, "config unet.removed: must be a list of units: blocks, temporal.<level>, <block>.attn");
    int count = rm ? (int)json_array_size(rm) : 0;
    u->removed = vd_calloc((size_t)(count ? count : 1), sizeof(char *));
    for (int i = 0; i < count; i++) {
        const char *name = json_string_value(json_array_get(rm, (size_t)i));
        if (!name || !is_unit_name(u, name))
            return vd_fail(err, errlen, "config unet.removed[%d]: \"%s\" is not a block, temporal.<level> or <block>.attn unit of this UNet",
                           i, name ? name : "(not a string)");
        if (vd_unet_block_removed(u, name)) return vd_fail(err, errlen, "config unet.removed[%d]: \"%s\" is named twice", i, name);
        u->removed[u->removed_count++] = strdup(name);
    }
    for (int i = 0; i < u->removed_count; i++)
        if (vd_unet_attention_removed(u, u->removed[i]))
            return vd_fail(err, errlen, "config unet.removed: \"%s.attn\" names the attention of a removed block", u->removed[i]);
    return 0;
}

/* The schedule's optional fields zero_terminal_snr and snr_shift, when obj has them. */
static int parse_schedule_shape(json_t *obj, vd_diffusion_config *d, char *err, size_t errlen)
{
    json_t *zt = json_object_get(obj, "zero_terminal_snr");
    if (zt && !json_is_boolean(zt)) return vd_fail(err, errlen, "config diffusion.zero_terminal_snr: not true or false");
    if (zt) d->zero_terminal_snr = json_is_true(zt);
    return get_float(obj, "diffusion", "snr_shift", 1.0, 1000.0, d->snr_shift, &d->snr_shift, err, errlen);
}

/* "sampling": {"guidance": G}, G from 1 to 100. */
static int parse_sampling(json_t *obj, vd_sampling_config *s, char *err, size_t errlen)
{
    if (!json_is_object(obj)) return vd_fail(err, errlen, "config sampling: not a JSON object");
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (strcmp(key, "guidance") != 0)
            return vd_fail(err, errlen, "config sampling: unknown field \"%s\" (only guidance)", key);
    }
    if (!json_object_get(obj, "guidance")) return vd_fail(err, errlen, "config sampling.guidance: required");
    return get_float(obj, "sampling", "guidance", 1.0, 100.0, 0.0f, &s->guidance, err, errlen);
}

int vd_config_parse_schedule(const char *json, vd_diffusion_config *d, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *obj = json_loads(json, 0, &jerr);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return vd_fail(err, errlen, "config diffusion: not a JSON object");
    }
    int rc = 0;
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (strcmp(key, "zero_terminal_snr") != 0 && strcmp(key, "snr_shift") != 0) {
            rc = vd_fail(err, errlen, "config diffusion: unknown field \"%s\" (zero_terminal_snr and snr_shift can change)", key);
            break;
        }
    }
    if (rc == 0) rc = parse_schedule_shape(obj, d, err, errlen);
    json_decref(obj);
    return rc;
}

int vd_config_parse(const char *json, vd_model_config *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    json_error_t jerr;
    json_t *root = json_loads(json, 0, &jerr);
    if (!root) return vd_fail(err, errlen, "config is not valid JSON: %s", jerr.text);
    int rc = 0;
    const char *format = json_string_value(json_object_get(root, "format"));
    if (!json_is_object(root) || !format || strcmp(format, "vdmini") != 0) {
        rc = vd_fail(err, errlen, "config: \"format\" must be \"vdmini\"");
        goto done;
    }
    json_t *ae = json_object_get(root, "ae"), *text = json_object_get(root, "text");
    json_t *unet = json_object_get(root, "unet"), *diff = json_object_get(root, "diffusion");
    if ((ae && parse_ae(ae, &c->ae, err, errlen)) || (text && parse_text(text, &c->text, err, errlen)) ||
        (unet && parse_unet(unet, &c->unet, err, errlen))) {
        rc = -1;
        goto done;
    }
    c->diffusion = (vd_diffusion_config){1000, 0.00085f, 0.012f, 0, 1.0f};
    if (diff) {
        const char *pred = json_string_value(json_object_get(diff, "prediction"));
        if (pred && strcmp(pred, "v") != 0) { rc = vd_fail(err, errlen, "config diffusion.prediction: only \"v\" is supported"); goto done; }
        if (get_int(diff, "diffusion", "train_steps", 2, 100000, &c->diffusion.train_steps, err, errlen) ||
            get_float(diff, "diffusion", "beta_start", 1e-8, 0.5, 0.00085f, &c->diffusion.beta_start, err, errlen) ||
            get_float(diff, "diffusion", "beta_end", 1e-8, 0.999, 0.012f, &c->diffusion.beta_end, err, errlen) ||
            parse_schedule_shape(diff, &c->diffusion, err, errlen)) {
            rc = -1;
            goto done;
        }
    }
    json_t *sampling = json_object_get(root, "sampling");
    if (sampling && parse_sampling(sampling, &c->sampling, err, errlen)) rc = -1;
done:
    json_decref(root);
    if (rc) vd_config_free(c);
    return rc;
}

static json_t *int_list(const int *v, int n, int as_bool)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, as_bool ? json_boolean(v[i]) : json_integer(v[i]));
    return a;
}

char *vd_config_to_json(const vd_model_config *c)
{
    json_t *root = json_pack("{s:s, s:i}", "format", "vdmini", "version", 1);
    if (c->ae.present) {
        const vd_ae_config *a = &c->ae;
        json_object_set_new(root, "ae", json_pack("{s:o, s:i, s:i, s:i, s:f}", "channels", int_list(a->channels, a->levels, 0),
                                                  "latent_channels", a->latent_channels, "groups", a->groups,
                                                  "image_size", a->image_size, "scale_factor", (double)a->scale_factor));
    }
    if (c->text.present) {
        const vd_text_config *t = &c->text;
        json_t *vocab = json_array();
        for (int i = 0; i < t->vocab_size; i++) json_array_append_new(vocab, json_string(t->vocab[i]));
        json_object_set_new(root, "text", json_pack("{s:o, s:i, s:i, s:i, s:i}", "vocab", vocab, "max_tokens", t->max_tokens,
                                                    "dim", t->dim, "layers", t->layers, "heads", t->heads));
    }
    if (c->unet.present) {
        const vd_unet_config *u = &c->unet;
        json_t *removed = json_array();
        for (int i = 0; i < u->removed_count; i++) json_array_append_new(removed, json_string(u->removed[i]));
        json_t *j = json_pack("{s:o, s:i, s:o, s:i, s:i, s:i, s:i, s:i, s:i, s:[i,i], s:b, s:o}",
                              "channels", int_list(u->channels, u->levels, 0), "blocks_per_level", u->blocks_per_level,
                              "attention", int_list(u->attention, u->levels, 1), "head_dim", u->head_dim,
                              "groups", u->groups, "in_channels", u->in_channels, "out_channels", u->out_channels,
                              "context_dim", u->context_dim, "frames", u->frames, "latent_size", u->latent_h,
                              u->latent_w, "pooled_text", u->pooled_text, "removed", removed);
        int widened = 0;
        for (int l = 0; l < u->levels; l++) widened |= vd_unet_inner_channels(u, l) != u->channels[l];
        if (widened) {
            int inner[VD_MAX_LEVELS];
            for (int l = 0; l < u->levels; l++) inner[l] = vd_unet_inner_channels(u, l);
            json_object_set_new(j, "inner_channels", int_list(inner, u->levels, 0));
        }
        json_object_set_new(root, "unet", j);
        const vd_diffusion_config *d = &c->diffusion;
        json_object_set_new(root, "diffusion", json_pack("{s:s, s:i, s:f, s:f, s:b, s:f}", "prediction", "v", "train_steps",
                                                         d->train_steps, "beta_start", (double)d->beta_start, "beta_end",
                                                         (double)d->beta_end, "zero_terminal_snr", d->zero_terminal_snr,
                                                         "snr_shift", (double)d->snr_shift));
    }
    if (c->sampling.guidance > 0)
        json_object_set_new(root, "sampling", json_pack("{s:f}", "guidance", (double)c->sampling.guidance));
    char *s = json_dumps(root, JSON_PRESERVE_ORDER | JSON_COMPACT);
    json_decref(root);
    return s;
}
