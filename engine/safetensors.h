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
 * keeps every file of a shipped model small. */
#ifndef VD_SAFETENSORS_H
#define VD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define VD_ST_MAX_DIMS 8
#define VD_ST_MAX_HEADER (64u << 20) /* larger headers are refused */

typedef enum { VD_ST_F32, VD_ST_F16, VD_ST_BF16, VD_ST_I32, VD_ST_I64, VD_ST_U8 } vd_st_dtype;

typedef struct {
    char *name;
    vd_st_dtype dtype;
    int ndim;
    int64_t shape[VD_ST_MAX_DIMS];
    size_t nbytes;
    const uint8_t *data; /* points into the file's bytes */
} vd_st_tensor;

#define VD_ST_PARTS_KEY "vdmini.parts"

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

/* Converts a floating tensor (f32, f16 or bf16) to fp32 into dst (numel floats). Returns 0, or
 * -1 for a non-floating dtype. */
int vd_st_to_f32(const vd_st_tensor *t, float *dst);

/* Writing: collect tensors, then write atomically (temporary file, fsync, rename). Data is
 * copied at add time. dtype VD_ST_BF16 converts fp32 input with round-to-nearest-even. */
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

#endif
