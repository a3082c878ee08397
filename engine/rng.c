/* rng.c: counter-based random numbers (see rng.h). */
#include "rng.h"

#include <math.h>

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t vd_rng_u64(uint64_t seed, uint64_t index)
{
    return mix64(mix64(seed + 0x9e3779b97f4a7c15ull) ^ (index * 0xd1b54a32d192ed03ull + 0x632be59bd9b4e019ull));
}

double vd_rng_uniform(uint64_t seed, uint64_t index)
{
    return ((double)(vd_rng_u64(seed, index) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

void vd_rng_normal(uint64_t seed, uint64_t offset, float *out, size_t n)
{
    for (size_t i = 0; i < n; i += 2) {
        uint64_t pair = (offset + i) / 2;
        double u1 = vd_rng_uniform(seed, 2 * pair), u2 = vd_rng_uniform(seed, 2 * pair + 1);
        double r = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
        out[i] = (float)(r * cos(a));
        if (i + 1 < n) out[i + 1] = (float)(r * sin(a));
    }
}
