/* rng.h: the engine's counter-based random numbers.
 *
 * Random numbers: value i of stream (seed) is a pure function of (seed, i) — a SplitMix64-style
 * hash of the pair — so any slice can be drawn without drawing what comes before it, and a seed
 * gives the same numbers on every machine. Normals come from Box-Muller over consecutive pairs.
 * Noise for sampling is drawn on the host and uploaded, so every backend sees the same bits. */
#ifndef VD_RNG_H
#define VD_RNG_H

#include <stddef.h>
#include <stdint.h>

uint64_t vd_rng_u64(uint64_t seed, uint64_t index);
/* Uniform in (0, 1), never 0 or 1. */
double vd_rng_uniform(uint64_t seed, uint64_t index);
/* out[i] = standard normal number (offset + i) of stream seed; offset must be even. */
void vd_rng_normal(uint64_t seed, uint64_t offset, float *out, size_t n);

#endif
