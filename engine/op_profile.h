/* op_profile.h: a backend wrapper that times every op of the backend it wraps (synchronising
 * after each, so the times are real but the run is slower) and reports time, calls and share
 * per op — where a denoiser step spends its time. */
#ifndef VD_OP_PROFILE_H
#define VD_OP_PROFILE_H

#include <stdio.h>

#include "backend.h"

/* The wrapper owns nothing of inner: destroy it before inner. */
vd_backend *vd_backend_profiled(vd_backend *inner);
void vd_profile_reset(vd_backend *profiled);
void vd_profile_print(vd_backend *profiled, FILE *out);

#endif
