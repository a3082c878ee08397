/* flop_count.h: a backend that counts matrix-product FLOPs instead of computing (flop_count.c). */
#ifndef VD_FLOP_COUNT_H
#define VD_FLOP_COUNT_H

#include "backend.h"
#include "config.h"

vd_backend *vd_backend_flop_counter(void);
/* FLOPs counted since the last call. */
double vd_flop_counter_take(vd_backend *be);

/* Matrix-product FLOPs of one UNet forward over N videos of cfg's frames and latent size; 0 when
 * the config cannot be built. */
double vd_unet_step_flops(const vd_model_config *cfg, int N);

#endif
