/* cpu_internal.h: what the two CPU backends (cpu_reference.c and cpu_fast.c) share. Both keep
 * tensors in ordinary host memory, so their memory functions are the same plain calls; they are
 * defined once in cpu_reference.c, as are the two ops the fast backend borrows from the reference. */
#ifndef VD_CPU_INTERNAL_H
#define VD_CPU_INTERNAL_H

#include "backend.h"

void *cpu_alloc(vd_backend *be, size_t bytes);
void cpu_release(vd_backend *be, void *ptr);
void cpu_upload(vd_backend *be, void *dst, const void *host_src, size_t bytes);
void cpu_download(vd_backend *be, void *host_dst, const void *src, size_t bytes);
void cpu_copy(vd_backend *be, void *dst, const void *src, size_t bytes);
void cpu_zero(vd_backend *be, void *dst, size_t bytes);
void cpu_synchronize(vd_backend *be);
void cpu_declare_constant(vd_backend *be, const void *ptr, size_t bytes);
void cpu_memory_info(vd_backend *be, size_t *used, size_t *total);

/* The reference embedding backward, which the fast backend uses as it is. */
void cpu_ref_embedding_backward(vd_backend *be, float *dtable, const float *dy, const int32_t *ids,
                                int n, int dim);

/* y[i] += scale * normal number i of stream seed (random.h), for both CPU backends. */
void cpu_add_random_normal(vd_backend *be, float *y, float scale, uint64_t seed, size_t n);

/* Fills the memory members of be with the functions above. */
void cpu_set_memory_ops(vd_backend *be);

#endif
