/* denoiser_train.h: the denoiser's training pass — the text encoder and the 3D UNet together,
 * under the v-prediction loss: a forward pass that keeps what the backward needs and the
 * explicit backward of every layer (llm.c style, as ae_train.h does for the autoencoder). */
#ifndef VD_DENOISER_TRAIN_H
#define VD_DENOISER_TRAIN_H

#include <stdint.h>

#include "model.h"

/* loss = mean((unet(x_in, t, text(ids)) - v_target)^2) with
 *   ids      (N, max_tokens) int32 token ids,
 *   x_in     (N, T, in_channels, h, w) the UNet's input (noisy latent, condition, mask),
 *   t        (N) timesteps,
 *   v_target (N, T, out_channels, h, w),
 * all in the model's backend memory. The gradients of every text.* and unet.* parameter are
 * accumulated (+=) into grads (backend memory, m->total floats in the model's parameter layout;
 * other parameters' entries are left alone). The model must have a text encoder and a UNet and
 * be attached to a backend with backward ops. Returns the loss. */
float vd_denoiser_loss_and_grads(vd_model *m, float *grads, const int32_t *ids, const float *x_in, const float *t,
                                 const float *v_target, int N, int T, int h, int w);

#endif
