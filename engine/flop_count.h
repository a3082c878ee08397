/* flop_count.h: a backend that counts matrix-product FLOPs instead of computing (flop_count.c). */
#ifndef VD_FLOP_COUNT_H
#define VD_FLOP_COUNT_H

#include "backend.h"

vd_backend *vd_backend_flop_counter(void);
/* FLOPs counted since the last call. */
double vd_flop_counter_take(vd_backend *be);

#endif
