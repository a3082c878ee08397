/* pool.c: backend buffers reused by size (see pool.h). */
#include "pool.h"
#include "common.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static size_t hash_bits(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x;
}

static int find_ptr_slot(const vd_pool *p, const float *ptr)
{
    size_t mask = (size_t)p->by_ptr_size - 1, i = hash_bits((uint64_t)(uintptr_t)ptr) & mask;
    while (p->by_ptr[i] >= 0 && p->entries[p->by_ptr[i]].ptr != ptr) i = (i + 1) & mask;
    return (int)i;
}

static vd_pool_size_list *find_size(vd_pool *p, size_t floats)
{
    size_t mask = (size_t)p->sizes_size - 1, i = hash_bits(floats) & mask;
    while (p->sizes[i].floats && p->sizes[i].floats != floats) i = (i + 1) & mask;
    return &p->sizes[i];
}

/* Keeps both tables at most half full, rebuilding them from the entries when they grow. */
static void grow_tables(vd_pool *p)
{
    if (2 * (p->count + 1) > p->by_ptr_size) {
        free(p->by_ptr);
        p->by_ptr_size = p->by_ptr_size ? 2 * p->by_ptr_size : 256;
        p->by_ptr = vd_malloc((size_t)p->by_ptr_size * sizeof *p->by_ptr);
        memset(p->by_ptr, 0xff, (size_t)p->by_ptr_size * sizeof *p->by_ptr);
        for (int e = 0; e < p->count; e++) p->by_ptr[find_ptr_slot(p, p->entries[e].ptr)] = e;
    }
    if (2 * (p->sizes_used + 1) > p->sizes_size) {
        vd_pool_size_list *old = p->sizes;
        int old_size = p->sizes_size;
        p->sizes_size = p->sizes_size ? 2 * p->sizes_size : 64;
        p->sizes = vd_calloc((size_t)p->sizes_size, sizeof *p->sizes);
        for (int i = 0; i < old_size; i++)
            if (old[i].floats) *find_size(p, old[i].floats) = old[i];
        free(old);
    }
}

float *vd_pool_take(vd_pool *p, vd_backend *be, size_t n)
{
    grow_tables(p);
    vd_pool_size_list *list = find_size(p, n);
    if (list->floats && list->head >= 0) {
        vd_pool_entry *e = &p->entries[list->head];
        list->head = e->next_free;
        e->in_use = 1;
        return e->ptr;
    }
    if (!list->floats) *list = (vd_pool_size_list){.floats = n, .head = -1}, p->sizes_used++;
    if (p->count == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        p->entries = vd_realloc(p->entries, (size_t)p->cap * sizeof *p->entries);
    }
    int index = p->count++;
    p->entries[index] = (vd_pool_entry){.ptr = be->alloc(be, n * sizeof(float)), .floats = n, .in_use = 1,
                                        .next_free = -1};
    p->by_ptr[find_ptr_slot(p, p->entries[index].ptr)] = index;
    return p->entries[index].ptr;
}

void vd_pool_give(vd_pool *p, const float *ptr)
{
    if (!p->by_ptr_size || !ptr) return;
    int index = p->by_ptr[find_ptr_slot(p, ptr)];
    if (index < 0 || !p->entries[index].in_use) return;
    vd_pool_entry *e = &p->entries[index];
    vd_pool_size_list *list = find_size(p, e->floats);
    e->in_use = 0;
    e->next_free = list->head;
    list->head = index;
}

size_t vd_pool_bytes(const vd_pool *p)
{
    size_t floats = 0;
    for (int i = 0; i < p->count; i++) floats += p->entries[i].floats;
    return floats * sizeof(float);
}

void vd_pool_clear(vd_pool *p, vd_backend *be)
{
    for (int i = 0; i < p->count; i++) be->release(be, p->entries[i].ptr);
    free(p->entries), free(p->by_ptr), free(p->sizes);
    memset(p, 0, sizeof *p);
}
