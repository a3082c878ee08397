/* vdmini.h: the engine's public interface, used by the command line and the server.
 * The engine loads a model (autoencoder, text encoder, 3D UNet) from safetensors files and
 * generates video frames from a prompt, optionally conditioned on a first image. It has no HTTP
 * and no video codec in it: frames come back as float RGB in [-1, 1]. */
#ifndef VDMINI_H
#define VDMINI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct vd_engine vd_engine;

typedef enum { VD_DEVICE_AUTO = 0, VD_DEVICE_CPU, VD_DEVICE_CUDA } vd_device;
typedef enum { VD_SAMPLER_DDIM = 0, VD_SAMPLER_EULER } vd_sampler_kind;

#define VD_ERR_LEN 256
/* Classifier-free guidance where none is given: the scale the shipped teacher does best at
 * (docs/models.md, "Guidance"); the server's default_guidance option defaults to it too. */
#define VD_DEFAULT_GUIDANCE 4.0f

/* The guidance a model file is sampled at where none is asked for: what its config records
 * (config.h, sampling: 1 for a guidance-distilled student), else VD_DEFAULT_GUIDANCE, which is
 * also the answer for a file that cannot be read (loading it says why). */
float vd_default_guidance(const char *model_path);

/* The backend for a device choice: the CPU's, or the first GPU's (bf16 matrix products when
 * bf16); auto takes the GPU when there is one. NULL with a message when cuda finds none. */
struct vd_backend *vd_open_backend(vd_device device, int bf16, char err[VD_ERR_LEN]);
/* The backends of one run spread over count devices (a training run's replicas): for 1, be[0] as
 * vd_open_backend gives it; for more, GPUs 0 .. count - 1, which the device choice must allow
 * (auto or cuda). 0, or -1 with a message and nothing left open. */
int vd_open_backends(vd_device device, int bf16, int count, struct vd_backend **be, char err[VD_ERR_LEN]);

/* Loads the model file (text encoder + UNet, optionally the autoencoder too). When the model
 * file has no autoencoder, ae_path names one; NULL means "ae.safetensors" beside the model.
 * bf16 selects bf16 matrix products on the GPU (ignored on the CPU). */
vd_engine *vd_engine_open(const char *model_path, const char *ae_path, vd_device device, int bf16,
                          char err[VD_ERR_LEN]);
void vd_engine_close(vd_engine *e);
/* Gives the engine a guide: a weaker version of its model that a video with guide_scale > 0
 * moves away from at every step (vd_gen_params). The guide is the model file at path, or, when
 * path is NULL, the engine's own model; units (comma-separated, or NULL) are UNet units removed
 * from it (prune.h), only those that leave every other weight as it is. The guide must share the
 * model's vocabulary, latents and noise schedule. 0, or -1 with a message. */
int vd_engine_set_guide(vd_engine *e, const char *path, const char *units, char err[VD_ERR_LEN]);
int vd_engine_has_guide(const vd_engine *e); /* whether vd_engine_set_guide gave it one */
/* Whether sampling replays recorded UNet forwards (CUDA graphs, model.h's
 * vd_unet_forward_recorded) where the backend records; on by default. Off, every forward runs op
 * by op (for comparison, or where recording misbehaves). */
void vd_engine_record_forwards(vd_engine *e, int on);
const char *vd_engine_device_name(const vd_engine *e); /* "cpu" or "cuda" */
/* GPU memory in use and in all, in bytes (0 and 0 on the CPU). */
void vd_engine_memory(const vd_engine *e, size_t *used, size_t *total);
/* The recorded UNet forwards the engine holds (its model's and its guide's; none on the CPU), and
 * in *scratch_bytes the GPU memory their scratch takes, a part of vd_engine_memory's used. */
int vd_engine_recordings(const vd_engine *e, size_t *scratch_bytes);

/* Writes freshly initialised weights for a preset ("tiny", "large") to out_path; with
 * inner_count > 0 its UNet's ResBlocks are inner_channels wide inside (one entry per level, 0 keeps
 * a level's width: config.h). */
int vd_init_preset(const char *preset, const int *inner_channels, int inner_count, uint64_t seed, const char *out_path,
                   char err[VD_ERR_LEN]);

/* Prints the architecture, parameters per block and GFLOPs per denoiser step of a weights file
 * or a preset name. */
int vd_print_info(const char *path_or_preset, FILE *out, char err[VD_ERR_LEN]);

/* Image size the model was built for, and its limits. */
typedef struct {
    int image_size;  /* pixels per side of a frame (latent side times the AE factor) */
    int latent_div;  /* width and height must be multiples of this */
    int max_tokens;
    int default_frames;
    float sampling_guidance; /* the guidance the model's file records it samples at (config.h,
                              * sampling: 1 for a guidance-distilled student), 0 where none */
} vd_model_limits;
void vd_engine_limits(const vd_engine *e, vd_model_limits *out);

typedef struct {
    const char *prompt;
    const float *image; /* first frame for image-to-video: (3, height, width) in [-1, 1], or NULL */
    int frames, width, height, steps;
    float guidance;     /* classifier-free guidance scale; <= 1 turns guidance off */
    float guidance_rescale; /* 0 to 1: how far the guided v is scaled back to the conditional v's
                             * root mean square (0, the default, leaves it) */
    float guide_scale;  /* a: a * (v_c - v_guide) added to the guided v; 0 (the default) runs
                         * no guide (vd_engine_set_guide) */
    vd_sampler_kind sampler;
    float eta;          /* DDIM's share of fresh noise at each step: 0 (the default) deterministic,
                         * 1 as much as the DDPM step; 0 with Euler */
    uint64_t seed;      /* the starting noise and, with eta, each step's fresh noise */
    /* video-to-video: a clip (frames, 3, height, width) in [-1, 1] to start from, or NULL; the
     * last strength (0 to 1] of the steps run, from its latents noised to where they start */
    const float *video;
    float strength;
} vd_gen_params;

/* Called after every denoising step; return non-zero to cancel. */
typedef int (*vd_progress_fn)(void *user, int step, int total);

/* The words the model's tokenizer knows (index 0 and 1 are "<pad>" and "<unk>"). */
int vd_engine_vocab_size(const vd_engine *e);
const char *vd_engine_vocab_word(const vd_engine *e, int i);

/* Words of the prompt the model does not know, space separated, into buf. Returns their count. */
int vd_unknown_words(const vd_engine *e, const char *prompt, char *buf, size_t buflen);

/* Generates one video: frames (frames, 3, height, width) floats in [-1, 1], caller-allocated.
 * Returns 0, 1 when cancelled by the progress function, or -1 with a message in err. */
int vd_generate(vd_engine *e, const vd_gen_params *p, float *frames, vd_progress_fn progress,
                void *user, char err[VD_ERR_LEN]);

/* ---- step-level batching: videos that join and leave a running batch ----
 * A vd_video holds one request's state on the engine's device (text encoding, condition,
 * latent, sampler plan, step). vd_step runs one denoiser step for several videos as one batch;
 * they may be at different steps and use different samplers, step counts and guidance, but
 * must be compatible (same frames, width and height). All calls on one engine must come from
 * one thread at a time. */
typedef struct vd_video vd_video;

/* Validates p, encodes the prompt (and the first image), draws the noise. NULL with a message
 * in err for bad parameters. */
vd_video *vd_video_begin(vd_engine *e, const vd_gen_params *p, char err[VD_ERR_LEN]);
int vd_video_compatible(const vd_video *a, const vd_video *b);
int vd_video_step_index(const vd_video *v); /* steps taken so far */
int vd_video_steps(const vd_video *v);      /* steps in all */
/* One denoiser step for each of n compatible, unfinished videos, as one batch. */
void vd_step(vd_engine *e, vd_video **videos, int n);
/* Decodes a finished video into frames (frames, 3, height, width). */
void vd_video_decode(vd_engine *e, vd_video *v, float *frames);
void vd_video_free(vd_engine *e, vd_video *v);

#endif
