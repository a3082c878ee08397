/* pool.h: a pool of backend buffers reused by exact size. A model's passes ask for the same
 * sizes step after step, so after the first step every request is served from the pool without
 * touching the backend's allocator (on CUDA, cudaMalloc and the synchronising cudaFree). Both
 * taking and giving back are constant time: free buffers sit on one list per size, and a hash of
 * the pointers finds a buffer's entry when it comes back. */
#ifndef VD_POOL_H
#define VD_POOL_H

#include <stddef.h>

#include "backend.h"

typedef struct {
    float *ptr;
    size_t floats;
    int in_use;
    int next_free; /* the next free entry of the same size, -1 at the end */
} vd_pool_entry;

typedef struct {
    size_t floats;
    int head; /* first free entry of this size, -1 when none */
} vd_pool_size_list;

typedef struct {
    vd_pool_entry *entries;
    int count, cap;
    int *by_ptr;  /* open addressing: entry index by pointer, -1 empty; by_ptr_size slots */
    int by_ptr_size;
    vd_pool_size_list *sizes; /* open addressing by size, floats 0 empty; sizes_size slots */
    int sizes_size, sizes_used;
} vd_pool;

/* A buffer of n floats (n > 0) in be's memory: a free one of that size, else a new one. */
float *vd_pool_take(vd_pool *p, vd_backend *be, size_t n);
/* Gives a buffer from vd_pool_take back; other pointers are ignored. */
void vd_pool_give(vd_pool *p, const float *ptr);
/* Bytes of the pool's buffers, taken or free: what it holds of the backend's memory. */
size_t vd_pool_bytes(const vd_pool *p);
/* Releases every buffer to be and empties the pool (it can be used again). */
void vd_pool_clear(vd_pool *p, vd_backend *be);

#endif
