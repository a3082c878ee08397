/* train.h: the training driver of the autoencoder and of the denoiser (text encoder and UNet
 * together) — a run's JSON config, the learning-rate schedule
 * (linear warm-up, then cosine down to min_lr), an EMA of the weights, gradient accumulation,
 * frames from the world's threaded loader, sharded atomic checkpoints that resume a run exactly,
 * a CSV log and an SVG plot of the loss.
 *
 * Data: every micro-batch is `clips` clips of the world of `batch` frames each (clip k of the
 * loader is clip k of the world's seed), so an optimizer step sees clips * grad_accum clips; a
 * GPU wants several clips per micro-batch to be busy. Frames of one clip
 * share background and objects; across steps the clips vary, and the per-frame reconstruction
 * loss does not care which clip a frame came from. The loader's position (the next clip) is the
 * whole of the data's state, so a checkpoint stores it and a resumed run draws the same clips.
 *
 * A checkpoint is a directory out_dir/step-NNNNNN holding manifest.json (step, next clip, model
 * config, the shards) and safetensors shards of at most max_shard_bytes each with the tensors
 * "weights.NAME", "ema.NAME", "adam_m.NAME" and "adam_v.NAME" for every parameter NAME. It is
 * written into a temporary directory, every file fsync'd, then renamed into place.
 *
 * The denoiser trains on the same clips, each encoded frame by frame by a trained, frozen
 * autoencoder (config "ae": its file) into z0 (batch, latent, h, w). Per clip, from the
 * counter RNG keyed by the seed and the clip's number (so a resumed run draws the same): the
 * clip's prompt, or the empty prompt at empty_prompt_rate; the first frame's latent as the
 * condition (on every frame, mask 1) at first_frame_rate, else zeros; a timestep t in
 * [0, train_steps) and noise eps (drawn on a helper thread while the frames are encoded); then,
 * on the backend, z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps and the v-prediction target
 * v = sqrt(abar_t) eps - sqrt(1 - abar_t) z0, under the plain mean squared error or, with
 * object_loss_weight, one that weighs the latents near the clip's objects more. Only the text encoder and the
 * UNet are trained (and checkpointed); the autoencoder is not part of the run's model. */
#ifndef VD_TRAIN_H
#define VD_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "config.h"
#include "safetensors.h"
#include "world.h"

#define VD_TRAIN_SHARD_BYTES (16u << 20)
#define VD_TRAIN_MAX_REPLICAS 16
#define VD_TRAIN_PATH_LEN 1024

typedef enum { VD_TRAIN_AE, VD_TRAIN_DENOISER } vd_train_target;

typedef struct {
    vd_train_target target; /* set before parsing: what the run trains (the defaults: VD_TRAIN_AE) */
    int steps;            /* optimizer steps in the whole run */
    int batch;            /* frames per clip */
    int clips;            /* clips per micro-batch */
    int image_size;       /* frames are image_size x image_size; 0: the autoencoder's image_size */
    float lr, min_lr;     /* peak learning rate, and where the cosine ends */
    int warmup_steps;     /* linear ramp up to lr */
    float weight_decay, beta1, beta2, eps;
    float clip_norm;      /* global gradient norm limit; 0: no clipping */
    float ema_decay;      /* ema = decay * ema + (1 - decay) * weights after each step */
    int grad_accum;       /* micro-batches summed per optimizer step */
    uint64_t seed;        /* the world's clips and the random initialisation */
    int loader_threads;
    int checkpoint_every; /* steps; 0: only at the end */
    int log_every;        /* steps between CSV rows */
    char out_dir[VD_TRAIN_PATH_LEN];
    char init[VD_TRAIN_PATH_LEN]; /* a preset name or a weights file holding the trained parts */
    int has_ae;                   /* autoencoder: ae below was given inline (random initialisation) */
    vd_ae_config ae;
    char ae_path[VD_TRAIN_PATH_LEN]; /* denoiser: the trained autoencoder's weights file */
    /* VDMini distillation (distill.h): with a teacher file the denoiser run trains the student
     * of init (a pruned teacher) under task + lambda_icd ICD + lambda_mca MCA; 0 switches a term
     * off. The discriminator's heads have their own AdamW at disc_lr. */
    char teacher[VD_TRAIN_PATH_LEN];
    float lambda_icd, lambda_mca, disc_lr;
    /* guidance distillation (distill.h): teacher_guidance above 1 makes the task target the
     * teacher's guided prediction, moved away from teacher_guide (a file, or "") by
     * teacher_guide_scale; 0 keeps the data's v */
    float teacher_guidance, teacher_guide_scale;
    char teacher_guide[VD_TRAIN_PATH_LEN];
    /* denoiser: "diffusion", a JSON object of schedule fields (vd_config_parse_schedule) that
     * replace init's, e.g. {"zero_terminal_snr": true, "snr_shift": 3}; "" keeps init's */
    char schedule[256];
    /* denoiser: "pooled_text": true gives init's UNet the pooled text (config.h) when it has none,
     * with zero weights, so that the run starts from what init computed */
    int pooled_text;
    /* denoiser: "add_attention": [levels] gives those levels of init's UNet the attention block
     * (config.h) they lack, random inside and a zero output projection, so that the run starts
     * from what init computed; bit l of the mask is level l */
    unsigned add_attention;
    /* denoiser: "inner_channels": [per level] widens the ResBlocks of init's UNet inside
     * (config.h's inner_channels; 0 keeps a level's width): the new conv1 rows keep their random
     * weights, conv2 reads them with zero weights, norm2 gives them groups of their own, so that
     * the run starts from what init computed */
    int inner_channels[VD_MAX_LEVELS], inner_levels;
    /* denoiser: the share of clips trained with the empty prompt (for guidance) and with the
     * first frame's latent as the condition (image-to-video) */
    float empty_prompt_rate, first_frame_rate;
    /* denoiser: the loss (a distillation's task term) weighs the latent values near an object
     * 1 + object_loss_weight times a value elsewhere (vd_train_object_weight); 0, the default, is
     * the plain mean */
    float object_loss_weight;
    /* denoiser: "object_loss_by_size": true scales each object's extra weight by the area of a
     * medium object's weighed disc over its own, so that a small object weighs as much in the loss
     * as a large one (vd_train_object_weight) */
    int object_loss_by_size;
    /* the odds of training clips with one, two and three objects (vd_world_sample_odds); all 0,
     * the default, is the world's own draw */
    float object_count_odds[VD_WORLD_MAX_OBJECTS];
    size_t max_shard_bytes;       /* VD_TRAIN_SHARD_BYTES; not in the JSON (tests lower it) */
} vd_train_config;

/* Defaults: steps 1000, batch 8, clips 1, image_size 0, lr 4e-4, min_lr 4e-5, warmup_steps 100,
 * weight_decay 0.01, beta1 0.9, beta2 0.999, eps 1e-8, clip_norm 1, ema_decay 0.999,
 * grad_accum 1, seed 0, loader_threads 4, checkpoint_every 1000, log_every 10, init "tiny",
 * empty_prompt_rate 0.1, first_frame_rate 0.5, object_loss_weight 0, object_count_odds the world's. */
void vd_train_config_defaults(vd_train_config *c);
/* Parses a JSON object over the defaults: every key is checked (unknown keys are errors), and
 * out_dir is required. Training the autoencoder, "ae" is an inline autoencoder config (as in a
 * model file) instead of "init"; training the denoiser, "ae" is required and names the trained
 * autoencoder's weights file, and "init" gives the text encoder and UNet. Returns 0, or -1 with a
 * message naming the field. */
int vd_train_config_parse(const char *json, vd_train_config *c, char *err, size_t errlen);
int vd_train_config_load(const char *path, vd_train_config *c, char *err, size_t errlen);

/* The loss weight map of clip t: out (frames, channels, h, w), latents of f x f pixels each, holds
 * 1 + k where a latent pixel's centre lies within reach = 1.6 r + f / 2 pixels of an object's
 * centre in that frame (r its radius then; 1.6 r reaches every shape's farthest point), else 1.
 * With by_size an object's k is scaled by (reach of a medium object at scale 1 / its reach)^2, so
 * that every object's extra weight sums to about the same; where objects overlap the larger
 * weight holds. */
void vd_train_object_weight(const vd_clip_truth *t, int frames, int channels, int h, int w, int f, float k,
                            int by_size, float *out);

/* Learning rate of optimizer step `step` (0-based): lr * (step + 1) / warmup_steps during the
 * warm-up, then min_lr + (lr - min_lr) (1 + cos(pi p)) / 2 with p going from 0 at the first step
 * after the warm-up to 1 at the last step. */
float vd_train_lr(const vd_train_config *c, int step);

typedef struct vd_train_run vd_train_run;

typedef struct {
    int step;             /* steps done, this one included */
    float loss, lr;       /* the step's mean loss (reconstruction or v-prediction) and learning rate */
    double grad_norm;     /* before clipping */
    /* distillation only (else 0): the loss's terms, unweighted, and the discriminator's hinge loss */
    float task, icd, mca, disc;
    /* the step's wall time in parts: waiting for the loader's clips; preparing the inputs (the
     * uploads, and for the denoiser the autoencoder's encode and the noising); and the rest (loss,
     * backward, optimizer, EMA), where a GPU step's queued work finishes at the next sync */
    float data_ms, prep_ms, update_ms;
} vd_train_stats;

/* Starts a run on be (the CPU or a GPU backend with backward ops): from the config's init, or
 * from the checkpoint directory resume_dir (NULL for a fresh start). The config must match the
 * checkpoint's seed, batch, clips and image size. NULL with a message on failure. */
vd_train_run *vd_train_open(const vd_train_config *c, vd_backend *be, const char *resume_dir, char *err,
                            size_t errlen);
/* Data parallelism: the same run spread over count backends (GPUs), one replica of the model,
 * optimizer and loader on each. Micro-batch k of a step runs on backend k % count, so grad_accum
 * must be a multiple of count; the replicas' gradient sums are added on the host and every
 * replica takes the same optimizer step, so the weights stay equal. The run computes what it
 * computes on one backend, but for the order of the gradients' sums. Calls into the run then come
 * from the thread that opened it (the first backend is left current); the first replica answers
 * for all (weights, checkpoints). A distillation's replicas each hold the teacher and the
 * discriminator, whose heads' gradients are added up the same way. */
vd_train_run *vd_train_open_on(const vd_train_config *c, vd_backend *const *be, int count, const char *resume_dir,
                               char *err, size_t errlen);
/* One optimizer step: grad_accum micro-batches, clipping, AdamW at the scheduled rate, EMA. */
void vd_train_step(vd_train_run *r, vd_train_stats *st);
int vd_train_done_steps(const vd_train_run *r);
/* Floats in the model's parameter buffer (what vd_train_weights writes). */
size_t vd_train_param_count(const vd_train_run *r);
/* Writes out_dir/step-NNNNNN for the steps done so far (replacing one of that name). */
int vd_train_checkpoint(vd_train_run *r, char *err, size_t errlen);
/* Copies the weights (ema 0) or their EMA (ema 1) to host, in the model's parameter layout. */
void vd_train_weights(vd_train_run *r, int ema, float *host);
void vd_train_close(vd_train_run *r);

/* Called after every step with the throughput so far; return non-zero to stop (after a
 * checkpoint). */
typedef int (*vd_train_progress_fn)(void *user, const vd_train_stats *st, int total, double steps_per_s);

/* The whole run: steps until c->steps with a CSV row every log_every steps (out_dir/train.csv:
 * step,loss,lr,grad_norm,clips_per_s; a resumed run drops rows past its checkpoint), a checkpoint
 * every checkpoint_every steps and at the end, out_dir/loss.svg redrawn at each checkpoint, and
 * finally the weights and their EMA: out_dir/ae.safetensors and ae-ema.safetensors for the
 * autoencoder, out_dir/teacher.safetensors and teacher-ema.safetensors (text encoder and UNet)
 * for the denoiser, out_dir/student.safetensors and student-ema.safetensors for a distillation
 * (whose CSV adds the columns task,icd,mca,disc). Returns 0, or -1 with a message. */
int vd_train(const vd_train_config *c, vd_backend *be, const char *resume_dir, vd_train_progress_fn progress,
             void *user, char *err, size_t errlen);
/* The same, spread over count backends (vd_train_open_on). */
int vd_train_on(const vd_train_config *c, vd_backend *const *be, int count, const char *resume_dir,
                vd_train_progress_fn progress, void *user, char *err, size_t errlen);

/* Writes the EMA of the weights in the checkpoint directory dir as a model file (the trained
 * parts only, in dtype): what a run that stopped early has learnt so far. Returns 0, or -1 with a
 * message. */
int vd_train_export_checkpoint(const char *dir, const char *out_path, vd_st_dtype dtype, size_t max_file_bytes,
                               char *err, size_t errlen);

/* Reads a CSV written by vd_train and writes an SVG of loss against step, the loss axis
 * logarithmic. */
int vd_train_plot(const char *csv_path, const char *svg_path, char *err, size_t errlen);

#endif
