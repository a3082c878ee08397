/* random.h: the counter-based generator behind every random number the project draws, written
 * once for the host and for CUDA device code (cuda_ops.cu includes it too).
 *
 * Value i of stream `seed` is a pure function of (seed, i): a SplitMix64-style hash of the pair,
 * so any slice can be drawn without drawing what comes before it, and a seed gives the same
 * numbers on every machine. Normals come from Box-Muller over consecutive pairs of uniforms. The
 * device's double-precision log, sine and cosine may round differently from the host's C
 * library, so a device normal can differ from the host's in its last float bit; test_cuda_ops
 * counts how often. */
#ifndef VD_RANDOM_H
#define VD_RANDOM_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define VD_RANDOM_FN __host__ __device__ static inline
#else
#define VD_RANDOM_FN static inline
#endif

VD_RANDOM_FN uint64_t vd_rng_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Value `index` of stream `seed`, 64 random bits. */
VD_RANDOM_FN uint64_t vd_rng_u64(uint64_t seed, uint64_t index)
{
    return vd_rng_mix64(vd_rng_mix64(seed + 0x9e3779b97f4a7c15ull) ^ (index * 0xd1b54a32d192ed03ull + 0x632be59bd9b4e019ull));
}

/* Uniform in (0, 1), never 0 or 1. */
VD_RANDOM_FN double vd_rng_uniform(uint64_t seed, uint64_t index)
{
    return ((double)(vd_rng_u64(seed, index) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* Standard normal numbers 2 pair and 2 pair + 1 of stream seed. */
VD_RANDOM_FN void vd_rng_normal_pair(uint64_t seed, uint64_t pair, float *first, float *second)
{
    double u1 = vd_rng_uniform(seed, 2 * pair), u2 = vd_rng_uniform(seed, 2 * pair + 1);
    double r = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
    *first = (float)(r * cos(a));
    *second = (float)(r * sin(a));
}

#endif
