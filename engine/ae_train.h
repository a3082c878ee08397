/* ae_train.h: training the autoencoder — a forward pass that keeps what the backward needs, the
 * explicit backward (llm.c style: one backward per forward step, in reverse), the per-frame
 * reconstruction loss, and an AdamW step over the autoencoder's parameters. */
#ifndef VD_AE_TRAIN_H
#define VD_AE_TRAIN_H

#include "model.h"

typedef struct {
    float lr, beta1, beta2, eps, weight_decay, clip_norm; /* clip_norm <= 0: no clipping */
} vd_adamw_config;

typedef struct {
    vd_model *m;
    float *grads;       /* backend memory, the model's parameter layout */
    float *adam_m, *adam_v;
    int step;           /* optimizer steps taken */
} vd_ae_trainer;

/* The model must be attached to a backend with backward ops (and, for vd_ae_loss_and_grads,
 * have an autoencoder). */
void vd_ae_trainer_init(vd_ae_trainer *t, vd_model *m);
void vd_ae_trainer_free(vd_ae_trainer *t);

/* Loss = mean((decode(encode(img)) - img)^2) over img (B, 3, H, W) in backend memory; the
 * gradients of every autoencoder parameter are accumulated into t->grads (zero them first with
 * vd_ae_zero_grads). Returns the loss. */
float vd_ae_loss_and_grads(vd_ae_trainer *t, const float *img, int B, int H, int W);
void vd_ae_zero_grads(vd_ae_trainer *t);

/* One AdamW step over the autoencoder's parameters with the accumulated gradients (clipped to
 * clip_norm by their global norm); returns that norm before clipping. Declares the weights
 * changed to the backend. */
double vd_ae_optimizer_step(vd_ae_trainer *t, const vd_adamw_config *cfg);

/* The smallest range [begin, end) of the parameter buffer holding every parameter whose name
 * starts with one of the count prefixes (begin > end when none does). */
void vd_param_range(const vd_model *m, const char *const *prefixes, int count, size_t *begin, size_t *end);
/* The same AdamW step over the floats [begin, end) of the parameter buffer (the trainer's buffers
 * serve any part of the model: the denoiser's driver steps the text encoder and UNet with it). */
double vd_adamw_range_step(vd_ae_trainer *t, const vd_adamw_config *cfg, size_t begin, size_t end);

#endif
