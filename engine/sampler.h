/* sampler.h: the v-prediction noise schedule and the DDIM and Euler time grids
 * (docs/architecture.md, "Diffusion"). Both samplers take the same first-order step; a plan
 * holds, for each step, the timestep the model sees and the two coefficients of the update
 * z <- a*z + b*v, so the caller applies a step with one axpby on any backend. */
#ifndef VD_SAMPLER_H
#define VD_SAMPLER_H

#include "config.h"
#include "vdmini.h"

typedef struct {
    int steps;
    float *timestep; /* (steps) the model's timestep at each step */
    float *coef_z;   /* (steps) a */
    float *coef_v;   /* (steps) b */
} vd_sampler_plan;

int vd_sampler_plan_make(const vd_diffusion_config *d, vd_sampler_kind kind, int steps,
                         vd_sampler_plan *plan);
void vd_sampler_plan_free(vd_sampler_plan *plan);

/* ᾱ over the training table (train_steps doubles, malloc'd). */
double *vd_alphas_cumprod(const vd_diffusion_config *d);

#endif
