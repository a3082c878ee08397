/* cuda_absent.c: the CUDA constructor in builds without CUDA. It always declines, so callers fall
 * back to a CPU backend exactly as they would on a machine without a GPU. */
#include <stdio.h>

#include "backend.h"

vd_backend *vd_backend_cuda(int device, char *err, size_t errlen)
{
    (void)device;
    if (err && errlen) snprintf(err, errlen, "built without CUDA support");
    return NULL;
}
