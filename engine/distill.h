/* distill.h: VDMini's ICMD consistency loss — what a distillation step adds to the student's
 * v-prediction task loss, and the discriminator it trains on the side (DESIGN.md section 1).
 *
 *   loss = task + lambda_icd ICD + lambda_mca MCA
 *
 * ICD, individual content distillation: the teacher sees the student's noisy input, timestep and
 * text. At every UNet level, the output of the level's last down block and of its last up block
 * is a feature the two models can share; ICD is the mean over the shared features (same stage
 * kind and level in both, same shape) of the mean squared difference between the student's and
 * the teacher's feature. Every value belongs to one frame, so this is the per-frame L2 averaged
 * over frames: no feature is mixed across frames.
 *
 * MCA, multi-frame content adversarial: a discriminator whose backbone is the teacher's encoder
 * half (the UNet's stages before the mid block, or before the first up block), frozen. At each level, the output of the level's
 * last stage before the downsample (or the mid block) feeds two trainable heads:
 *   spatial, per frame: 1x1 conv (C -> C), SiLU, 1x1 conv (C -> 1), mean over pixels;
 *   temporal, across frames: the feature's mean over pixels (C per frame), a temporal conv of
 *   kernel 3 (C -> C), SiLU, a linear map (C -> 1).
 * D(clip) is the mean of every head's per-frame logit over frames, heads and levels. Both models'
 * clean predictions x0 = sqrt(abar_t) z_t - sqrt(1 - abar_t) v are re-noised to one random
 * timestep t' per clip (the same noise for both) and go into the backbone with the clip's
 * condition channels, t' and the text: the teacher's are real, the student's fake. The heads
 * minimise the hinge loss mean(relu(1 - D(real))) + mean(relu(1 + D(fake))) with their own AdamW
 * (betas 0.5 and 0.999, no weight decay); the student's MCA term is -mean(D(fake)), whose gradient
 * reaches the student's prediction through the frozen backbone.
 *
 * Guidance distillation (vd_distill_set_guided_target): the task term's target is then not the
 * data's v but the teacher's guided prediction on the same input,
 *   v = v_u + g (v_c - v_u) + a (v_c - v_guide),
 * the sampler's (sampler.h) with the teacher's conditional and empty-prompt rows and a guide's
 * conditional row, and MCA's real side is that guided prediction. A student so trained samples
 * with one row a step (guidance 1), where its teacher needs two or three. */
#ifndef VD_DISTILL_H
#define VD_DISTILL_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* Clips a distillation micro-batch may hold. */
#define VD_DISTILL_MAX_CLIPS 256

typedef struct vd_distill vd_distill;

typedef struct {
    float task, icd, mca; /* the student's loss terms, unweighted */
    float disc;           /* the discriminator's hinge loss */
} vd_distill_terms;

/* Loads the teacher from teacher_path onto be and builds the discriminator's heads for it (random,
 * from seed). The student must have the teacher's text encoder config, UNet input and output
 * channels and frame size. 0 for lambda switches its term off (the teacher then is not asked for
 * the features, or the discriminator is not run). NULL with a message on failure. */
vd_distill *vd_distill_open(const char *teacher_path, const vd_model *student, vd_backend *be, float lambda_icd,
                            float lambda_mca, float disc_lr, uint64_t seed, char *err, size_t errlen);
void vd_distill_free(vd_distill *d);

/* Makes the task target the teacher's guided prediction at guidance g (> 1), moved away from the
 * guide at guide_path (a weaker model of the teacher's latents, text length and schedule; NULL
 * or "" for none) by guide_scale a. 0, or -1 with a message (the guide does not load or fit). */
int vd_distill_set_guided_target(vd_distill *d, float guidance, const char *guide_path, float guide_scale, char *err,
                                 size_t errlen);

/* The MCA's re-noising of one micro-batch: a timestep per clip (host) and the noise
 * (N, T, out_channels, h, w) in backend memory. Unused when MCA is off. */
typedef struct {
    const float *t_host;
    const float *eps;
} vd_distill_renoise;

/* The student's loss on one micro-batch (inputs as vd_denoiser_loss_and_grads, in backend
 * memory, weight, or NULL, weighing the task term alone; t_host the timesteps on the host and
 * abar the schedule's cumulative alphas, for x0; v_target is unused under a guided target):
 * student gradients accumulate into grads, the heads' gradients into the discriminator's own
 * buffer (zeroed by vd_distill_disc_step). Returns task + lambda_icd ICD + lambda_mca MCA; terms
 * gets each term. */
float vd_distill_loss_and_grads(vd_distill *d, vd_model *student, float *grads, const int32_t *ids, const float *x_in,
                                const float *t, const float *t_host, const double *abar, const float *v_target,
                                const float *weight, int N, int T, int h, int w, const vd_distill_renoise *renoise,
                                vd_distill_terms *terms);

/* One AdamW step of the heads on their accumulated gradients (scaled by grad_scale), then zeroes
 * them. */
void vd_distill_disc_step(vd_distill *d, float grad_scale);
/* The heads' accumulated gradients in backend memory (vd_distill_disc_size floats): a run spread
 * over several devices adds them up across its replicas before the step. */
float *vd_distill_disc_grads(vd_distill *d);

/* The heads' parameters: count, and a copy to or from host memory — and their accumulated
 * gradients. The layout, level by level from the shallowest: the spatial head's conv weights
 * (C, C, 1, 1) and bias (C), its second conv's (1, C, 1, 1) and (1), the temporal head's conv
 * weights (C, C, 3) and bias (C), its linear map's (1, C) and (1). */
size_t vd_distill_disc_size(const vd_distill *d);
void vd_distill_disc_get(const vd_distill *d, float *host, float *grads_host);
void vd_distill_disc_set(vd_distill *d, const float *host);

/* The discriminator's state (heads, AdamW moments, step) as a safetensors file, and back. 0, or -1
 * with a message. */
int vd_distill_save(const vd_distill *d, const char *path, char *err, size_t errlen);
int vd_distill_load(vd_distill *d, const char *path, char *err, size_t errlen);

#endif
