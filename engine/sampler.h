/* sampler.h: the v-prediction noise schedule and the DDIM and Euler time grids
 * (docs/architecture.md, "Diffusion"). Both samplers take the same first-order step; a plan
 * holds, for each step, the timestep the model sees and the two coefficients of the update
 * z <- a*z + b*v, so the caller applies a step with one axpby on any backend. For image-to-video
 * the first frame's x0 is pinned to the condition latent c: its update is
 * z <- pin_c*c + pin_z*z + pin_v*v. DDIM with eta > 0 also adds fresh noise, sigma*xi, after
 * each update: the noise the step keeps from z shrinks so that the total stays the same. */
#ifndef VD_SAMPLER_H
#define VD_SAMPLER_H

#include "config.h"
#include "model.h"
#include "vdmini.h"

typedef struct {
    int steps;
    float *timestep; /* (steps) the model's timestep at each step */
    float *coef_z;   /* (steps) a */
    float *coef_v;   /* (steps) b */
    float *pin_c, *pin_z, *pin_v; /* (steps) the pinned first frame's three coefficients */
    float *sigma;  /* (steps) the fresh noise's scale: 0 everywhere unless DDIM with eta > 0 */
} vd_sampler_plan;

/* eta: DDIM's share of fresh noise, 0 (deterministic) to 1 (as much as the DDPM step); it must be
 * 0 for Euler. Returns 0, or -1 for steps outside [1, train_steps] or eta outside [0, 1] (or
 * above 0 with Euler). */
int vd_sampler_plan_make(const vd_diffusion_config *d, vd_sampler_kind kind, int steps, float eta,
                         vd_sampler_plan *plan);
void vd_sampler_plan_free(vd_sampler_plan *plan);

/* One video being denoised, as the batched step sees it. All pointers are in the model's
 * backend memory. */
typedef struct {
    float *z;                 /* (T, latent, h, w): the current latent, updated in place */
    const float *cond;        /* (T, latent + 1, h, w): condition latent and mask */
    const float *ctx;         /* (L, dim): the prompt's text encoding */
    const float *ctx_uncond;  /* (L, dim): the empty prompt's, or NULL to run without guidance */
    const float *ctx_guide;   /* (L, dim): the prompt in the guide model's text encoding, or NULL */
    const vd_sampler_plan *plan;
    int step;                 /* the next step of plan to take */
    float guidance;
    float guidance_rescale;   /* phi: the guided v times phi*rms(v_c)/rms(v_guided) + 1 - phi */
    float guide_scale;        /* a: a * (v_c - v_guide) added to the guided v (with ctx_guide) */
    int pin_first_frame;      /* image-to-video: frame 0's x0 is cond's latent at every step */
    uint64_t noise_seed;      /* keys the fresh noise of a plan with sigma: the backend draws the
                               * same numbers from it on every device (docs/architecture.md) */
} vd_latent_video;

/* Takes the next step of every video in one denoiser batch (1 row per video, 2 with guidance)
 * and advances each video's step. Videos may be at different steps and use different plans;
 * they must share T, h and w. With a guide model (a weaker version of m: the same latents,
 * text length and schedule), the videos that have ctx_guide also run it on their conditional
 * row, in a second batch, and move away from its prediction:
 * v = v_u + g (v_c - v_u) + a (v_c - v_guide). */
void vd_denoise_step(vd_model *m, vd_model *guide, vd_latent_video *videos, int n, int L, int T, int h, int w);

/* Runs a plan on N videos (video i's fresh noise, if the plan adds any, from noise_seed + i):
 * z (N, T, latent, h, w) is the starting noise and becomes the result;
 * cond (N, T, latent + 1, h, w) the condition latent and mask (a video whose mask is 1 is
 * image-to-video: its first frame is pinned); ctx (N, L, dim) the text, or
 * (2N, L, dim) — the prompts, then the empty prompts — when guidance > 1; guidance_rescale as in
 * vd_latent_video. With a guide (or NULL) and guide_scale > 0 each video also moves away from the
 * guide's prediction, which sees the same prompt rows. All in the model's backend memory.
 * Returns 0, or 1 when the progress function asked to stop. */
int vd_sample(vd_model *m, const vd_sampler_plan *plan, float *z, const float *cond, const float *ctx,
              int L, int N, int T, int h, int w, float guidance, float guidance_rescale, vd_model *guide,
              float guide_scale, uint64_t noise_seed, vd_progress_fn progress, void *user);

/* ᾱ over the training table (train_steps doubles, malloc'd). */
double *vd_alphas_cumprod(const vd_diffusion_config *d);

#endif
