/* safetensors.h: reading and writing safetensors files
 * (8-byte little-endian header length, a JSON header, then the tensor bytes).
 *
 * The reader checks everything against the format and the file: header length within the
 * file and a limit, valid JSON, known dtypes, shapes whose element count times dtype size equals
 * the byte range, offsets inside the data area, ranges that do not overlap. A malformed file is
 * rejected with a message naming the problem; nothing in it can crash the reader.
 *
 * A file may be split into parts: the first names the others in its metadata under
 * VD_ST_PARTS_KEY ("a-part-2.safetensors,a-part-3.safetensors": file names beside it, no folders),
 * each a safetensors file of more tensors; reading the first reads them all as one file (a
 * tensor in two of them, a missing part or a part naming parts of its own is an error). This
 * keeps every file of a shipped model small.
 *
 * F8_E4M3 tensors (1 sign, 4 exponent, 3 mantissa bits, bias 7, largest 448, no infinities)
 * carry a scale each: the metadata key VD_ST_SCALE_PREFIX + the tensor's name holds a positive
 * decimal number that every stored value is multiplied by. Writing picks it so that the
 * tensor's largest magnitude becomes 448. An F8 tensor without a scale, or a scale for a tensor
 * that is not F8, is an error. */
#ifndef VD_SAFETENSORS_H
#define VD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define VD_ST_MAX_DIMS 8
#define VD_ST_MAX_HEADER (64u << 20) /* larger headers are refused */

typedef enum { VD_ST_F32, VD_ST_F16, VD_ST_BF16, VD_ST_F8_E4M3, VD_ST_I32, VD_ST_I64, VD_ST_U8 } vd_st_dtype;

typedef struct {
    char *name;
    vd_st_dtype dtype;
    int ndim;
    int64_t shape[VD_ST_MAX_DIMS];
    size_t nbytes;
    const uint8_t *data; /* points into the file's bytes */
    float scale;         /* F8_E4M3: what each stored value is multiplied by; else 1 */
} vd_st_tensor;

#define VD_ST_PARTS_KEY "vdmini.parts"
#define VD_ST_SCALE_PREFIX "vdmini.scale."

typedef struct {
    uint8_t *bytes; /* the whole file */
    size_t size;
    uint8_t **part_bytes; /* each part's whole file, whose tensors follow the first file's */
    int part_count;
    vd_st_tensor *tensors;
    int count;
    char **meta_keys, **meta_values; /* __metadata__ (string to string) */
    int meta_count;
} vd_st_file;

/* Returns 0, or -1 with a message in err. The file (and its parts) is read whole into memory. */
int vd_st_read(const char *path, vd_st_file *out, char *err, size_t errlen);
/* Same, from bytes in memory (copied). */
int vd_st_parse(const uint8_t *bytes, size_t size, vd_st_file *out, char *err, size_t errlen);
void vd_st_free(vd_st_file *f);

const vd_st_tensor *vd_st_find(const vd_st_file *f, const char *name);
const char *vd_st_meta(const vd_st_file *f, const char *key); /* NULL when absent */
int64_t vd_st_numel(const vd_st_tensor *t);
size_t vd_st_dtype_size(vd_st_dtype dtype);

/* Converts a floating tensor (f32, f16, bf16 or f8_e4m3 with its scale) to fp32 into dst (numel
 * floats). Returns 0, or -1 for a non-floating dtype. */
int vd_st_to_f32(const vd_st_tensor *t, float *dst);

/* Writing: collect tensors, then write atomically (temporary file, fsync, rename). Data is
 * copied at add time. dtypes VD_ST_BF16 and VD_ST_F8_E4M3 (scaled, above) convert fp32 input with
 * round-to-nearest-even. */
typedef struct vd_st_writer vd_st_writer;
vd_st_writer *vd_st_writer_new(void);
void vd_st_writer_meta(vd_st_writer *w, const char *key, const char *value);
void vd_st_writer_add_f32(vd_st_writer *w, const char *name, vd_st_dtype dtype, const float *data,
                          int ndim, const int64_t *shape);
void vd_st_writer_add_raw(vd_st_writer *w, const char *name, vd_st_dtype dtype, const void *data,
                          int ndim, const int64_t *shape);
int vd_st_writer_save(vd_st_writer *w, const char *path, char *err, size_t errlen);
/* The same, split into parts of at most max_bytes each (path, then path less ".safetensors"
 * plus "-part-2.safetensors", ...) where the whole is larger; the metadata goes in the first. A
 * tensor larger than max_bytes is an error. */
int vd_st_writer_save_parts(vd_st_writer *w, const char *path, size_t max_bytes, char *err, size_t errlen);
void vd_st_writer_free(vd_st_writer *w);

/* bf16 helpers shared with the kernels' tests. */
uint16_t vd_f32_to_bf16(float x);
float vd_bf16_to_f32(uint16_t x);
/* F8_E4M3 (unscaled): rounds to nearest even, saturating at +-448; NaN stays NaN. */
uint8_t vd_f32_to_e4m3(float x);
float vd_e4m3_to_f32(uint8_t x);

#endif
