/* config.h: the model config — what a weights file's __metadata__["vdmini.config"] holds
 * (docs/architecture.md gives the JSON), parsed into plain structs, and the named presets. */
#ifndef VD_CONFIG_H
#define VD_CONFIG_H

#include <stddef.h>

#define VD_MAX_LEVELS 8

typedef struct {
    int present;
    int levels, channels[VD_MAX_LEVELS];
    int latent_channels, groups, image_size;
    float scale_factor;
} vd_ae_config;

typedef struct {
    int present;
    int vocab_size;
    char **vocab; /* vocab[0] = "<pad>", vocab[1] = "<unk>" */
    int max_tokens, dim, layers, heads;
} vd_text_config;

typedef struct {
    int present;
    int levels, channels[VD_MAX_LEVELS], attention[VD_MAX_LEVELS];
    int inner_channels[VD_MAX_LEVELS]; /* a level's ResBlocks' inner width (conv1's output, norm2,
                                        * conv2's input); 0: the level's channels */
    int blocks_per_level, head_dim, groups, in_channels, out_channels, context_dim;
    int frames, latent_h, latent_w;
    int pooled_text; /* the mean of the text tokens, projected, is added to the time embedding */
    int removed_count;
    char **removed; /* removed units: blocks "down.l.b", "up.l.b", "mid"; "temporal.l", the
                     * temporal layers of level l; "<block>.attn", a block's attention part
                     * (docs/architecture.md) */
} vd_unet_config;

/* The noise schedule: "scaled linear" betas from beta_start to beta_end over train_steps, then
 * optionally every signal-to-noise ratio divided by snr_shift^2 (more of the steps at high noise)
 * and sqrt(abar) rescaled linearly so that the last step is pure noise (zero_terminal_snr).
 * Files without the last two fields have the plain schedule (shift 1, no rescale). */
typedef struct {
    int train_steps;
    float beta_start, beta_end;
    int zero_terminal_snr;
    float snr_shift;
} vd_diffusion_config;

/* How the model is meant to be sampled: the classifier-free guidance it was made for (1 for a
 * guidance-distilled student, whose conditional prediction is already guided), which callers
 * use where none is asked for; 0 where the file records none. */
typedef struct {
    float guidance;
} vd_sampling_config;

typedef struct {
    vd_ae_config ae;
    vd_text_config text;
    vd_unet_config unet;
    vd_diffusion_config diffusion;
    vd_sampling_config sampling;
} vd_model_config;

/* Parses the JSON config; every field is checked (types, ranges, divisibility). */
int vd_config_parse(const char *json, vd_model_config *c, char *err, size_t errlen);
/* Sets the schedule's optional fields (zero_terminal_snr, snr_shift) that the JSON object json
 * names, leaving the others; unknown fields are errors. For a training run that changes the
 * schedule of the model it starts from. */
int vd_config_parse_schedule(const char *json, vd_diffusion_config *d, char *err, size_t errlen);
/* The JSON form (malloc'd string). */
char *vd_config_to_json(const vd_model_config *c);
/* Fills c with a named preset ("tiny", "large"); returns -1 for an unknown name. */
int vd_config_preset(const char *name, vd_model_config *c);
void vd_config_free(vd_model_config *c);
/* Deep copy. */
void vd_config_copy(vd_model_config *dst, const vd_model_config *src);

/* The inner width of level l's ResBlocks: inner_channels[l], else channels[l]. */
int vd_unet_inner_channels(const vd_unet_config *u, int level);
/* Widens level l's ResBlocks to widths[l] (0 keeps the level's) for the count == levels entries;
 * a width below the level's inner width now or not a whole number of its groups' width is an
 * error, and nothing changes. */
int vd_unet_set_inner_channels(vd_unet_config *u, const int *widths, int count, char *err, size_t errlen);
/* Whether the removed list names this unit (a block name or "temporal.l"). */
int vd_unet_block_removed(const vd_unet_config *u, const char *name);
/* Whether the temporal layers of level l ("temporal.l") are removed. */
int vd_unet_temporal_removed(const vd_unet_config *u, int level);
/* Whether the attention part of the named block ("<block>.attn") is removed. */
int vd_unet_attention_removed(const vd_unet_config *u, const char *block);
/* Whether a unit name names a whole block rather than the temporal layers of a level or a
 * block's attention part. */
int vd_unet_unit_is_block(const char *name);
/* Whether unit is block's attention part: block followed by ".attn". */
int vd_unet_is_attention_of(const char *unit, const char *block);

#endif
