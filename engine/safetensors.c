/* safetensors.c: the safetensors reader and writer declared in safetensors.h.
 * Every field of an untrusted file is checked before use; see the header for the rules. */
#include "safetensors.h"
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    const char *name;
    vd_st_dtype dtype;
    size_t size;
} dtype_table[] = {
    {"F32", VD_ST_F32, 4}, {"F16", VD_ST_F16, 2}, {"BF16", VD_ST_BF16, 2}, {"F8_E4M3", VD_ST_F8_E4M3, 1},
    {"I32", VD_ST_I32, 4}, {"I64", VD_ST_I64, 8}, {"U8", VD_ST_U8, 1},
};

size_t vd_st_dtype_size(vd_st_dtype dtype)
{
    for (size_t i = 0; i < VD_ARRAY_LEN(dtype_table); i++)
        if (dtype_table[i].dtype == dtype) return dtype_table[i].size;
    return 0;
}

static const char *dtype_name(vd_st_dtype dtype)
{
    for (size_t i = 0; i < VD_ARRAY_LEN(dtype_table); i++)
        if (dtype_table[i].dtype == dtype) return dtype_table[i].name;
    return "?";
}

int64_t vd_st_numel(const vd_st_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

void vd_st_free(vd_st_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->count; i++) free(f->tensors[i].name);
    for (int i = 0; i < f->meta_count; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->tensors);
    free(f->meta_keys);
    free(f->meta_values);
    free(f->bytes);
    for (int i = 0; i < f->part_count; i++) free(f->part_bytes[i]);
    free(f->part_bytes);
    memset(f, 0, sizeof *f);
}

static int compare_offsets(const void *a, const void *b)
{
    const vd_st_tensor *x = *(const vd_st_tensor *const *)a, *y = *(const vd_st_tensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

/* Parses the header of f->bytes (already owned by f). */
static int parse_owned(vd_st_file *f, char *err, size_t errlen)
{
    if (f->size < 8) return vd_fail(err, errlen, "file too short for a safetensors header (%zu bytes)", f->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->bytes[i];
    if (hlen > VD_ST_MAX_HEADER)
        return vd_fail(err, errlen, "header length %llu exceeds the limit of %u bytes",
                    (unsigned long long)hlen, VD_ST_MAX_HEADER);
    if (hlen > f->size - 8)
        return vd_fail(err, errlen, "header length %llu runs past the end of the file (%zu bytes)",
                    (unsigned long long)hlen, f->size);
    const uint8_t *data = f->bytes + 8 + hlen;
    size_t data_size = f->size - 8 - (size_t)hlen;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)f->bytes + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return vd_fail(err, errlen, "header is not valid JSON: %s (at byte %d)", jerr.text, jerr.position);
    if (!json_is_object(root)) {
        json_decref(root);
        return vd_fail(err, errlen, "header is not a JSON object");
    }
    size_t n = json_object_size(root);
    f->tensors = vd_calloc(n, sizeof *f->tensors);
    int rc = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val)) { rc = vd_fail(err, errlen, "__metadata__ is not an object"); break; }
            size_t m = json_object_size(val);
            f->meta_keys = vd_calloc(m, sizeof(char *));
            f->meta_values = vd_calloc(m, sizeof(char *));
            const char *mk;
            json_t *mv;
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv)) { rc = vd_fail(err, errlen, "__metadata__ value for \"%s\" is not a string", mk); break; }
                f->meta_keys[f->meta_count] = strdup(mk);
                f->meta_values[f->meta_count] = strdup(json_string_value(mv));
                f->meta_count++;
            }
            if (rc) break;
            continue;
        }
        if (!json_is_object(val)) { rc = vd_fail(err, errlen, "tensor \"%s\": entry is not an object", key); break; }
        vd_st_tensor *t = &f->tensors[f->count];
        const char *dt = json_string_value(json_object_get(val, "dtype"));
        json_t *shape = json_object_get(val, "shape");
        json_t *offs = json_object_get(val, "data_offsets");
        if (!dt) { rc = vd_fail(err, errlen, "tensor \"%s\": missing dtype", key); break; }
        size_t esize = 0;
        for (size_t i = 0; i < VD_ARRAY_LEN(dtype_table); i++)
            if (strcmp(dt, dtype_table[i].name) == 0) { t->dtype = dtype_table[i].dtype; esize = dtype_table[i].size; }
        if (!esize) { rc = vd_fail(err, errlen, "tensor \"%s\": unsupported dtype \"%s\"", key, dt); break; }
        if (!json_is_array(shape) || json_array_size(shape) > VD_ST_MAX_DIMS) {
            rc = vd_fail(err, errlen, "tensor \"%s\": shape must be an array of at most %d integers", key, VD_ST_MAX_DIMS);
            break;
        }
        t->ndim = (int)json_array_size(shape);
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim && !rc; d++) {
            json_t *dim = json_array_get(shape, (size_t)d);
            if (!json_is_integer(dim) || json_integer_value(dim) < 0 || json_integer_value(dim) > ((int64_t)1 << 40)) {
                rc = vd_fail(err, errlen, "tensor \"%s\": dimension %d is not a sane non-negative integer", key, d);
                break;
            }
            t->shape[d] = json_integer_value(dim);
            if (t->shape[d] && numel > ((uint64_t)1 << 40) / (uint64_t)t->shape[d]) {
                rc = vd_fail(err, errlen, "tensor \"%s\": too many elements", key);
                break;
            }
            numel *= (uint64_t)t->shape[d];
        }
        if (rc) break;
        if (!json_is_array(offs) || json_array_size(offs) != 2 || !json_is_integer(json_array_get(offs, 0)) ||
            !json_is_integer(json_array_get(offs, 1))) {
            rc = vd_fail(err, errlen, "tensor \"%s\": data_offsets must be two integers", key);
            break;
        }
        json_int_t begin = json_integer_value(json_array_get(offs, 0));
        json_int_t end = json_integer_value(json_array_get(offs, 1));
        if (begin < 0 || end < begin || (uint64_t)end > data_size) {
            rc = vd_fail(err, errlen, "tensor \"%s\": data_offsets [%lld, %lld] outside the data area of %zu bytes",
                      key, (long long)begin, (long long)end, data_size);
            break;
        }
        if ((uint64_t)(end - begin) != numel * esize) {
            rc = vd_fail(err, errlen, "tensor \"%s\": %lld bytes for %llu elements of %s", key,
                      (long long)(end - begin), (unsigned long long)numel, dt);
            break;
        }
        t->name = strdup(key);
        t->scale = 1.0f;
        t->nbytes = (size_t)(end - begin);
        t->data = data + begin;
        f->count++;
    }
    json_decref(root);
    if (rc) return rc;

    /* byte ranges must not overlap */
    if (f->count > 1) {
        const vd_st_tensor **order = vd_malloc((size_t)f->count * sizeof *order);
        for (int i = 0; i < f->count; i++) order[i] = &f->tensors[i];
        qsort(order, (size_t)f->count, sizeof *order, compare_offsets);
        for (int i = 1; i < f->count && !rc; i++)
            if (order[i - 1]->data + order[i - 1]->nbytes > order[i]->data)
                rc = vd_fail(err, errlen, "tensors \"%s\" and \"%s\" overlap", order[i - 1]->name, order[i]->name);
        free(order);
    }
    return rc;
}

/* Gives every F8_E4M3 tensor its scale from the metadata (after all parts are in). */
static int resolve_scales(vd_st_file *f, char *err, size_t errlen)
{
    size_t plen = strlen(VD_ST_SCALE_PREFIX);
    for (int i = 0; i < f->meta_count; i++) {
        const char *key = f->meta_keys[i];
        if (strncmp(key, VD_ST_SCALE_PREFIX, plen) != 0) continue;
        vd_st_tensor *t = (vd_st_tensor *)vd_st_find(f, key + plen);
        if (!t || t->dtype != VD_ST_F8_E4M3)
            return vd_fail(err, errlen, "metadata %s: a scale for \"%s\", which is not an F8_E4M3 tensor of the file",
                           key, key + plen);
        char *end;
        double v = strtod(f->meta_values[i], &end);
        if (end == f->meta_values[i] || *end || !(v > 0.0) || !isfinite(v) || v > 3.0e38)
            return vd_fail(err, errlen, "metadata %s: \"%.40s\" is not a positive number", key, f->meta_values[i]);
        t->scale = (float)v;
    }
    for (int i = 0; i < f->count; i++) {
        if (f->tensors[i].dtype != VD_ST_F8_E4M3) continue;
        char key[512];
        snprintf(key, sizeof key, "%s%s", VD_ST_SCALE_PREFIX, f->tensors[i].name);
        if (!vd_st_meta(f, key)) return vd_fail(err, errlen, "tensor \"%s\": F8_E4M3 without its scale (metadata %s)",
                                                 f->tensors[i].name, key);
    }
    return 0;
}

int vd_st_parse(const uint8_t *bytes, size_t size, vd_st_file *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->bytes = vd_malloc(size);
    memcpy(out->bytes, bytes, size);
    out->size = size;
    if (parse_owned(out, err, errlen) != 0 || resolve_scales(out, err, errlen) != 0) {
        vd_st_free(out);
        return -1;
    }
    return 0;
}

/* Reads one file, without following its parts. */
static int read_file(const char *path, vd_st_file *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    FILE *fp = fopen(path, "rb");
    if (!fp) return vd_fail(err, errlen, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return vd_fail(err, errlen, "%s: not a regular file", path);
    }
    out->size = (size_t)st.st_size;
    out->bytes = vd_malloc(out->size);
    size_t got = fread(out->bytes, 1, out->size, fp);
    fclose(fp);
    if (got != out->size) {
        vd_st_free(out);
        return vd_fail(err, errlen, "%s: short read", path);
    }
    char inner[256];
    if (parse_owned(out, inner, sizeof inner) != 0) {
        vd_st_free(out);
        return vd_fail(err, errlen, "%s: %s", path, inner);
    }
    return 0;
}

/* Reads the part `name` beside `path` and moves its tensors and bytes into f. */
static int add_part(vd_st_file *f, const char *path, const char *name, char *err, size_t errlen)
{
    if (!name[0] || strchr(name, '/') || name[0] == '.')
        return vd_fail(err, errlen, "%s: bad part name \"%s\" (a file name beside it)", path, name);
    const char *slash = strrchr(path, '/');
    int dir_len = slash ? (int)(slash - path) + 1 : 0;
    size_t len = (size_t)dir_len + strlen(name) + 1;
    char *part_path = vd_malloc(len);
    snprintf(part_path, len, "%.*s%s", dir_len, path, name);
    vd_st_file part;
    int rc = read_file(part_path, &part, err, errlen);
    if (rc == 0 && vd_st_meta(&part, VD_ST_PARTS_KEY))
        rc = vd_fail(err, errlen, "%s: a part names parts of its own", part_path);
    for (int i = 0; rc == 0 && i < part.count; i++)
        if (vd_st_find(f, part.tensors[i].name))
            rc = vd_fail(err, errlen, "%s: tensor %s is in an earlier part too", part_path, part.tensors[i].name);
    free(part_path);
    if (rc) {
        vd_st_free(&part);
        return -1;
    }
    f->tensors = vd_realloc(f->tensors, (size_t)(f->count + part.count) * sizeof *f->tensors);
    memcpy(f->tensors + f->count, part.tensors, (size_t)part.count * sizeof *part.tensors);
    f->count += part.count;
    f->part_bytes = vd_realloc(f->part_bytes, (size_t)(f->part_count + 1) * sizeof *f->part_bytes);
    f->part_bytes[f->part_count++] = part.bytes;
    part.count = 0, part.bytes = NULL; /* the names and bytes now belong to f */
    vd_st_free(&part);
    return 0;
}

int vd_st_read(const char *path, vd_st_file *out, char *err, size_t errlen)
{
    if (read_file(path, out, err, errlen)) return -1;
    const char *parts = vd_st_meta(out, VD_ST_PARTS_KEY);
    if (!parts) {
        char inner[256];
        if (resolve_scales(out, inner, sizeof inner) == 0) return 0;
        vd_st_free(out);
        return vd_fail(err, errlen, "%s: %s", path, inner);
    }
    char *list = vd_malloc(strlen(parts) + 1), *save = NULL;
    strcpy(list, parts);
    int rc = 0;
    for (char *name = strtok_r(list, ",", &save); name && rc == 0; name = strtok_r(NULL, ",", &save))
        rc = add_part(out, path, name, err, errlen);
    free(list);
    char inner[256];
    if (rc == 0 && resolve_scales(out, inner, sizeof inner)) rc = vd_fail(err, errlen, "%s: %s", path, inner);
    if (rc) vd_st_free(out);
    return rc;
}

const vd_st_tensor *vd_st_find(const vd_st_file *f, const char *name)
{
    for (int i = 0; i < f->count; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *vd_st_meta(const vd_st_file *f, const char *key)
{
    for (int i = 0; i < f->meta_count; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

uint16_t vd_f32_to_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float vd_bf16_to_f32(uint16_t x)
{
    uint32_t u = (uint32_t)x << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint8_t vd_f32_to_e4m3(float x)
{
    uint8_t sign = signbit(x) ? 0x80 : 0;
    if (isnan(x)) return 0x7f;
    double a = fabs((double)x);
    if (a >= 448.0) return sign | 0x7e; /* saturate: 1.75 * 2^8 */
    int e;
    frexp(a, &e); /* a = m * 2^e, m in [0.5, 1): the leading bit is 2^(e-1); 0 gives e = 0 */
    int exp = e - 1 < -6 ? -6 : e - 1;
    double q = nearbyint(ldexp(a, 3 - exp)); /* in steps of 2^(exp-3), ties to even */
    if (q >= 16) q /= 2, exp++;            /* rounded up into the next binade */
    if (exp > 8 || (exp == 8 && q > 14)) return sign | 0x7e;
    if (q < 8) return sign | (uint8_t)q; /* subnormal (exp is -6) */
    return sign | (uint8_t)((exp + 7) << 3) | (uint8_t)(q - 8);
}

float vd_e4m3_to_f32(uint8_t x)
{
    int exp = (x >> 3) & 0xf, mant = x & 7;
    double v;
    if (exp == 0xf && mant == 7) v = NAN;
    else if (exp == 0) v = ldexp(mant, -9);
    else v = ldexp(8 + mant, exp - 10);
    return (float)(x & 0x80 ? -v : v);
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, u;
    if (exp == 0) {
        if (mant == 0) u = sign;
        else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(mant & 0x400)) { mant <<= 1; exp--; }
            u = sign | (exp << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) u = sign | 0x7f800000u | (mant << 13);
    else u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

int vd_st_to_f32(const vd_st_tensor *t, float *dst)
{
    int64_t n = vd_st_numel(t);
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case VD_ST_F32: memcpy(dst, p, (size_t)n * 4); return 0;
    case VD_ST_BF16:
        for (int64_t i = 0; i < n; i++) dst[i] = vd_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return 0;
    case VD_ST_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return 0;
    case VD_ST_F8_E4M3:
        for (int64_t i = 0; i < n; i++) dst[i] = vd_e4m3_to_f32(p[i]) * t->scale;
        return 0;
    default: return -1;
    }
}

/* ---- writer ---- */

typedef struct {
    char *name;
    vd_st_dtype dtype;
    int ndim;
    int64_t shape[VD_ST_MAX_DIMS];
    uint8_t *data;
    size_t nbytes;
} writer_entry;

struct vd_st_writer {
    writer_entry *entries;
    int count, cap;
    json_t *meta;
};

vd_st_writer *vd_st_writer_new(void)
{
    vd_st_writer *w = vd_calloc(1, sizeof *w);
    w->meta = json_object();
    return w;
}

void vd_st_writer_meta(vd_st_writer *w, const char *key, const char *value)
{
    json_object_set_new(w->meta, key, json_string(value));
}

static writer_entry *writer_push(vd_st_writer *w, const char *name, vd_st_dtype dtype, int ndim,
                                 const int64_t *shape)
{
    if (w->count == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->entries = vd_realloc(w->entries, (size_t)w->cap * sizeof *w->entries);
    }
    writer_entry *e = &w->entries[w->count++];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    e->dtype = dtype;
    e->ndim = ndim;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        e->shape[i] = shape[i];
        n *= shape[i];
    }
    e->nbytes = (size_t)n * vd_st_dtype_size(dtype);
    e->data = vd_malloc(e->nbytes);
    return e;
}

void vd_st_writer_add_f32(vd_st_writer *w, const char *name, vd_st_dtype dtype, const float *data,
                          int ndim, const int64_t *shape)
{
    writer_entry *e = writer_push(w, name, dtype, ndim, shape);
    size_t n = e->nbytes / vd_st_dtype_size(dtype);
    if (dtype == VD_ST_BF16) {
        for (size_t i = 0; i < n; i++) {
            uint16_t b = vd_f32_to_bf16(data[i]);
            e->data[2 * i] = (uint8_t)b;
            e->data[2 * i + 1] = (uint8_t)(b >> 8);
        }
    } else if (dtype == VD_ST_F8_E4M3) { /* the largest magnitude becomes 448 */
        float largest = 0.0f;
        for (size_t i = 0; i < n; i++) largest = fmaxf(largest, fabsf(data[i]));
        float scale = largest > 0.0f ? largest / 448.0f : 1.0f;
        for (size_t i = 0; i < n; i++) e->data[i] = vd_f32_to_e4m3(data[i] / scale);
        char key[512], value[32];
        snprintf(key, sizeof key, "%s%s", VD_ST_SCALE_PREFIX, name);
        snprintf(value, sizeof value, "%.9g", (double)scale);
        vd_st_writer_meta(w, key, value);
    } else {
        memcpy(e->data, data, e->nbytes); /* F32 */
    }
}

void vd_st_writer_add_raw(vd_st_writer *w, const char *name, vd_st_dtype dtype, const void *data,
                          int ndim, const int64_t *shape)
{
    writer_entry *e = writer_push(w, name, dtype, ndim, shape);
    memcpy(e->data, data, e->nbytes);
}

/* Writes entries [first, last) to path (a temporary file, fsync'd, then renamed), with meta (may
 * be NULL) as the metadata. */
static int save_entries(const vd_st_writer *w, int first, int last, json_t *meta, const char *path, char *err,
                        size_t errlen)
{
    json_t *root = json_object();
    if (meta && json_object_size(meta)) json_object_set(root, "__metadata__", meta);
    size_t offset = 0;
    for (int i = first; i < last; i++) {
        writer_entry *e = &w->entries[i];
        json_t *shape = json_array();
        for (int d = 0; d < e->ndim; d++) json_array_append_new(shape, json_integer(e->shape[d]));
        json_t *t = json_pack("{s:s, s:o, s:[I,I]}", "dtype", dtype_name(e->dtype), "shape", shape,
                              "data_offsets", (json_int_t)offset, (json_int_t)(offset + e->nbytes));
        json_object_set_new(root, e->name, t);
        offset += e->nbytes;
    }
    char *header = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    size_t hlen = strlen(header), padded = (hlen + 7) & ~(size_t)7;

    size_t plen = strlen(path);
    char *tmp = vd_malloc(plen + 16);
    snprintf(tmp, plen + 16, "%s.tmpXXXXXX", path);
    int fd = mkstemp(tmp);
    int rc = 0;
    if (fd < 0) {
        rc = vd_fail(err, errlen, "%s: cannot create temporary file: %s", path, strerror(errno));
    } else {
        FILE *fp = fdopen(fd, "wb");
        uint8_t len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
        int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(header, 1, hlen, fp) == hlen;
        for (size_t i = hlen; ok && i < padded; i++) ok = fputc(' ', fp) != EOF;
        for (int i = first; ok && i < last; i++)
            ok = fwrite(w->entries[i].data, 1, w->entries[i].nbytes, fp) == w->entries[i].nbytes;
        ok = ok && fflush(fp) == 0 && fsync(fileno(fp)) == 0;
        ok = (fclose(fp) == 0) && ok;
        if (!ok || rename(tmp, path) != 0) {
            rc = vd_fail(err, errlen, "%s: write failed: %s", path, strerror(errno));
            unlink(tmp);
        } else {
            (void)chmod(path, 0644);
        }
    }
    free(tmp);
    free(header);
    return rc;
}

int vd_st_writer_save(vd_st_writer *w, const char *path, char *err, size_t errlen)
{
    return save_entries(w, 0, w->count, w->meta, path, err, errlen);
}

int vd_st_writer_save_parts(vd_st_writer *w, const char *path, size_t max_bytes, char *err, size_t errlen)
{
    /* group the tensors in order: a tensor's share of a file is its bytes and, generously, its
     * line of the header */
    char *meta_text = json_dumps(w->meta, JSON_COMPACT);
    size_t reserve = 8 + strlen(meta_text) + 4096; /* the length, the metadata, the list of parts */
    free(meta_text);
    int *starts = vd_malloc((size_t)(w->count + 2) * sizeof *starts), parts = 0;
    size_t used = reserve;
    starts[parts++] = 0;
    for (int i = 0; i < w->count; i++) {
        size_t cost = w->entries[i].nbytes + strlen(w->entries[i].name) + 128;
        if (cost + 8 > max_bytes || (i == 0 && cost + reserve > max_bytes)) {
            free(starts);
            return vd_fail(err, errlen, "%s: tensor %s does not fit in a file of %zu bytes", path, w->entries[i].name,
                           max_bytes);
        }
        if (used + cost > max_bytes) starts[parts++] = i, used = 8;
        used += cost;
    }
    starts[parts] = w->count;
    if (parts == 1) {
        free(starts);
        return vd_st_writer_save(w, path, err, errlen);
    }
    /* the parts first, so that the first file never names a part not yet written */
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    size_t stem = strlen(path), dir_len = (size_t)(base - path);
    if (stem >= 12 && strcmp(path + stem - 12, ".safetensors") == 0) stem -= 12;
    size_t name_len = stem - dir_len + 32;
    char *names = vd_calloc((size_t)parts, name_len), *part_path = vd_malloc(stem + 32);
    int rc = 0;
    for (int k = 1; k < parts && rc == 0; k++) {
        char *name = names + (size_t)k * name_len;
        snprintf(name, name_len, "%.*s-part-%d.safetensors", (int)(stem - dir_len), base, k + 1);
        snprintf(part_path, stem + 32, "%.*s%s", (int)dir_len, path, name);
        rc = save_entries(w, starts[k], starts[k + 1], NULL, part_path, err, errlen);
    }
    if (rc == 0) {
        size_t text_len = 1;
        for (int k = 1; k < parts; k++) text_len += strlen(names + (size_t)k * name_len) + 1;
        char *text = vd_calloc(1, text_len);
        for (int k = 1; k < parts; k++) {
            if (k > 1) strcat(text, ",");
            strcat(text, names + (size_t)k * name_len);
        }
        json_t *meta = json_deep_copy(w->meta);
        json_object_set_new(meta, VD_ST_PARTS_KEY, json_string(text));
        rc = save_entries(w, 0, starts[1], meta, path, err, errlen);
        json_decref(meta);
        free(text);
    }
    free(names);
    free(part_path);
    free(starts);
    return rc;
}

void vd_st_writer_free(vd_st_writer *w)
{
    if (!w) return;
    for (int i = 0; i < w->count; i++) {
        free(w->entries[i].name);
        free(w->entries[i].data);
    }
    free(w->entries);
    json_decref(w->meta);
    free(w);
}
