/* model.h: the models of docs/architecture.md — autoencoder, text encoder and 3D UNet — as one
 * contiguous parameter buffer with a table of (name, shape, offset), and their forward passes
 * on any backend.
 *
 * A model is built from a config: the config decides which parameters exist (a removed UNet
 * block has none), then weights come from a file or from a seeded initialisation. Forward passes
 * take and return backend memory; their temporaries come from a pool of backend buffers reused
 * across calls, so steady-state sampling allocates nothing. */
#ifndef VD_MODEL_H
#define VD_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "config.h"
#include "pool.h"
#include "safetensors.h"

/* The epsilon of every GroupNorm and LayerNorm (docs/architecture.md). */
#define VD_NORM_EPS 1e-5f

typedef struct {
    char *name;
    int ndim;
    int64_t shape[4];
    size_t offset, numel; /* in floats, within the parameter buffer */
} vd_param;

/* Recorded UNet forwards (vd_unet_forward_recorded): at most this many a model, each of at most
 * VD_RECORD_MAX_ROWS rows. Larger batches keep the GPU busy without a recording, and each
 * recording holds scratch of its own. */
#define VD_MAX_RECORDINGS 8
#define VD_RECORD_MAX_ROWS 8

/* A UNet forward recorded by the backend (backend.h, record_begin), with the buffers, sizes and
 * precision it was recorded for. */
typedef struct {
    const float *x, *t, *ctx;
    float *out;
    int L, N, T, h, w;
    vd_precision precision;
    void *recording; /* NULL until recorded */
    int runs;        /* forwards run with this key since it was last sized; -1: it cannot be recorded */
    vd_pool pool;    /* the forward's scratch, its own, so nothing else writes there between replays */
    uint64_t last_use;
} vd_unet_recording;

typedef struct vd_model {
    vd_model_config cfg;
    vd_param *params;
    int nparams, params_cap;
    int *index; /* open-addressing hash of names to params */
    int index_size;
    size_t total; /* floats in the parameter buffer */
    float *host;  /* the parameters on the host, fp32 */
    vd_backend *be;
    float *weights; /* the parameters in backend memory */
    vd_pool pool;   /* scratch buffers of the passes */
    float *frame_index; /* 0, 1, ... in backend memory: the temporal layers' positions */
    int frame_index_len;
    int record_forwards; /* whether vd_unet_forward_recorded records: on where the backend can */
    vd_unet_recording recordings[VD_MAX_RECORDINGS];
    int recording_count;
    uint64_t recording_clock;
} vd_model;

/* Declares the parameters of cfg (no weights yet: host stays NULL until init or load). Returns
 * -1 with a message when the config cannot be built (e.g. channels not divisible by groups). */
int vd_model_build(vd_model *m, const vd_model_config *cfg, char *err, size_t errlen);
/* Random initialisation: weights ~ N(0, 1/fan_in) (std 0.02 for embeddings), biases and norm
 * betas ~ N(0, 0.02^2), norm gammas ~ 1 + N(0, 0.02^2). Deterministic in seed. */
void vd_model_init_random(vd_model *m, uint64_t seed);
/* Reads config and weights from a file: every declared parameter must be present with its exact
 * shape; extra tensors are an error. */
int vd_model_load(vd_model *m, const char *path, char *err, size_t errlen);
/* Same from an already parsed file (the config from its metadata). */
int vd_model_load_file(vd_model *m, const vd_st_file *f, char *err, size_t errlen);
/* Reads only a weights file's config (its __metadata__["vdmini.config"]) into cfg. */
int vd_model_read_config(const char *path, vd_model_config *cfg, char *err, size_t errlen);
int vd_model_save(const vd_model *m, const char *path, vd_st_dtype dtype, char *err, size_t errlen);
/* The same, in parts of at most max_file_bytes each where the whole is larger (safetensors.h:
 * path names the others, beside it, and reading it reads them all); 0 is one file. */
int vd_model_save_parts(const vd_model *m, const char *path, vd_st_dtype dtype, size_t max_file_bytes, char *err,
                        size_t errlen);
/* Whether guide can stand in for model in a guided denoiser step (sampler.h): the same
 * vocabulary and token count, UNet inputs, outputs and text width, and noise schedule. 0, or -1
 * with a message naming path. */
int vd_model_guide_fits(const vd_model *model, const vd_model *guide, const char *path, char *err, size_t errlen);
/* Copies the weights to a backend (the model keeps using it until freed); a model without host
 * weights gets uninitialised backend memory (for FLOP counting and speed measurement). Turns
 * record_forwards on where the backend records. */
void vd_model_attach(vd_model *m, vd_backend *be);
/* Gives back everything the model holds in backend memory (weights, scratch pool); the host
 * weights stay, so it can be attached to another backend. */
void vd_model_detach(vd_model *m);
void vd_model_free(vd_model *m);

const vd_param *vd_model_param(const vd_model *m, const char *name);

/* A buffer of n floats in the model's backend memory, from a pool of buffers reused by size;
 * give it back with vd_model_scratch_done. */
float *vd_model_scratch(vd_model *m, size_t n);
void vd_model_scratch_done(vd_model *m, const float *p);
/* Parameters whose name starts with prefix. */
size_t vd_model_count_params(const vd_model *m, const char *prefix);
/* n normal values times scale, drawn from seed, in a new buffer of be's memory (inputs for speed
 * measurements; give it back with be->release). */
float *vd_backend_random_normal(vd_backend *be, size_t n, uint64_t seed, float scale);

/* ---- forward passes; all pointers in backend memory ---- */

/* ids (N, max_tokens) int32 -> out (N, max_tokens, dim). */
void vd_text_forward(vd_model *m, const int32_t *ids, int N, float *out);
/* mean (N, D) = the mean over the L tokens of each of the N rows of text (N, L, D): what the
 * pooled text (config.h) projects. */
void vd_text_mean(vd_backend *be, float *mean, const float *text, int N, int L, int D);
/* img (B, 3, H, W) in [-1, 1] -> z (B, latent, H/f, W/f), f = 2^(levels-1). */
void vd_ae_encode(vd_model *m, const float *img, int B, int H, int W, float *z);
/* z (B, latent, h, w) -> img (B, 3, h*f, w*f). */
void vd_ae_decode(vd_model *m, const float *z, int B, int h, int w, float *img);
/* x (N, T, in_channels, h, w), t (N) timesteps, ctx (N, L, context_dim)
 * -> out (N, T, out_channels, h, w). */
void vd_unet_forward(vd_model *m, const float *x, const float *t, const float *ctx, int L, int N,
                     int T, int h, int w, float *out);
/* The same forward, replayed from a recording where the backend records (CUDA graphs) and
 * m->record_forwards is on: at the batches a server meets most, a step is bound by kernel
 * launches, and a replay launches the whole forward at once. With given buffers, sizes and
 * precision, the first forward runs as vd_unet_forward does (sizing every buffer), the second is
 * recorded and run, and later ones replay it; the least recently used of a model's recordings
 * makes room for a new one. The buffers must not be resized or freed while the model keeps a
 * recording of them: the sampler's come from the model's own pool. */
void vd_unet_forward_recorded(vd_model *m, const float *x, const float *t, const float *ctx, int L, int N,
                              int T, int h, int w, float *out);
/* Frees the model's recordings, and their scratch. */
void vd_model_drop_recordings(vd_model *m);
/* Turns m->record_forwards on (where m's backend records) or off (dropping the recordings). */
void vd_model_record_forwards(vd_model *m, int on);
/* The recorded forwards the model holds; with scratch_bytes, also the bytes of scratch its
 * recordings' entries hold (those still being sized included). */
int vd_model_recordings(const vd_model *m, size_t *scratch_bytes);

/* The UNet's stage plan (docs/architecture.md's layout): the stages in execution order, as the
 * parameter declaration, vd_unet_forward and the training pass walk them. Each stage's input is
 * the previous stage's output, concatenated over channels with a popped skip when skip_ch > 0;
 * a stage with push >= 0 pushes its output on that level's skip stack. */
typedef enum {
    VD_STAGE_CONV_IN,
    VD_STAGE_DOWN_BLOCK,
    VD_STAGE_DOWNSAMPLE,
    VD_STAGE_MID,
    VD_STAGE_UP_BLOCK,
    VD_STAGE_UPSAMPLE,
    VD_STAGE_OUT
} vd_unet_stage_kind;

typedef struct {
    vd_unet_stage_kind kind;
    char name[16]; /* block name for blocks, else empty */
    int level;     /* resolution level the stage runs at (its input) */
    int ci, co;    /* channels in (after any skip concat) and out */
    int cm;        /* a block's or mid's ResBlock inner width (conv1's output, norm2, conv2's input) */
    int skip_ch;   /* channels of the skip popped and concatenated before it, 0 if none */
    int push;      /* level whose skip stack gets the output, -1 if none */
    int attn;      /* block has an attention part (its level has attention, "<block>.attn" is not removed) */
    int temporal;  /* block or mid keeps its temporal layers (its level's "temporal.l" is not removed) */
} vd_unet_stage;

#define VD_UNET_MAX_STAGES 512

/* Fills st (VD_UNET_MAX_STAGES entries) with cfg's plan; returns the stage count, or -1 with a
 * message when the config cannot be built. */
int vd_unet_plan(const vd_unet_config *u, vd_unet_stage *st, char *err, size_t errlen);

/* Names of the UNet's blocks in execution order ("down.0.0", ..., "mid", ..., "up.0.2"); count
 * returned, names written into names (each at most 16 chars) up to max. */
int vd_unet_block_names(const vd_unet_config *u, char names[][16], int max);

/* The units a pruning can still remove, as vd_unet_block_names writes them: the blocks in
 * execution order, then "temporal.l" for each level l = 0.. whose temporal layers are neither
 * removed nor gone with every block that held them, then "<block>.attn" for each block that
 * still has its attention part, in execution order. */
int vd_unet_removable_units(const vd_unet_config *u, char names[][16], int max);

#endif
