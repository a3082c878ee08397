/* rng.h: the engine's random numbers: the counter-based generator of kernels/random.h
 * (vd_rng_u64, vd_rng_uniform, vd_rng_normal_pair) and a host loop that fills a slice with its
 * normals. Initial latents and training noise are drawn on the host and uploaded, so every
 * backend starts from the same bits; a sampler step's fresh noise is drawn where the latents live
 * (the backend's add_random_normal), from the same streams. */
#ifndef VD_RNG_H
#define VD_RNG_H

#include <stddef.h>
#include <stdint.h>

#include "random.h"

/* out[i] = standard normal number (offset + i) of stream seed; offset must be even. */
void vd_rng_normal(uint64_t seed, uint64_t offset, float *out, size_t n);

#endif
