/* small_model.h: the very small model the engine tests train, prune and analyse — autoencoder
 * channels [8, 16] on 32x32 images, text encoder dim 32 with one layer, UNet channels [16, 32]
 * with one block per level and attention on level 1, 4 frames of 16x16 latents. */
#ifndef VD_TEST_SMALL_MODEL_H
#define VD_TEST_SMALL_MODEL_H

#include "config.h"
#include "model.h"

/* Fills mc (free it with vd_config_free); tests adjust fields after. 0, or -1. */
static inline int small_model_config(vd_model_config *mc)
{
    if (vd_config_preset("tiny", mc)) return -1;
    mc->ae = (vd_ae_config){.present = 1, .levels = 2, .channels = {8, 16}, .latent_channels = 4, .groups = 4,
                            .image_size = 32, .scale_factor = 1.0f};
    mc->text.dim = 32, mc->text.layers = 1, mc->text.heads = 2;
    vd_unet_config *u = &mc->unet;
    u->levels = 2, u->channels[0] = 16, u->channels[1] = 32, u->attention[0] = 0, u->attention[1] = 1;
    u->blocks_per_level = 1, u->head_dim = 16, u->groups = 4, u->context_dim = 32;
    u->frames = 4, u->latent_h = 16, u->latent_w = 16;
    return 0;
}

/* small_model.h's text encoder and UNet (no autoencoder) with two blocks per level and frames of
 * side x side latents, randomly initialised from seed: the teacher the pruning and distillation
 * tests cut. 0, or -1. */
static inline int small_teacher(vd_model *m, int frames, int side, uint64_t seed)
{
    vd_model_config mc;
    if (small_model_config(&mc)) return -1;
    mc.ae.present = 0;
    mc.unet.blocks_per_level = 2;
    mc.unet.frames = frames, mc.unet.latent_h = side, mc.unet.latent_w = side;
    char err[256];
    int rc = vd_model_build(m, &mc, err, sizeof err);
    vd_config_free(&mc);
    if (rc) return -1;
    vd_model_init_random(m, seed);
    return 0;
}

#endif
