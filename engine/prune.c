/* prune.c: a student without some UNet units (blocks, temporal layers, attention parts), with
 * the teacher's weights (see prune.h). */
#include "prune.h"
#include "common.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* Copies the leading block the two shapes share (the minimum extent in every dimension) from src
 * into dst; the rest of dst keeps its values. */
static void copy_overlap(float *dst, const int64_t *dst_shape, const float *src, const int64_t *src_shape, int ndim)
{
    int64_t extent[4] = {1, 1, 1, 1}, index[4] = {0, 0, 0, 0};
    size_t total = 1;
    for (int d = 0; d < ndim; d++) {
        extent[d] = dst_shape[d] < src_shape[d] ? dst_shape[d] : src_shape[d];
        total *= (size_t)extent[d];
    }
    for (size_t i = 0; i < total; i++) {
        size_t from = 0, to = 0;
        for (int d = 0; d < ndim; d++) {
            from = from * (size_t)src_shape[d] + (size_t)index[d];
            to = to * (size_t)dst_shape[d] + (size_t)index[d];
        }
        dst[to] = src[from];
        for (int d = ndim - 1; d >= 0; d--) { /* the next index, last dimension fastest */
            if (++index[d] < extent[d]) break;
            index[d] = 0;
        }
    }
}

int vd_prune(const vd_model *teacher, char *const *remove, int count, uint64_t seed, vd_model *student,
             vd_prune_report *report, char *err, size_t errlen)
{
    memset(student, 0, sizeof *student);
    memset(report, 0, sizeof *report);
    const vd_unet_config *tu = &teacher->cfg.unet;
    if (!tu->present || !teacher->host) return vd_fail(err, errlen, "the teacher has no UNet weights");
    char names[VD_PRUNE_MAX_UNITS][16];
    int units = vd_unet_removable_units(tu, names, VD_PRUNE_MAX_UNITS), blocks = 0, removed_blocks = 0;
    for (int b = 0; b < units; b++) blocks += vd_unet_unit_is_block(names[b]);
    for (int i = 0; i < count; i++) {
        int known = 0;
        for (int b = 0; b < units; b++) known |= strcmp(names[b], remove[i]) == 0;
        if (!known)
            return vd_fail(err, errlen, "unit \"%s\": not a block, temporal.<level> or <block>.attn unit of the teacher's UNet",
                           remove[i]);
        for (int j = 0; j < count; j++) {
            if (j < i && strcmp(remove[i], remove[j]) == 0) return vd_fail(err, errlen, "unit \"%s\": named twice", remove[i]);
            if (j != i && vd_unet_is_attention_of(remove[i], remove[j]))
                return vd_fail(err, errlen, "unit \"%s\": its block \"%s\" is removed too", remove[i], remove[j]);
        }
        removed_blocks += vd_unet_unit_is_block(remove[i]);
    }
    if (removed_blocks >= blocks) return vd_fail(err, errlen, "removing every block leaves no UNet");

    vd_model_config cfg;
    vd_config_copy(&cfg, &teacher->cfg);
    vd_unet_config *u = &cfg.unet;
    u->removed = vd_realloc(u->removed, (size_t)(u->removed_count + count) * sizeof(char *));
    for (int i = 0; i < count; i++) u->removed[u->removed_count++] = strdup(remove[i]);
    int rc = vd_model_build(student, &cfg, err, errlen);
    vd_config_free(&cfg);
    if (rc) {
        vd_model_free(student);
        return -1;
    }
    vd_model_init_random(student, seed);
    for (int i = 0; i < student->nparams; i++) {
        const vd_param *s = &student->params[i];
        const vd_param *t = vd_model_param(teacher, s->name);
        int fits = t && t->ndim == s->ndim && s->ndim <= 4, same = fits;
        for (int d = 0; same && d < s->ndim; d++) same &= s->shape[d] == t->shape[d];
        if (same) {
            memcpy(student->host + s->offset, teacher->host + t->offset, s->numel * sizeof(float));
            report->copied++;
        } else if (fits) {
            copy_overlap(student->host + s->offset, s->shape, teacher->host + t->offset, t->shape, s->ndim);
            report->sliced++;
        } else {
            report->fresh++;
        }
    }
    for (int i = 0; i < teacher->nparams; i++) {
        const char *name = teacher->params[i].name;
        if (!vd_model_param(student, name)) report->dropped++;
    }
    return 0;
}

int vd_prune_plan_load(const char *path, char ***names, int *count, char *err, size_t errlen)
{
    *names = NULL, *count = 0;
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) return vd_fail(err, errlen, "%s: line %d: %s", path, jerr.line, jerr.text);
    json_t *list = json_object_get(root, "remove");
    int rc = 0;
    if (!json_is_object(root) || !json_is_array(list)) {
        rc = vd_fail(err, errlen, "%s: remove: required, a list of unit names", path);
    } else {
        const char *key;
        json_t *v;
        json_object_foreach(root, key, v)
            if (strcmp(key, "remove") != 0 && rc == 0) rc = vd_fail(err, errlen, "%s: unknown field \"%s\"", path, key);
    }
    if (rc == 0) {
        *count = (int)json_array_size(list);
        *names = vd_calloc((size_t)(*count ? *count : 1), sizeof(char *));
        for (int i = 0; i < *count && rc == 0; i++) {
            const char *name = json_string_value(json_array_get(list, (size_t)i));
            if (!name || !name[0] || strlen(name) >= 16) rc = vd_fail(err, errlen, "%s: remove[%d]: not a unit name", path, i);
            else (*names)[i] = strdup(name);
        }
        if (rc) {
            vd_prune_plan_free(*names, *count);
            *names = NULL, *count = 0;
        }
    }
    json_decref(root);
    return rc;
}

void vd_prune_plan_free(char **names, int count)
{
    for (int i = 0; names && i < count; i++) free(names[i]);
    free(names);
}
