/* rng.c: a slice of the counter-based generator's normals, on the host (see rng.h). */
#include "rng.h"

void vd_rng_normal(uint64_t seed, uint64_t offset, float *out, size_t n)
{
    for (size_t i = 0; i < n; i += 2) {
        float second;
        vd_rng_normal_pair(seed, (offset + i) / 2, &out[i], &second);
        if (i + 1 < n) out[i + 1] = second;
    }
}
