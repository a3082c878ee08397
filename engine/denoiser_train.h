/* denoiser_train.h: the denoiser's training pass — the text encoder and the 3D UNet together,
 * under the v-prediction loss: a forward pass that keeps what the backward needs and the
 * explicit backward of every layer (llm.c style, as ae_train.h does for the autoencoder). */
#ifndef VD_DENOISER_TRAIN_H
#define VD_DENOISER_TRAIN_H

#include <stdint.h>

#include "model.h"

/* loss = mean(weight (unet(x_in, t, text(ids)) - v_target)^2) with
 *   ids      (N, max_tokens) int32 token ids,
 *   x_in     (N, T, in_channels, h, w) the UNet's input (noisy latent, condition, mask),
 *   t        (N) timesteps,
 *   v_target (N, T, out_channels, h, w),
 *   weight   (N, T, out_channels, h, w), or NULL for the plain mean,
 * all in the model's backend memory. The gradients of every text.* and unet.* parameter are
 * accumulated (+=) into grads (backend memory, m->total floats in the model's parameter layout;
 * other parameters' entries are left alone). The model must have a text encoder and a UNet and
 * be attached to a backend with backward ops. Returns the loss. */
float vd_denoiser_loss_and_grads(vd_model *m, float *grads, const int32_t *ids, const float *x_in, const float *t,
                                 const float *v_target, const float *weight, int N, int T, int h, int w);

/* The same pass in parts, for losses on more than the prediction (distill.c): a forward of the
 * text encoder, the time embedding and the UNet's stages 0..stop-1 of its stage plan (all of them
 * when stop is 0 or past the end), keeping what the backward needs until the pass is freed. */
typedef struct vd_denoiser_pass vd_denoiser_pass;

vd_denoiser_pass *vd_denoiser_forward(vd_model *m, const int32_t *ids, const float *x_in, const float *t, int N, int T,
                                      int h, int w, int stop);
/* Stages run, their plan entries, and stage i's output (N*T, co, H, W) with its size in floats
 * (the last stage's is the prediction when the whole plan ran). */
int vd_denoiser_pass_stages(const vd_denoiser_pass *p);
const vd_unet_stage *vd_denoiser_pass_stage(const vd_denoiser_pass *p, int i);
const float *vd_denoiser_pass_output(const vd_denoiser_pass *p, int i, size_t *floats);
/* The backward: dlast is the last run stage's output gradient (taken over; NULL for zero),
 * extra[i] is added to stage i's output gradient where extra and extra[i] are not NULL. Parameter
 * gradients accumulate into grads (m->total floats); the input's gradient is written to dx_in
 * (N, T, in_channels, h, w) unless it is NULL. Once per pass. */
void vd_denoiser_backward(vd_denoiser_pass *p, float *grads, float *dlast, float *const *extra, float *dx_in);
void vd_denoiser_pass_free(vd_denoiser_pass *p);

#endif
