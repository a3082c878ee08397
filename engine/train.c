/* train.c: the training driver of the autoencoder and the denoiser (see train.h): config,
 * schedule, EMA, gradient accumulation over loader clips, the denoiser's noised latents, sharded
 * atomic checkpoints and exact resume, CSV log, SVG plot. */
#include "train.h"
#include "ae_train.h"
#include "common.h"
#include "denoiser_train.h"
#include "distill.h"
#include "model.h"
#include "rng.h"
#include "safetensors.h"
#include "sampler.h"
#include "tokenizer.h"
#include "world.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const MANIFEST_FORMATS[] = {"vdmini.ae-train/1", "vdmini.denoiser-train/1"};
#define DISC_FILE "discriminator.safetensors" /* a distillation checkpoint's discriminator state */
/* The denoiser's random choices: stream DENOISER_STREAM ^ seed, two keys per clip. */
#define DENOISER_STREAM 0x64656e6f69736572ull
#define RENOISE_STREAM 0x72656e6f697365ull /* a distillation's re-noising for MCA: one key per clip */

static const char *const GROUPS[] = {"weights", "ema", "adam_m", "adam_v"};
enum { GROUP_WEIGHTS, GROUP_EMA, GROUP_ADAM_M, GROUP_ADAM_V, GROUP_COUNT };

/* ---- config ---- */

void vd_train_config_defaults(vd_train_config *c)
{
    memset(c, 0, sizeof *c);
    c->steps = 1000, c->batch = 8, c->clips = 1;
    c->lr = 4e-4f, c->min_lr = 4e-5f, c->warmup_steps = 100;
    c->weight_decay = 0.01f, c->beta1 = 0.9f, c->beta2 = 0.999f, c->eps = 1e-8f;
    c->clip_norm = 1.0f, c->ema_decay = 0.999f, c->grad_accum = 1;
    c->loader_threads = 4, c->checkpoint_every = 1000, c->log_every = 10;
    snprintf(c->init, sizeof c->init, "tiny");
    c->lambda_icd = 0.1f, c->lambda_mca = 1.0f;
    c->empty_prompt_rate = 0.1f, c->first_frame_rate = 0.5f;
    c->max_shard_bytes = VD_TRAIN_SHARD_BYTES;
}

static int get_int(json_t *v, const char *key, long long lo, long long hi, long long *out, char *err, size_t errlen)
{
    if (!json_is_integer(v)) return vd_fail(err, errlen, "training config %s: not an integer", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return vd_fail(err, errlen, "training config %s: %lld is outside [%lld, %lld]", key, x, lo, hi);
    *out = x;
    return 0;
}

static int get_float(json_t *v, const char *key, double lo, double hi, float *out, char *err, size_t errlen)
{
    if (!json_is_number(v)) return vd_fail(err, errlen, "training config %s: not a number", key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return vd_fail(err, errlen, "training config %s: %g is outside [%g, %g]", key, x, lo, hi);
    *out = (float)x;
    return 0;
}

/* A JSON array of VD_WORLD_MAX_OBJECTS odds, each in [0, 1e6], at least one above 0. */
static int get_count_odds(json_t *v, const char *key, float *odds, char *err, size_t errlen)
{
    if (!json_is_array(v) || json_array_size(v) != VD_WORLD_MAX_OBJECTS)
        return vd_fail(err, errlen, "training config %s: must be a list of %d numbers (the odds of 1 to %d objects)", key,
                       VD_WORLD_MAX_OBJECTS, VD_WORLD_MAX_OBJECTS);
    double sum = 0;
    for (int k = 0; k < VD_WORLD_MAX_OBJECTS; k++) {
        json_t *x = json_array_get(v, (size_t)k);
        if (!json_is_number(x) || !(json_number_value(x) >= 0 && json_number_value(x) <= 1e6))
            return vd_fail(err, errlen, "training config %s: item %d must be a number in [0, 1e6]", key, k);
        odds[k] = (float)json_number_value(x);
        sum += odds[k];
    }
    if (!(sum > 0)) return vd_fail(err, errlen, "training config %s: at least one of the odds must be above 0", key);
    return 0;
}

/* A non-empty JSON array of distinct UNet level numbers, as a mask (bit l: level l). */
static int get_levels(json_t *v, const char *key, unsigned *mask, char *err, size_t errlen)
{
    if (!json_is_array(v) || json_array_size(v) == 0)
        return vd_fail(err, errlen, "training config %s: must be a non-empty list of UNet levels", key);
    *mask = 0;
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item) {
        long long level;
        if (get_int(item, key, 0, VD_MAX_LEVELS - 1, &level, err, errlen)) return -1;
        if (*mask & (1u << level)) return vd_fail(err, errlen, "training config %s: level %lld given twice", key, level);
        *mask |= 1u << level;
    }
    return 0;
}

/* A non-empty JSON array of per-level channel counts (0 keeps the level's). */
static int get_level_widths(json_t *v, const char *key, int *widths, int *count, char *err, size_t errlen)
{
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > VD_MAX_LEVELS)
        return vd_fail(err, errlen, "training config %s: must be a list of 1 to %d channel counts, one per UNet level",
                       key, VD_MAX_LEVELS);
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item) {
        long long width;
        if (get_int(item, key, 0, 65536, &width, err, errlen)) return -1;
        widths[i] = (int)width;
    }
    *count = (int)json_array_size(v);
    return 0;
}

static int get_string(json_t *v, const char *key, char *out, size_t len, char *err, size_t errlen)
{
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= len)
        return vd_fail(err, errlen, "training config %s: must be a non-empty string shorter than %zu", key, len);
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

/* The inline autoencoder goes through the model config's own parser. */
static int parse_inline_ae(json_t *v, vd_ae_config *ae, char *err, size_t errlen)
{
    if (!json_is_object(v)) return vd_fail(err, errlen, "training config ae: not an object");
    json_t *wrap = json_pack("{s:s, s:O}", "format", "vdmini", "ae", v);
    char *text = json_dumps(wrap, JSON_COMPACT);
    json_decref(wrap);
    vd_model_config mc;
    char inner[256];
    int rc = vd_config_parse(text, &mc, inner, sizeof inner);
    free(text);
    if (rc) return vd_fail(err, errlen, "training config ae: %s", inner);
    *ae = mc.ae;
    vd_config_free(&mc);
    return 0;
}

/* "diffusion": checked now (against a default schedule), applied to init's when the run opens. */
static int get_schedule(json_t *v, char *out, size_t len, char *err, size_t errlen)
{
    char *text = json_dumps(v, JSON_COMPACT);
    vd_diffusion_config probe = {.train_steps = 1000, .snr_shift = 1.0f};
    int rc = !text || strlen(text) >= len ? vd_fail(err, errlen, "training config diffusion: too long")
                                          : vd_config_parse_schedule(text, &probe, err, errlen);
    if (rc == 0) strcpy(out, text);
    free(text);
    return rc;
}

int vd_train_config_parse(const char *json, vd_train_config *c, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loads(json, 0, &jerr);
    if (!root) return vd_fail(err, errlen, "training config: line %d: %s", jerr.line, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return vd_fail(err, errlen, "training config: not a JSON object");
    }
    int rc = 0, have_out = 0, have_init = 0;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        long long i = 0;
        if (strcmp(key, "steps") == 0) rc = get_int(v, key, 1, 100000000, &i, err, errlen), c->steps = (int)i;
        else if (strcmp(key, "batch") == 0) rc = get_int(v, key, 1, VD_WORLD_MAX_FRAMES, &i, err, errlen), c->batch = (int)i;
        else if (strcmp(key, "clips") == 0) rc = get_int(v, key, 1, 4096, &i, err, errlen), c->clips = (int)i;
        else if (strcmp(key, "image_size") == 0) rc = get_int(v, key, 8, VD_WORLD_MAX_SIDE, &i, err, errlen), c->image_size = (int)i;
        else if (strcmp(key, "warmup_steps") == 0) rc = get_int(v, key, 0, 100000000, &i, err, errlen), c->warmup_steps = (int)i;
        else if (strcmp(key, "grad_accum") == 0) rc = get_int(v, key, 1, 4096, &i, err, errlen), c->grad_accum = (int)i;
        else if (strcmp(key, "seed") == 0) rc = get_int(v, key, 0, INT64_MAX, &i, err, errlen), c->seed = (uint64_t)i;
        else if (strcmp(key, "loader_threads") == 0) rc = get_int(v, key, 1, 256, &i, err, errlen), c->loader_threads = (int)i;
        else if (strcmp(key, "checkpoint_every") == 0) rc = get_int(v, key, 0, 100000000, &i, err, errlen), c->checkpoint_every = (int)i;
        else if (strcmp(key, "log_every") == 0) rc = get_int(v, key, 1, 100000000, &i, err, errlen), c->log_every = (int)i;
        else if (strcmp(key, "lr") == 0) rc = get_float(v, key, 0, 10, &c->lr, err, errlen);
        else if (strcmp(key, "min_lr") == 0) rc = get_float(v, key, 0, 10, &c->min_lr, err, errlen);
        else if (strcmp(key, "weight_decay") == 0) rc = get_float(v, key, 0, 10, &c->weight_decay, err, errlen);
        else if (strcmp(key, "beta1") == 0) rc = get_float(v, key, 0, 0.999999, &c->beta1, err, errlen);
        else if (strcmp(key, "beta2") == 0) rc = get_float(v, key, 0, 0.999999, &c->beta2, err, errlen);
        else if (strcmp(key, "eps") == 0) rc = get_float(v, key, 1e-30, 1, &c->eps, err, errlen);
        else if (strcmp(key, "clip_norm") == 0) rc = get_float(v, key, 0, 1e9, &c->clip_norm, err, errlen);
        else if (strcmp(key, "ema_decay") == 0) rc = get_float(v, key, 0, 1, &c->ema_decay, err, errlen);
        else if (strcmp(key, "out_dir") == 0) rc = get_string(v, key, c->out_dir, sizeof c->out_dir, err, errlen), have_out = 1;
        else if (strcmp(key, "init") == 0) rc = get_string(v, key, c->init, sizeof c->init, err, errlen), have_init = 1;
        else if (strcmp(key, "lambda_icd") == 0) rc = get_float(v, key, 0, 1e6, &c->lambda_icd, err, errlen);
        else if (strcmp(key, "lambda_mca") == 0) rc = get_float(v, key, 0, 1e6, &c->lambda_mca, err, errlen);
        else if (strcmp(key, "disc_lr") == 0) rc = get_float(v, key, 0, 10, &c->disc_lr, err, errlen);
        else if (strcmp(key, "empty_prompt_rate") == 0 && c->target == VD_TRAIN_DENOISER)
            rc = get_float(v, key, 0, 1, &c->empty_prompt_rate, err, errlen);
        else if (strcmp(key, "first_frame_rate") == 0 && c->target == VD_TRAIN_DENOISER)
            rc = get_float(v, key, 0, 1, &c->first_frame_rate, err, errlen);
        else if (strcmp(key, "object_loss_weight") == 0 && c->target == VD_TRAIN_DENOISER)
            rc = get_float(v, key, 0, 100, &c->object_loss_weight, err, errlen);
        else if (strcmp(key, "object_loss_by_size") == 0 && c->target == VD_TRAIN_DENOISER) {
            if (!json_is_boolean(v)) rc = vd_fail(err, errlen, "training config object_loss_by_size: not true or false");
            else c->object_loss_by_size = json_is_true(v);
        }
        else if (strcmp(key, "object_count_odds") == 0) rc = get_count_odds(v, key, c->object_count_odds, err, errlen);
        else if (strcmp(key, "teacher") == 0 && c->target == VD_TRAIN_DENOISER)
            rc = get_string(v, key, c->teacher, sizeof c->teacher, err, errlen);
        else if (strcmp(key, "teacher_guidance") == 0 && c->target == VD_TRAIN_DENOISER)
            rc = get_float(v, key, 1, 100, &c->teacher_guidance, err, errlen);
        else if (strcmp(key, "teacher_guide_scale") == 0 && c->target == VD_TRAIN_DENOISER)
            rc = get_float(v, key, 0, 100, &c->teacher_guide_scale, err, errlen);
        else if (strcmp(key, "teacher_guide") == 0 && c->target == VD_TRAIN_DENOISER)
            rc = get_string(v, key, c->teacher_guide, sizeof c->teacher_guide, err, errlen);
        else if (strcmp(key, "diffusion") == 0 && c->target == VD_TRAIN_DENOISER)
            rc = get_schedule(v, c->schedule, sizeof c->schedule, err, errlen);
        else if (strcmp(key, "pooled_text") == 0 && c->target == VD_TRAIN_DENOISER) {
            if (!json_is_true(v))
                rc = vd_fail(err, errlen, "training config pooled_text: only true (it adds the pooled text to init's UNet)");
            else
                c->pooled_text = 1;
        }
        else if (strcmp(key, "add_attention") == 0 && c->target == VD_TRAIN_DENOISER)
            rc = get_levels(v, key, &c->add_attention, err, errlen);
        else if (strcmp(key, "inner_channels") == 0 && c->target == VD_TRAIN_DENOISER)
            rc = get_level_widths(v, key, c->inner_channels, &c->inner_levels, err, errlen);
        else if (strcmp(key, "ae") == 0 && c->target == VD_TRAIN_DENOISER)
            rc = get_string(v, key, c->ae_path, sizeof c->ae_path, err, errlen);
        else if (strcmp(key, "ae") == 0) rc = parse_inline_ae(v, &c->ae, err, errlen), c->has_ae = 1;
        else rc = vd_fail(err, errlen, "training config: unknown field \"%s\"", key);
        if (rc) break;
    }
    json_decref(root);
    if (rc) return -1;
    if (!have_out) return vd_fail(err, errlen, "training config out_dir: required");
    if (c->target == VD_TRAIN_DENOISER && !c->ae_path[0])
        return vd_fail(err, errlen, "training config ae: required (the trained autoencoder's weights file)");
    if (have_init && c->has_ae) return vd_fail(err, errlen, "training config: give init or ae, not both");
    if (c->has_ae) c->init[0] = 0;
    if (c->warmup_steps > c->steps) return vd_fail(err, errlen, "training config warmup_steps: more than steps");
    if (c->min_lr > c->lr) return vd_fail(err, errlen, "training config min_lr: above lr");
    if (c->teacher[0] && c->clips > VD_DISTILL_MAX_CLIPS)
        return vd_fail(err, errlen, "training config clips: at most %d when distilling", VD_DISTILL_MAX_CLIPS);
    if (c->teacher_guidance != 0 && !(c->teacher_guidance > 1))
        return vd_fail(err, errlen, "training config teacher_guidance: must be above 1 (guidance 1 is no guidance)");
    if ((c->teacher_guide[0] || c->teacher_guide_scale > 0) && !(c->teacher_guidance > 1))
        return vd_fail(err, errlen, "training config teacher_guide: needs a teacher_guidance above 1");
    if (c->teacher_guide_scale > 0 && !c->teacher_guide[0])
        return vd_fail(err, errlen, "training config teacher_guide_scale: needs a teacher_guide model file");
    if (c->object_loss_by_size && !(c->object_loss_weight > 0))
        return vd_fail(err, errlen, "training config object_loss_by_size: needs an object_loss_weight above 0 to scale");
    if (c->disc_lr == 0) c->disc_lr = c->lr;
    return 0;
}

/* The whole file as a NUL-terminated string, or NULL with a message. */
static char *read_text(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        vd_fail(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = vd_malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) buf = vd_realloc(buf, cap *= 2);
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        vd_fail(err, errlen, "%s: read error", path);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

int vd_train_config_load(const char *path, vd_train_config *c, char *err, size_t errlen)
{
    char *text = read_text(path, NULL, err, errlen);
    if (!text) return -1;
    char inner[256];
    int rc = vd_train_config_parse(text, c, inner, sizeof inner);
    free(text);
    if (rc) return vd_fail(err, errlen, "%s: %s", path, inner);
    return 0;
}

/* ---- schedule ---- */

float vd_train_lr(const vd_train_config *c, int step)
{
    if (step < c->warmup_steps) return c->lr * (float)(step + 1) / (float)c->warmup_steps;
    int span = c->steps - 1 - c->warmup_steps;
    double p = span > 0 ? (double)(step - c->warmup_steps) / span : 1.0;
    if (p > 1) p = 1;
    return (float)(c->min_lr + (c->lr - c->min_lr) * 0.5 * (1.0 + cos(3.14159265358979323846 * p)));
}

/* ---- files ---- */

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int make_dir(const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0777) && errno != EEXIST) return vd_fail(err, errlen, "%s: %s", dir, strerror(errno));
    return 0;
}

/* Writes path through path.tmp: write, fsync, rename. */
static int write_atomic(const char *path, const char *data, size_t len, char *err, size_t errlen)
{
    char tmp[VD_TRAIN_PATH_LEN + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return vd_fail(err, errlen, "%s: %s", tmp, strerror(errno));
    int bad = fwrite(data, 1, len, f) != len || fflush(f) || fsync(fileno(f));
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path)) {
        unlink(tmp);
        return vd_fail(err, errlen, "%s: cannot write", path);
    }
    return 0;
}

/* Removes a directory of plain files (a checkpoint being replaced). */
static void remove_flat_dir(const char *dir)
{
    char path[VD_TRAIN_PATH_LEN * 2];
    for (int i = 0;; i++) {
        snprintf(path, sizeof path, "%s/shard-%05d.safetensors", dir, i);
        if (unlink(path)) break;
    }
    snprintf(path, sizeof path, "%s/" DISC_FILE, dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    unlink(path);
    rmdir(dir);
}

/* ---- the run ---- */

struct vd_train_run {
    vd_train_config cfg;
    vd_backend *be;
    vd_model model;
    vd_ae_trainer trainer;
    float *ema;          /* backend, the model's layout */
    vd_loader *loader;
    uint64_t next_clip;  /* the loader's position */
    int frames;          /* frames per micro-batch: clips * batch */
    int side;            /* frames are side x side */
    float *frames_dev;   /* the micro-batch's clips, uploaded from the loader's slots */
    size_t begin, end;   /* the floats of the parameter buffer the optimizer steps */
    vd_clip_truth *truth; /* the micro-batch's clips */
    /* the denoiser's: the frozen autoencoder, its schedule and the UNet's inputs */
    vd_model ae;
    double *abar;
    double prep_s; /* this step's input preparation so far (vd_train_stats.prep_ms) */
    float *eps_host, *t_host;     /* per clip: its noise, its timestep */
    float *weight_host, *weight_dev; /* the loss weight maps, with object_loss_weight only */
    char *empty_prompt, *first_frame; /* per clip: the random choices of the loss */
    int32_t *ids_host;
    float *z0_dev, *eps_dev, *zt_dev, *cond_dev, *cond_row_dev, *x_dev, *v_dev, *t_dev;
    int32_t *ids_dev;
    vd_distill *distill; /* a distillation's teacher and discriminator, else NULL */
    float *renoise_t_host, *renoise_eps_host, *renoise_eps_dev; /* its re-noising draws */
    vd_train_stats terms; /* a distillation's loss terms, summed over the step's micro-batches */
    /* data parallelism: this replica's number of `ranks`; the first replica holds the others */
    int rank, ranks;
    vd_train_run **peers; /* replicas 1 .. ranks - 1 (the first's only) */
    struct grad_exchange *exchange; /* shared by the replicas */
};

/* The replicas' meeting point in a step: each downloads its gradient sums (the model's over
 * [begin, end), then a distillation's discriminator heads'), the sums are added on the host (each
 * replica adds one slice), and each uploads the totals; the loss and its terms are added too. */
enum { SUM_LOSS, SUM_TASK, SUM_ICD, SUM_MCA, SUM_DISC, SUM_COUNT };

typedef struct grad_exchange {
    pthread_barrier_t barrier;
    size_t floats;            /* gradients exchanged per replica */
    float **host;             /* per replica: its gradients; host[0] receives the totals */
    double (*sums)[SUM_COUNT]; /* per replica: its micro-batches' summed loss and terms */
} grad_exchange;

static int check_side(const vd_train_config *c, const vd_ae_config *ae, int *side, char *err, size_t errlen)
{
    *side = c->image_size ? c->image_size : ae->image_size;
    int factor = 1 << (ae->levels - 1);
    if (*side % factor || *side < 8 || *side > VD_WORLD_MAX_SIDE)
        return vd_fail(err, errlen, "image_size %d: must be in [8, %d] and a multiple of %d", *side, VD_WORLD_MAX_SIDE,
                       factor);
    return 0;
}

/* Keeps the parts of full that the run trains (the autoencoder, or the text encoder and UNet with
 * the diffusion schedule) in mc, and frees full. */
static int keep_trained_parts(vd_model_config *mc, vd_model_config *full, vd_train_target target, const char *init,
                              char *err, size_t errlen)
{
    int rc = 0;
    memset(mc, 0, sizeof *mc);
    if (target == VD_TRAIN_AE) {
        if (!full->ae.present) rc = vd_fail(err, errlen, "init %s: no autoencoder", init);
        mc->ae = full->ae;
        vd_config_free(full);
    } else {
        if (!full->text.present || !full->unet.present) rc = vd_fail(err, errlen, "init %s: no text encoder and UNet", init);
        *mc = *full; /* takes over full's allocations */
        memset(&mc->ae, 0, sizeof mc->ae);
    }
    return rc;
}

/* The name prefixes ("unet.down.0.0.attn.") of the attention blocks at the levels of mask, into
 * prefix (VD_UNET_MAX_STAGES entries); returns how many. */
static int attention_prefixes(const vd_unet_config *u, unsigned mask, char (*prefix)[32])
{
    vd_unet_stage st[VD_UNET_MAX_STAGES];
    char err[128];
    int n = vd_unet_plan(u, st, err, sizeof err), count = 0;
    for (int i = 0; i < n; i++)
        if (st[i].attn && (mask & (1u << st[i].level))) snprintf(prefix[count++], 32, "unet.%s.attn.", st[i].name);
    return count;
}

/* How a parameter of a part this run adds to init's UNet starts: -1 when it is no such part (it
 * comes from the file), 0 at its random value, 1 at zero. Added parts start adding nothing: the
 * pooled text at zero throughout, an attention block by its zero output projection. */
static int added_part_start(const char *name, int add_pool, char (*attn_prefix)[32], int attn_count)
{
    if (add_pool && strncmp(name, "unet.text_pool.", 15) == 0) return 1;
    for (int k = 0; k < attn_count; k++) {
        size_t len = strlen(attn_prefix[k]);
        if (strncmp(name, attn_prefix[k], len) == 0) return strncmp(name + len, "proj_out.", 9) == 0;
    }
    return -1;
}

/* Whether a ResBlock tensor of the model is wider than the file's: a weights tensor of the same
 * rank whose every dimension is at least the file's. Such a tensor (init widened by the run's
 * inner_channels) gets the file's values in its leading corner, and the rest of conv2's weight
 * zero, so that the new inner channels change nothing yet (their other tensors keep their random
 * start). */
static int load_widened(const vd_param *p, const vd_st_tensor *t, float *dst)
{
    if (!strstr(p->name, ".res") || t->ndim != p->ndim) return -1;
    for (int d = 0; d < p->ndim; d++) /* only the first two dims grow, never a conv's k x k */
        if (t->shape[d] > p->shape[d] || (d >= 2 && t->shape[d] != p->shape[d])) return -1;
    float *file = vd_malloc((size_t)vd_st_numel(t) * sizeof(float));
    int rc = vd_st_to_f32(t, file);
    size_t len = strlen(p->name);
    /* rows of the file's tensor, as (rows, inner) with inner the product of the trailing dims */
    size_t rows = (size_t)t->shape[0], file_inner = (size_t)vd_st_numel(t) / rows, model_inner = p->numel / (size_t)p->shape[0];
    if (rc == 0) {
        if (len > 13 && strcmp(p->name + len - 13, ".conv2.weight") == 0) memset(dst, 0, p->numel * sizeof(float));
        for (size_t r = 0; r < rows; r++) memcpy(dst + r * model_inner, file + r * file_inner, file_inner * sizeof(float));
    }
    free(file);
    return rc;
}

/* The trained model of the config's init (preset or file) or inline config, built and filled. */
static int init_model(vd_model *m, const vd_train_config *c, char *err, size_t errlen)
{
    vd_model_config mc, full;
    memset(&mc, 0, sizeof mc);
    vd_st_file f;
    int from_file = 0, rc = 0;
    if (c->has_ae) {
        mc.ae = c->ae;
    } else if (vd_config_preset(c->init, &full) == 0) {
        rc = keep_trained_parts(&mc, &full, c->target, c->init, err, errlen);
    } else {
        char inner[256];
        if (vd_st_read(c->init, &f, inner, sizeof inner))
            return vd_fail(err, errlen, "init: neither a preset nor a readable weights file: %s", inner);
        from_file = 1;
        const char *json = vd_st_meta(&f, "vdmini.config");
        if (!json || vd_config_parse(json, &full, inner, sizeof inner))
            rc = vd_fail(err, errlen, "init %s: no valid model config in the file", c->init);
        else
            rc = keep_trained_parts(&mc, &full, c->target, c->init, err, errlen);
    }
    if (rc == 0 && c->schedule[0]) rc = vd_config_parse_schedule(c->schedule, &mc.diffusion, err, errlen);
    /* the pooled text added here starts at zero; a file that has it keeps its weights */
    int add_pool = rc == 0 && c->pooled_text && !mc.unet.pooled_text;
    if (add_pool) mc.unet.pooled_text = 1;
    /* attention added here keeps its random weights but outputs zero; a level that has it keeps
     * the file's weights */
    unsigned add_attn = 0;
    for (int l = 0; rc == 0 && l < VD_MAX_LEVELS; l++) {
        if (!(c->add_attention & (1u << l))) continue;
        if (l >= mc.unet.levels)
            rc = vd_fail(err, errlen, "training config add_attention: level %d, but init's UNet has %d levels", l,
                         mc.unet.levels);
        else if (!mc.unet.attention[l])
            mc.unet.attention[l] = 1, add_attn |= 1u << l;
    }
    if (rc == 0 && c->inner_levels) {
        char why[160];
        if (vd_unet_set_inner_channels(&mc.unet, c->inner_channels, c->inner_levels, why, sizeof why))
            rc = vd_fail(err, errlen, "training config %s (init %s)", why, c->init);
    }
    if (rc == 0) rc = vd_model_build(m, &mc, err, errlen);
    vd_config_free(&mc);
    if (rc == 0) {
        vd_model_init_random(m, c->seed);
        char (*attn_prefix)[32] = vd_malloc(VD_UNET_MAX_STAGES * sizeof *attn_prefix);
        int attn_count = add_attn ? attention_prefixes(&m->cfg.unet, add_attn, attn_prefix) : 0;
        for (int i = 0; from_file && i < m->nparams && rc == 0; i++) {
            const vd_param *p = &m->params[i];
            int start = added_part_start(p->name, add_pool, attn_prefix, attn_count);
            if (start == 1) memset(m->host + p->offset, 0, p->numel * sizeof(float));
            if (start >= 0) continue; /* not in the file */
            const vd_st_tensor *t = vd_st_find(&f, p->name);
            int loaded = !t ? -1
                         : (size_t)vd_st_numel(t) == p->numel ? vd_st_to_f32(t, m->host + p->offset)
                         : c->inner_levels ? load_widened(p, t, m->host + p->offset)
                                           : -1;
            if (loaded) rc = vd_fail(err, errlen, "init %s: tensor %s missing or of the wrong shape", c->init, p->name);
        }
        free(attn_prefix);
    }
    if (from_file) vd_st_free(&f);
    return rc;
}

static float *group_buffer(vd_train_run *r, int g)
{
    return g == GROUP_WEIGHTS ? r->model.weights : g == GROUP_EMA ? r->ema : g == GROUP_ADAM_M ? r->trainer.adam_m
                                                                                               : r->trainer.adam_v;
}

/* Reads the tensors of the groups in `want` (bit g for group g) from a checkpoint's shards into
 * host[g], in m's parameter layout; tensors of other groups are skipped, and every parameter of
 * every wanted group must be there. */
static int read_checkpoint_groups(const vd_model *m, const char *dir, json_t *manifest, unsigned want, float *const *host,
                                  char *err, size_t errlen)
{
    unsigned char *seen = vd_calloc((size_t)GROUP_COUNT * m->nparams, 1);
    json_t *shards = json_object_get(manifest, "shards");
    int rc = json_is_array(shards) ? 0 : vd_fail(err, errlen, "%s: manifest has no shard list", dir);
    for (size_t s = 0; rc == 0 && s < json_array_size(shards); s++) {
        const char *name = json_string_value(json_array_get(shards, s));
        char path[VD_TRAIN_PATH_LEN * 2], inner[256];
        if (!name || strchr(name, '/')) {
            rc = vd_fail(err, errlen, "%s: bad shard name in the manifest", dir);
            break;
        }
        snprintf(path, sizeof path, "%s/%s", dir, name);
        vd_st_file f;
        if (vd_st_read(path, &f, inner, sizeof inner)) {
            rc = vd_fail(err, errlen, "%s", inner);
            break;
        }
        for (int i = 0; rc == 0 && i < f.count; i++) {
            const vd_st_tensor *t = &f.tensors[i];
            const char *dot = strchr(t->name, '.');
            int g = 0;
            while (g < GROUP_COUNT && !(dot && (size_t)(dot - t->name) == strlen(GROUPS[g]) &&
                                        strncmp(t->name, GROUPS[g], strlen(GROUPS[g])) == 0))
                g++;
            const vd_param *p = g < GROUP_COUNT ? vd_model_param(m, dot + 1) : NULL;
            if (!p || t->dtype != VD_ST_F32 || (size_t)vd_st_numel(t) != p->numel) {
                rc = vd_fail(err, errlen, "%s: unexpected tensor %s", path, t->name);
                break;
            }
            if (!(want & (1u << g))) continue;
            vd_st_to_f32(t, host[g] + p->offset);
            seen[(size_t)g * m->nparams + (size_t)(p - m->params)] = 1;
        }
        vd_st_free(&f);
    }
    for (int g = 0; rc == 0 && g < GROUP_COUNT; g++)
        for (int i = 0; rc == 0 && (want & (1u << g)) && i < m->nparams; i++)
            if (!seen[(size_t)g * m->nparams + i])
                rc = vd_fail(err, errlen, "%s: %s.%s missing", dir, GROUPS[g], m->params[i].name);
    free(seen);
    return rc;
}

/* Reads a checkpoint directory into the run's (already built) model and its buffers. */
static int load_checkpoint(vd_train_run *r, const char *dir, json_t *manifest, char *err, size_t errlen)
{
    vd_model *m = &r->model;
    size_t bytes = m->total * sizeof(float);
    float *host[GROUP_COUNT];
    for (int g = 0; g < GROUP_COUNT; g++) host[g] = vd_malloc(bytes);
    int rc = read_checkpoint_groups(m, dir, manifest, (1u << GROUP_COUNT) - 1, host, err, errlen);
    if (rc == 0) {
        memcpy(m->host, host[GROUP_WEIGHTS], bytes);
        for (int g = 0; g < GROUP_COUNT; g++) r->be->upload(r->be, group_buffer(r, g), host[g], bytes);
        r->be->declare_constant(r->be, m->weights, bytes);
    }
    for (int g = 0; g < GROUP_COUNT; g++) free(host[g]);
    return rc;
}

static json_t *read_manifest(const char *dir, vd_train_target target, char *err, size_t errlen)
{
    char path[VD_TRAIN_PATH_LEN * 2];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        vd_fail(err, errlen, "%s: %s", path, jerr.text);
        return NULL;
    }
    if (!json_is_string(json_object_get(root, "format")) ||
        strcmp(json_string_value(json_object_get(root, "format")), MANIFEST_FORMATS[target]) != 0) {
        json_decref(root);
        vd_fail(err, errlen, "%s: not a vdmini %s checkpoint", path, target == VD_TRAIN_AE ? "autoencoder" : "denoiser");
        return NULL;
    }
    return root;
}

static int manifest_int(json_t *root, const char *key, long long *out)
{
    json_t *v = json_object_get(root, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = json_integer_value(v);
    return 0;
}

/* Builds the model described by a checkpoint's manifest and checks the config against it. */
static int open_from_checkpoint(vd_train_run *r, const char *dir, char *err, size_t errlen)
{
    json_t *root = read_manifest(dir, r->cfg.target, err, errlen);
    if (!root) return -1;
    long long step = 0, clip = 0, seed = 0, batch = 0, clips = 0, side = 0;
    const char *model_json = json_string_value(json_object_get(root, "model_config"));
    vd_model_config mc;
    char inner[256];
    int rc = 0;
    if (manifest_int(root, "step", &step) || manifest_int(root, "next_clip", &clip) ||
        manifest_int(root, "seed", &seed) || manifest_int(root, "batch", &batch) || manifest_int(root, "clips", &clips) ||
        manifest_int(root, "image_size", &side) || !model_json) {
        rc = vd_fail(err, errlen, "%s: manifest incomplete", dir);
    } else if (vd_config_parse(model_json, &mc, inner, sizeof inner)) {
        rc = vd_fail(err, errlen, "%s: model config: %s", dir, inner);
    } else {
        if ((uint64_t)seed != r->cfg.seed || batch != r->cfg.batch || clips != r->cfg.clips)
            rc = vd_fail(err, errlen, "%s: written with seed %lld, batch %lld and clips %lld; the config says %llu, %d and %d",
                         dir, seed, batch, clips, (unsigned long long)r->cfg.seed, r->cfg.batch, r->cfg.clips);
        else if (check_side(&r->cfg, r->cfg.target == VD_TRAIN_AE ? &mc.ae : &r->ae.cfg.ae, &r->side, err, errlen))
            rc = -1;
        else if (r->side != side)
            rc = vd_fail(err, errlen, "%s: written with image size %lld; the config says %d", dir, side, r->side);
        if (rc == 0) rc = vd_model_build(&r->model, &mc, err, errlen);
        vd_config_free(&mc);
    }
    if (rc == 0) {
        r->model.host = vd_malloc(r->model.total * sizeof(float));
        vd_model_attach(&r->model, r->be);
        vd_ae_trainer_init(&r->trainer, &r->model);
        r->ema = r->be->alloc(r->be, r->model.total * sizeof(float));
        rc = load_checkpoint(r, dir, root, err, errlen);
        r->trainer.step = (int)step;
        r->next_clip = (uint64_t)clip;
    }
    json_decref(root);
    return rc;
}

/* The denoiser's frozen autoencoder, read from the config's file and checked against the UNet. */
static int open_autoencoder(vd_train_run *r, char *err, size_t errlen)
{
    const vd_train_config *c = &r->cfg;
    char inner[256];
    if (vd_model_load(&r->ae, c->ae_path, inner, sizeof inner))
        return vd_fail(err, errlen, "ae %s: %s", c->ae_path, inner);
    if (!r->ae.cfg.ae.present) return vd_fail(err, errlen, "ae %s: the file has no autoencoder", c->ae_path);
    vd_model_attach(&r->ae, r->be);
    return 0;
}

static int check_denoiser(const vd_train_run *r, char *err, size_t errlen)
{
    const vd_unet_config *u = &r->model.cfg.unet;
    int lc = r->ae.cfg.ae.latent_channels;
    if (u->in_channels != 2 * lc + 1 || u->out_channels != lc)
        return vd_fail(err, errlen, "the UNet takes %d channels and gives %d; the autoencoder's %d latent channels need %d "
                       "and %d", u->in_channels, u->out_channels, lc, 2 * lc + 1, lc);
    return 0;
}

/* The denoiser's buffers for one micro-batch: clips of batch frames, side x side. */
static void alloc_denoiser_buffers(vd_train_run *r)
{
    vd_backend *be = r->be;
    const vd_model_config *mc = &r->model.cfg;
    int N = r->cfg.clips, T = r->frames, lc = r->ae.cfg.ae.latent_channels, f = 1 << (r->ae.cfg.ae.levels - 1);
    size_t S = (size_t)(r->side / f) * (r->side / f), zn = (size_t)T * lc * S, xn = (size_t)T * mc->unet.in_channels * S;
    size_t L = (size_t)mc->text.max_tokens * N;
    r->abar = vd_alphas_cumprod(&mc->diffusion);
    r->eps_host = vd_malloc(zn * sizeof(float)), r->t_host = vd_malloc((size_t)N * sizeof(float));
    r->empty_prompt = vd_malloc((size_t)N), r->first_frame = vd_malloc((size_t)N);
    r->ids_host = vd_malloc(L * sizeof(int32_t));
    r->z0_dev = be->alloc(be, zn * sizeof(float)), r->v_dev = be->alloc(be, zn * sizeof(float));
    r->eps_dev = be->alloc(be, zn * sizeof(float)), r->zt_dev = be->alloc(be, zn * sizeof(float));
    r->cond_dev = be->alloc(be, (size_t)T * (lc + 1) * S * sizeof(float));
    /* one frame's condition, the first frame's latent and a mask of ones: its last S values
     * stay 1 */
    r->cond_row_dev = be->alloc(be, (size_t)(lc + 1) * S * sizeof(float));
    float *ones = vd_malloc(S * sizeof(float));
    for (size_t i = 0; i < S; i++) ones[i] = 1.0f;
    be->upload(be, r->cond_row_dev + (size_t)lc * S, ones, S * sizeof(float));
    free(ones);
    r->x_dev = be->alloc(be, xn * sizeof(float)), r->t_dev = be->alloc(be, (size_t)N * sizeof(float));
    r->ids_dev = be->alloc(be, L * sizeof(int32_t));
    if (r->cfg.object_loss_weight > 0)
        r->weight_host = vd_malloc(zn * sizeof(float)), r->weight_dev = be->alloc(be, zn * sizeof(float));
}

/* Opens replica `rank` of `ranks` on be (the calling thread's current backend). */
static vd_train_run *open_replica(const vd_train_config *c, vd_backend *be, int rank, int ranks,
                                  const char *resume_dir, char *err, size_t errlen)
{
    vd_train_run *r = vd_calloc(1, sizeof *r);
    r->cfg = *c;
    r->be = be;
    r->rank = rank, r->ranks = ranks;
    int denoiser = c->target == VD_TRAIN_DENOISER;
    int rc = denoiser ? open_autoencoder(r, err, errlen) : 0;
    if (rc == 0 && resume_dir) {
        rc = open_from_checkpoint(r, resume_dir, err, errlen);
    } else if (rc == 0) {
        rc = init_model(&r->model, c, err, errlen);
        if (rc == 0) rc = check_side(c, denoiser ? &r->ae.cfg.ae : &r->model.cfg.ae, &r->side, err, errlen);
        if (rc == 0) {
            vd_model_attach(&r->model, be);
            vd_ae_trainer_init(&r->trainer, &r->model);
            size_t bytes = r->model.total * sizeof(float);
            r->ema = be->alloc(be, bytes);
            be->copy(be, r->ema, r->model.weights, bytes);
        }
    }
    if (rc == 0 && denoiser) rc = check_denoiser(r, err, errlen);
    if (rc == 0 && c->teacher[0]) {
        r->distill = vd_distill_open(c->teacher, &r->model, be, c->lambda_icd, c->lambda_mca, c->disc_lr, c->seed, err,
                                     errlen);
        rc = r->distill ? 0 : -1;
        if (rc == 0 && c->teacher_guidance > 1) {
            rc = vd_distill_set_guided_target(r->distill, c->teacher_guidance, c->teacher_guide, c->teacher_guide_scale,
                                              err, errlen);
            r->model.cfg.sampling.guidance = 1.0f; /* its prediction is guided already: it samples without */
        }
        if (rc == 0) {
            int f = 1 << (r->ae.cfg.ae.levels - 1);
            size_t zn = (size_t)c->clips * c->batch * r->ae.cfg.ae.latent_channels * (r->side / f) * (r->side / f);
            r->renoise_t_host = vd_malloc((size_t)c->clips * sizeof(float));
            r->renoise_eps_host = vd_malloc(zn * sizeof(float));
            r->renoise_eps_dev = be->alloc(be, zn * sizeof(float));
        }
        if (rc == 0 && resume_dir) {
            char path[VD_TRAIN_PATH_LEN + 64], inner[256];
            snprintf(path, sizeof path, "%s/" DISC_FILE, resume_dir);
            if (vd_distill_load(r->distill, path, inner, sizeof inner))
                rc = vd_fail(err, errlen, "%s: not a distillation checkpoint of this teacher: %s", resume_dir, inner);
        }
    }
    if (rc) {
        vd_train_close(r);
        return NULL;
    }
    static const char *const ae_part[] = {"ae."}, *const denoiser_parts[] = {"text.", "unet."};
    vd_param_range(&r->model, denoiser ? denoiser_parts : ae_part, denoiser ? 2 : 1, &r->begin, &r->end);
    /* micro-batch k of a step runs on replica k % ranks: a replica renders ahead its share */
    int own_odds = 0;
    for (int k = 0; k < VD_WORLD_MAX_OBJECTS; k++) own_odds |= c->object_count_odds[k] > 0;
    r->loader = vd_loader_new_strided(c->seed, r->next_clip + (uint64_t)rank * c->clips, c->clips, ranks * c->clips,
                                      r->side, r->side, c->batch, c->loader_threads,
                                      2 * c->loader_threads + c->clips * (c->grad_accum / ranks),
                                      own_odds ? c->object_count_odds : NULL);
    r->frames = c->clips * c->batch;
    r->truth = vd_malloc((size_t)c->clips * sizeof *r->truth);
    r->frames_dev = be->alloc(be, (size_t)r->frames * 3 * r->side * r->side * sizeof(float));
    if (denoiser) alloc_denoiser_buffers(r);
    return r;
}

static void activate(vd_backend *be)
{
    if (be->activate) be->activate(be);
}

vd_train_run *vd_train_open_on(const vd_train_config *c, vd_backend *const *be, int count, const char *resume_dir,
                               char *err, size_t errlen)
{
    if (count < 1 || count > VD_TRAIN_MAX_REPLICAS) {
        vd_fail(err, errlen, "%d devices: a run is spread over 1 to %d", count, VD_TRAIN_MAX_REPLICAS);
        return NULL;
    }
    if (c->grad_accum % count) {
        vd_fail(err, errlen, "grad_accum %d: must be a multiple of the %d devices the run is spread over",
                c->grad_accum, count);
        return NULL;
    }
    activate(be[0]);
    vd_train_run *r = open_replica(c, be[0], 0, count, resume_dir, err, errlen);
    if (!r || count == 1) return r;
    r->peers = vd_calloc((size_t)count - 1, sizeof *r->peers);
    for (int i = 1; i < count; i++) {
        activate(be[i]);
        r->peers[i - 1] = open_replica(c, be[i], i, count, resume_dir, err, errlen);
        if (!r->peers[i - 1]) {
            vd_train_close(r);
            return NULL;
        }
    }
    activate(be[0]);
    grad_exchange *x = vd_calloc(1, sizeof *x);
    pthread_barrier_init(&x->barrier, NULL, (unsigned)count);
    x->floats = r->end - r->begin + (r->distill ? vd_distill_disc_size(r->distill) : 0);
    x->host = vd_calloc((size_t)count, sizeof *x->host);
    x->sums = vd_calloc((size_t)count, sizeof *x->sums);
    for (int i = 0; i < count; i++) x->host[i] = vd_malloc(x->floats * sizeof(float));
    r->exchange = x;
    for (int i = 1; i < count; i++) r->peers[i - 1]->exchange = x;
    return r;
}

vd_train_run *vd_train_open(const vd_train_config *c, vd_backend *be, const char *resume_dir, char *err, size_t errlen)
{
    return vd_train_open_on(c, &be, 1, resume_dir, err, errlen);
}

void vd_train_close(vd_train_run *r)
{
    if (!r) return;
    if (r->peers) {
        for (int i = 1; i < r->ranks; i++)
            if (r->peers[i - 1]) activate(r->peers[i - 1]->be), vd_train_close(r->peers[i - 1]);
        free(r->peers);
        activate(r->be);
    }
    if (r->exchange && r->rank == 0) {
        grad_exchange *x = r->exchange;
        pthread_barrier_destroy(&x->barrier);
        for (int i = 0; i < r->ranks; i++) free(x->host[i]);
        free(x->host), free(x->sums), free(x);
    }
    vd_backend *be = r->be;
    vd_loader_free(r->loader);
    vd_distill_free(r->distill);
    if (r->renoise_eps_dev) be->release(be, r->renoise_eps_dev);
    free(r->renoise_t_host), free(r->renoise_eps_host);
    float *dev[] = {r->frames_dev, r->ema, r->z0_dev, r->eps_dev, r->zt_dev, r->cond_dev, r->cond_row_dev,
                    r->x_dev, r->v_dev, r->t_dev, (float *)r->ids_dev, r->weight_dev};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++)
        if (dev[i]) be->release(be, dev[i]);
    free(r->eps_host), free(r->t_host), free(r->ids_host), free(r->weight_host);
    free(r->empty_prompt), free(r->first_frame);
    free(r->abar), free(r->truth);
    if (r->trainer.m) vd_ae_trainer_free(&r->trainer);
    vd_model_free(&r->model);
    vd_model_free(&r->ae);
    free(r);
}

int vd_train_done_steps(const vd_train_run *r) { return r->trainer.step; }

size_t vd_train_param_count(const vd_train_run *r) { return r->model.total; }

void vd_train_object_weight(const vd_clip_truth *t, int frames, int channels, int h, int w, int f, float k,
                            int by_size, float *out)
{
    size_t S = (size_t)h * w;
    int side = t->width < t->height ? t->width : t->height;
    float medium_reach = 1.6f * vd_size_radius(VD_SIZE_MEDIUM, side) + 0.5f * f;
    for (int i = 0; i < frames; i++) {
        float *frame = out + (size_t)i * channels * S;
        for (size_t p = 0; p < S; p++) frame[p] = 1.0f;
        for (int o = 0; o < t->object_count; o++) {
            const vd_world_object *obj = &t->objects[o];
            const vd_track_point *at = &obj->track[i < t->frames ? i : t->frames - 1];
            float reach = 1.6f * vd_size_radius(obj->size, side) * at->scale + 0.5f * f;
            float weight = 1.0f + (by_size ? k * (medium_reach / reach) * (medium_reach / reach) : k);
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) {
                    float dx = (x + 0.5f) * f - at->x, dy = (y + 0.5f) * f - at->y;
                    float *value = &frame[(size_t)y * w + x];
                    if (dx * dx + dy * dy <= reach * reach && weight > *value) *value = weight;
                }
        }
        for (int ch = 1; ch < channels; ch++) memcpy(frame + ch * S, frame, S * sizeof(float));
    }
}

/* Uploads the next micro-batch's clips to frames_dev, each straight from the loader's slot it was
 * rendered in, and their truths to r->truth. Returns the seconds spent waiting for the loader;
 * the uploads count as input preparation (r->prep_s). */
static double fetch_clips(vd_train_run *r)
{
    size_t clip_bytes = (size_t)r->cfg.batch * 3 * r->side * r->side * sizeof(float);
    double waited = 0;
    for (int n = 0; n < r->cfg.clips; n++) {
        double start = vd_now();
        const float *frames = vd_loader_borrow(r->loader, &r->truth[n]);
        double lent = vd_now();
        r->be->upload(r->be, (char *)r->frames_dev + (size_t)n * clip_bytes, frames, clip_bytes);
        vd_loader_give_back(r->loader);
        waited += lent - start;
        r->prep_s += vd_now() - lent;
    }
    return waited;
}

/* The random draws of the denoiser's micro-batch of clips first, first + 1, ...: per clip, from
 * the counter RNG, the prompt or the empty one, the condition or none, the timestep and the noise
 * (and a distillation's re-noising), and the clip's loss weight map where the run has one.
 * Clips [begin, end) of the micro-batch go to one of NOISE_THREADS helper threads, which run
 * while the frames are encoded: a clip's draws depend on its number alone, so the split changes
 * no bit. */
#define NOISE_THREADS 4

typedef struct {
    vd_train_run *r;
    uint64_t first;
    int begin, end;
    size_t clip_z; /* floats of one clip's latents */
    int frames, channels, h, w, f; /* a clip's latents: frames x channels x h x w, f x f pixels each */
} noise_job;

static void *draw_noise(void *arg)
{
    const noise_job *job = arg;
    vd_train_run *r = job->r;
    const vd_train_config *c = &r->cfg;
    int steps = r->model.cfg.diffusion.train_steps;
    uint64_t stream = c->seed ^ DENOISER_STREAM;
    for (int n = job->begin; n < job->end; n++) {
        uint64_t clip = job->first + (uint64_t)n;
        uint64_t choices = vd_rng_u64(stream, 2 * clip), noise = vd_rng_u64(stream, 2 * clip + 1);
        r->empty_prompt[n] = vd_rng_uniform(choices, 0) < c->empty_prompt_rate;
        r->first_frame[n] = vd_rng_uniform(choices, 1) < c->first_frame_rate;
        r->t_host[n] = (float)(vd_rng_u64(choices, 2) % (uint64_t)steps);
        vd_rng_normal(noise, 0, r->eps_host + (size_t)n * job->clip_z, job->clip_z);
        if (r->distill) {
            uint64_t key = vd_rng_u64(c->seed ^ RENOISE_STREAM, clip);
            r->renoise_t_host[n] = (float)(vd_rng_u64(key, 0) % (uint64_t)steps);
            vd_rng_normal(key, 1, r->renoise_eps_host + (size_t)n * job->clip_z, job->clip_z);
        }
        if (r->weight_host)
            vd_train_object_weight(&r->truth[n], job->frames, job->channels, job->h, job->w, job->f,
                                   c->object_loss_weight, c->object_loss_by_size,
                                   r->weight_host + (size_t)n * job->clip_z);
    }
    return NULL;
}

/* The denoiser's loss on the clips in frames_dev (clip numbers first, first + 1, ... of the
 * run), its gradients accumulated into the trainer's. The inputs are made on the backend:
 * z_t = a z0 + b eps and v = a eps - b z0 per clip, the condition (the first frame's latent and a
 * mask of ones on every frame, or zeros) beside z_t. */
static float denoiser_micro_batch(vd_train_run *r, uint64_t first)
{
    const vd_train_config *c = &r->cfg;
    vd_backend *be = r->be;
    vd_model *m = &r->model;
    int N = c->clips, T = c->batch, L = m->cfg.text.max_tokens, lc = r->ae.cfg.ae.latent_channels;
    int f = 1 << (r->ae.cfg.ae.levels - 1), h = r->side / f, w = r->side / f;
    size_t S = (size_t)h * w, frame_z = (size_t)lc * S, clip_z = (size_t)T * frame_z;
    size_t cond_frame = (size_t)(lc + 1) * S;
    double start = vd_now();
    noise_job jobs[NOISE_THREADS];
    pthread_t helpers[NOISE_THREADS];
    int started[NOISE_THREADS];
    for (int k = 0; k < NOISE_THREADS; k++) {
        jobs[k] = (noise_job){r, first, N * k / NOISE_THREADS, N * (k + 1) / NOISE_THREADS, clip_z, T, lc, h, w, f};
        started[k] = jobs[k].begin < jobs[k].end && pthread_create(&helpers[k], NULL, draw_noise, &jobs[k]) == 0;
    }
    vd_ae_encode(&r->ae, r->frames_dev, N * T, r->side, r->side, r->z0_dev);
    for (int k = 0; k < NOISE_THREADS; k++) {
        if (started[k]) pthread_join(helpers[k], NULL);
        else draw_noise(&jobs[k]); /* no thread (or no clips): drawn here */
    }

    be->upload(be, r->eps_dev, r->eps_host, (size_t)N * clip_z * sizeof(float));
    if (r->weight_dev) be->upload(be, r->weight_dev, r->weight_host, (size_t)N * clip_z * sizeof(float));
    be->zero(be, r->cond_dev, (size_t)N * T * cond_frame * sizeof(float));
    for (int n = 0; n < N; n++) {
        int t = (int)r->t_host[n];
        float a = (float)sqrt(r->abar[t]), b = (float)sqrt(1.0 - r->abar[t]);
        const float *z0 = r->z0_dev + (size_t)n * clip_z, *eps = r->eps_dev + (size_t)n * clip_z;
        float *zt = r->zt_dev + (size_t)n * clip_z, *v = r->v_dev + (size_t)n * clip_z;
        be->copy(be, zt, eps, clip_z * sizeof(float));
        be->axpby(be, zt, a, z0, b, clip_z);
        be->copy(be, v, z0, clip_z * sizeof(float));
        be->axpby(be, v, a, eps, -b, clip_z);
        if (r->first_frame[n]) {
            be->copy(be, r->cond_row_dev, z0, frame_z * sizeof(float));
            be->add_broadcast(be, r->cond_dev + (size_t)n * T * cond_frame, r->cond_row_dev, (size_t)T, cond_frame);
        }
        vd_tokenize(&m->cfg.text, r->empty_prompt[n] ? "" : r->truth[n].prompt, r->ids_host + (size_t)n * L, NULL, 0);
    }
    be->concat_channels(be, r->x_dev, r->zt_dev, lc, r->cond_dev, lc + 1, N * T, (int)S);
    be->upload(be, r->t_dev, r->t_host, (size_t)N * sizeof(float));
    be->upload(be, r->ids_dev, r->ids_host, (size_t)N * L * sizeof(int32_t));
    if (r->distill) be->upload(be, r->renoise_eps_dev, r->renoise_eps_host, (size_t)N * clip_z * sizeof(float));
    r->prep_s += vd_now() - start;
    if (!r->distill)
        return vd_denoiser_loss_and_grads(m, r->trainer.grads, r->ids_dev, r->x_dev, r->t_dev, r->v_dev, r->weight_dev,
                                          N, T, h, w);
    vd_distill_terms terms;
    vd_distill_renoise renoise = {.t_host = r->renoise_t_host, .eps = r->renoise_eps_dev};
    float loss = vd_distill_loss_and_grads(r->distill, m, r->trainer.grads, r->ids_dev, r->x_dev, r->t_dev, r->t_host,
                                           r->abar, r->v_dev, r->weight_dev, N, T, h, w, &renoise, &terms);
    r->terms.task += terms.task, r->terms.icd += terms.icd, r->terms.mca += terms.mca, r->terms.disc += terms.disc;
    return loss;
}

/* Sums the replicas' gradients, their loss (returned) and a distillation's terms (in r->terms),
 * so that each replica holds the totals. */
static double exchange_gradients(vd_train_run *r, double loss)
{
    grad_exchange *x = r->exchange;
    vd_backend *be = r->be;
    size_t n = r->end - r->begin, lo = x->floats * (size_t)r->rank / (size_t)r->ranks;
    size_t hi = x->floats * (size_t)(r->rank + 1) / (size_t)r->ranks;
    float *mine = x->host[r->rank], *disc = r->distill ? vd_distill_disc_grads(r->distill) : NULL;
    be->download(be, mine, r->trainer.grads + r->begin, n * sizeof(float));
    if (disc) be->download(be, mine + n, disc, (x->floats - n) * sizeof(float));
    double *own = x->sums[r->rank];
    own[SUM_LOSS] = loss, own[SUM_TASK] = r->terms.task, own[SUM_ICD] = r->terms.icd;
    own[SUM_MCA] = r->terms.mca, own[SUM_DISC] = r->terms.disc;
    pthread_barrier_wait(&x->barrier);
    float *total = x->host[0];
    for (int j = 1; j < r->ranks; j++)
        for (size_t i = lo; i < hi; i++) total[i] += x->host[j][i];
    pthread_barrier_wait(&x->barrier);
    be->upload(be, r->trainer.grads + r->begin, total, n * sizeof(float));
    if (disc) be->upload(be, disc, total + n, (x->floats - n) * sizeof(float));
    double sum[SUM_COUNT] = {0};
    for (int j = 0; j < r->ranks; j++)
        for (int k = 0; k < SUM_COUNT; k++) sum[k] += x->sums[j][k];
    r->terms.task = (float)sum[SUM_TASK], r->terms.icd = (float)sum[SUM_ICD], r->terms.mca = (float)sum[SUM_MCA];
    r->terms.disc = (float)sum[SUM_DISC];
    return sum[SUM_LOSS];
}

/* One replica's share of a step: its micro-batches, the exchange, and the same update on every
 * replica (the same gradients give the same weights). */
static void replica_step(vd_train_run *r, vd_train_stats *st)
{
    const vd_train_config *c = &r->cfg;
    vd_backend *be = r->be;
    vd_model *m = &r->model;
    double step_start = vd_now(), data_s = 0;
    vd_ae_zero_grads(&r->trainer);
    r->terms = (vd_train_stats){0};
    r->prep_s = 0;
    double loss = 0;
    for (int k = r->rank; k < c->grad_accum; k += r->ranks) {
        data_s += fetch_clips(r);
        if (c->target == VD_TRAIN_DENOISER)
            loss += denoiser_micro_batch(r, r->next_clip + (uint64_t)k * c->clips);
        else
            loss += vd_ae_loss_and_grads(&r->trainer, r->frames_dev, r->frames, r->side, r->side);
    }
    r->next_clip += (uint64_t)c->grad_accum * c->clips;
    if (r->ranks > 1) loss = exchange_gradients(r, loss);
    if (c->grad_accum > 1) /* the mean gradient over the micro-batches (elementwise, in place) */
        be->axpby(be, r->trainer.grads, 0.0f, r->trainer.grads, 1.0f / (float)c->grad_accum, m->total);
    float lr = vd_train_lr(c, r->trainer.step);
    vd_adamw_config opt = {.lr = lr, .beta1 = c->beta1, .beta2 = c->beta2, .eps = c->eps,
                           .weight_decay = c->weight_decay, .clip_norm = c->clip_norm};
    double norm = vd_adamw_range_step(&r->trainer, &opt, r->begin, r->end);
    be->axpby(be, r->ema, 1.0f - c->ema_decay, m->weights, c->ema_decay, m->total);
    float k = 1.0f / (float)c->grad_accum;
    if (r->distill) vd_distill_disc_step(r->distill, k);
    *st = (vd_train_stats){.step = r->trainer.step, .loss = (float)(loss / c->grad_accum), .lr = lr, .grad_norm = norm,
                           .task = r->terms.task * k, .icd = r->terms.icd * k, .mca = r->terms.mca * k,
                           .disc = r->terms.disc * k, .data_ms = (float)(1e3 * data_s),
                           .prep_ms = (float)(1e3 * r->prep_s),
                           .update_ms = (float)(1e3 * (vd_now() - step_start - data_s - r->prep_s))};
}

typedef struct {
    vd_train_run *r;
    vd_train_stats st;
} peer_job;

static void *peer_step(void *arg)
{
    peer_job *job = arg;
    activate(job->r->be);
    replica_step(job->r, &job->st);
    return NULL;
}

void vd_train_step(vd_train_run *r, vd_train_stats *st)
{
    if (!r->peers) {
        replica_step(r, st);
        return;
    }
    peer_job jobs[VD_TRAIN_MAX_REPLICAS];
    pthread_t threads[VD_TRAIN_MAX_REPLICAS];
    for (int i = 1; i < r->ranks; i++) {
        jobs[i] = (peer_job){.r = r->peers[i - 1]};
        if (pthread_create(&threads[i], NULL, peer_step, &jobs[i])) {
            VD_LOG(VD_LOG_ERROR, "training: cannot start the thread of replica %d", i);
            abort();
        }
    }
    replica_step(r, st);
    for (int i = 1; i < r->ranks; i++) pthread_join(threads[i], NULL);
}

void vd_train_weights(vd_train_run *r, int ema, float *host)
{
    r->be->download(r->be, host, ema ? r->ema : r->model.weights, r->model.total * sizeof(float));
}

/* ---- checkpoints ---- */

/* Bytes a tensor adds to a shard's header, generously. */
static size_t header_bytes(const char *name) { return strlen(name) + 128; }

int vd_train_checkpoint(vd_train_run *r, char *err, size_t errlen)
{
    vd_model *m = &r->model;
    const vd_train_config *c = &r->cfg;
    char final_dir[VD_TRAIN_PATH_LEN + 32], tmp_dir[VD_TRAIN_PATH_LEN + 40];
    if (make_dir(c->out_dir, err, errlen)) return -1;
    snprintf(final_dir, sizeof final_dir, "%s/step-%06d", c->out_dir, r->trainer.step);
    snprintf(tmp_dir, sizeof tmp_dir, "%s/.step-%06d.tmp", c->out_dir, r->trainer.step);
    remove_flat_dir(tmp_dir);
    if (make_dir(tmp_dir, err, errlen)) return -1;

    size_t bytes = m->total * sizeof(float);
    float *host[GROUP_COUNT];
    for (int g = 0; g < GROUP_COUNT; g++) {
        host[g] = vd_malloc(bytes);
        r->be->download(r->be, host[g], group_buffer(r, g), bytes);
    }
    json_t *shards = json_array();
    vd_st_writer *w = NULL;
    size_t used = 0;
    int rc = 0;
    for (int g = 0; rc == 0 && g <= GROUP_COUNT; g++) {
        for (int i = 0; rc == 0 && i < (g < GROUP_COUNT ? m->nparams : 1); i++) {
            const vd_param *p = g < GROUP_COUNT ? &m->params[i] : NULL;
            char name[256];
            size_t need = 0;
            if (p) {
                snprintf(name, sizeof name, "%s.%s", GROUPS[g], p->name);
                need = p->numel * sizeof(float) + header_bytes(name);
                if (need + 64 > c->max_shard_bytes) {
                    rc = vd_fail(err, errlen, "tensor %s does not fit in a %zu-byte shard", name, c->max_shard_bytes);
                    break;
                }
            }
            /* close the shard when this tensor would overflow it, and at the very end */
            if (w && (!p || used + need > c->max_shard_bytes)) {
                char shard[64], path[VD_TRAIN_PATH_LEN + 128];
                snprintf(shard, sizeof shard, "shard-%05zu.safetensors", json_array_size(shards));
                snprintf(path, sizeof path, "%s/%s", tmp_dir, shard);
                rc = vd_st_writer_save(w, path, err, errlen);
                vd_st_writer_free(w);
                w = NULL;
                json_array_append_new(shards, json_string(shard));
            }
            if (p && rc == 0) {
                if (!w) w = vd_st_writer_new(), used = 64;
                vd_st_writer_add_f32(w, name, VD_ST_F32, host[g] + p->offset, p->ndim, p->shape);
                used += need;
            }
        }
    }
    if (w) vd_st_writer_free(w);
    for (int g = 0; g < GROUP_COUNT; g++) free(host[g]);

    if (rc == 0) {
        char *model_json = vd_config_to_json(&m->cfg);
        json_t *root = json_pack("{s:s, s:i, s:I, s:I, s:i, s:i, s:i, s:s, s:o}", "format", MANIFEST_FORMATS[c->target],
                                 "step", r->trainer.step, "next_clip", (json_int_t)r->next_clip, "seed",
                                 (json_int_t)c->seed, "batch", c->batch, "clips", c->clips, "image_size", r->side,
                                 "model_config", model_json, "shards", shards);
        free(model_json);
        char *text = json_dumps(root, JSON_INDENT(2));
        json_decref(root);
        char path[VD_TRAIN_PATH_LEN + 64];
        snprintf(path, sizeof path, "%s/manifest.json", tmp_dir);
        rc = write_atomic(path, text, strlen(text), err, errlen);
        free(text);
    } else {
        json_decref(shards);
    }
    if (rc == 0 && r->distill) {
        char path[VD_TRAIN_PATH_LEN + 128];
        snprintf(path, sizeof path, "%s/" DISC_FILE, tmp_dir);
        rc = vd_distill_save(r->distill, path, err, errlen);
    }
    if (rc == 0) {
        fsync_dir(tmp_dir);
        remove_flat_dir(final_dir); /* a checkpoint of this step from an earlier, longer run */
        if (rename(tmp_dir, final_dir)) rc = vd_fail(err, errlen, "%s: %s", final_dir, strerror(errno));
        else fsync_dir(c->out_dir);
    }
    if (rc) remove_flat_dir(tmp_dir);
    return rc;
}

int vd_train_export_checkpoint(const char *dir, const char *out_path, vd_st_dtype dtype, size_t max_file_bytes,
                               char *err, size_t errlen)
{
    char path[VD_TRAIN_PATH_LEN * 2];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) return vd_fail(err, errlen, "%s: %s", path, jerr.text);
    const char *format = json_string_value(json_object_get(root, "format"));
    const char *model_json = json_string_value(json_object_get(root, "model_config"));
    vd_model m;
    memset(&m, 0, sizeof m);
    vd_model_config mc;
    char inner[256];
    int rc = 0;
    if (!format || (strcmp(format, MANIFEST_FORMATS[0]) && strcmp(format, MANIFEST_FORMATS[1])) || !model_json)
        rc = vd_fail(err, errlen, "%s: not a vdmini training checkpoint", path);
    else if (vd_config_parse(model_json, &mc, inner, sizeof inner))
        rc = vd_fail(err, errlen, "%s: model config: %s", path, inner);
    else {
        rc = vd_model_build(&m, &mc, err, errlen);
        vd_config_free(&mc);
    }
    if (rc == 0) {
        float *host[GROUP_COUNT] = {NULL};
        host[GROUP_EMA] = m.host = vd_malloc(m.total * sizeof(float));
        rc = read_checkpoint_groups(&m, dir, root, 1u << GROUP_EMA, host, err, errlen);
    }
    if (rc == 0) rc = vd_model_save_parts(&m, out_path, dtype, max_file_bytes, err, errlen);
    if (m.params) vd_model_free(&m);
    json_decref(root);
    return rc;
}

/* ---- log and plot ---- */

/* Keeps the CSV's header and its rows up to step `upto` (a resumed run rewrites what follows);
 * creates it with a header when absent. */
static int prepare_csv(const char *path, const char *header, int upto, char *err, size_t errlen)
{
    size_t len;
    char scratch[256];
    char *text = read_text(path, &len, scratch, sizeof scratch);
    if (!text) return write_atomic(path, header, strlen(header), err, errlen);
    size_t keep = 0;
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        size_t next = end ? (size_t)(end - text) + 1 : len;
        int step;
        if (line != text && (sscanf(line, "%d,", &step) != 1 || step > upto)) break;
        keep = next;
        line = text + next;
    }
    int rc = write_atomic(path, text, keep, err, errlen);
    free(text);
    return rc;
}

#define PLOT_W 720
#define PLOT_H 420
#define PLOT_LEFT 70
#define PLOT_RIGHT 20
#define PLOT_TOP 30
#define PLOT_BOTTOM 50

int vd_train_plot(const char *csv_path, const char *svg_path, char *err, size_t errlen)
{
    char *text = read_text(csv_path, NULL, err, errlen);
    if (!text) return -1;
    int cap = 256, n = 0;
    double *xs = vd_malloc((size_t)cap * sizeof(double)), *ys = vd_malloc((size_t)cap * sizeof(double));
    double xmax = 1, ymin = INFINITY, ymax = -INFINITY;
    for (char *line = strchr(text, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
        int step;
        double loss;
        if (sscanf(line + 1, "%d,%lf", &step, &loss) != 2 || !(loss > 0) || !isfinite(loss)) continue;
        if (n == cap) {
            cap *= 2;
            xs = vd_realloc(xs, (size_t)cap * sizeof(double));
            ys = vd_realloc(ys, (size_t)cap * sizeof(double));
        }
        xs[n] = step, ys[n] = log10(loss), n++;
        if (step > xmax) xmax = step;
        if (ys[n - 1] < ymin) ymin = ys[n - 1];
        if (ys[n - 1] > ymax) ymax = ys[n - 1];
    }
    free(text);
    if (n == 0) ymin = -1, ymax = 0;
    double lo = floor(ymin), hi = ceil(ymax);
    if (hi <= lo) hi = lo + 1;
    double pw = PLOT_W - PLOT_LEFT - PLOT_RIGHT, ph = PLOT_H - PLOT_TOP - PLOT_BOTTOM;
    size_t cap_out = 4096 + (size_t)n * 32, used = 0;
    char *svg = vd_malloc(cap_out);
#define EMIT(...) used += (size_t)snprintf(svg + used, cap_out - used, __VA_ARGS__)
    EMIT("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
         "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
         PLOT_W, PLOT_H);
    EMIT("<text x=\"%d\" y=\"18\" font-size=\"14\">training loss</text>\n", PLOT_LEFT);
    for (int d = (int)lo; d <= (int)hi; d++) { /* one gridline per decade */
        double y = PLOT_TOP + ph * (hi - d) / (hi - lo);
        EMIT("<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
             "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">1e%d</text>\n",
             PLOT_LEFT, y, PLOT_LEFT + pw, y, PLOT_LEFT - 6, y + 4, d);
    }
    EMIT("<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#444\"/>\n", PLOT_LEFT, PLOT_TOP,
         pw, ph);
    EMIT("<text x=\"%d\" y=\"%d\" text-anchor=\"start\">0</text><text x=\"%.0f\" y=\"%d\" text-anchor=\"end\">%.0f</text>"
         "<text x=\"%.0f\" y=\"%d\" text-anchor=\"middle\">step</text>\n",
         PLOT_LEFT, PLOT_H - PLOT_BOTTOM + 16, PLOT_LEFT + pw, PLOT_H - PLOT_BOTTOM + 16, xmax, PLOT_LEFT + pw / 2,
         PLOT_H - 12);
    EMIT("<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"");
    for (int i = 0; i < n; i++)
        EMIT("%.1f,%.1f ", PLOT_LEFT + pw * xs[i] / xmax, PLOT_TOP + ph * (hi - ys[i]) / (hi - lo));
    EMIT("\"/>\n</svg>\n");
#undef EMIT
    free(xs), free(ys);
    int rc = write_atomic(svg_path, svg, used, err, errlen);
    free(svg);
    return rc;
}

/* ---- the whole run ---- */

#define SCALE_BATCHES 8 /* micro-batches of clips measured for the latent scale */

/* The autoencoder's scale_factor for the weights in the model's buffer: one over the standard
 * deviation of the encoder's raw output over the loader's next clips, so that the latents the
 * denoiser learns have unit variance. */
static float latent_scale(vd_train_run *r)
{
    vd_model *m = &r->model;
    vd_backend *be = r->be;
    int f = 1 << (m->cfg.ae.levels - 1);
    size_t zn = (size_t)r->frames * m->cfg.ae.latent_channels * (r->side / f) * (r->side / f);
    float *z_dev = be->alloc(be, zn * sizeof(float)), *z = vd_malloc(zn * sizeof(float));
    float kept = m->cfg.ae.scale_factor;
    m->cfg.ae.scale_factor = 1.0f;
    double sum = 0, sum_sq = 0;
    for (int k = 0; k < SCALE_BATCHES; k++) {
        fetch_clips(r);
        vd_ae_encode(m, r->frames_dev, r->frames, r->side, r->side, z_dev);
        be->download(be, z, z_dev, zn * sizeof(float));
        for (size_t i = 0; i < zn; i++) sum += z[i], sum_sq += (double)z[i] * z[i];
    }
    m->cfg.ae.scale_factor = kept;
    be->release(be, z_dev);
    free(z);
    double count = (double)SCALE_BATCHES * zn, var = sum_sq / count - (sum / count) * (sum / count);
    return var > 0 ? (float)(1.0 / sqrt(var)) : 1.0f;
}

/* Writes the weights (ema 0) or their EMA (ema 1) as out_dir/name; an autoencoder gets the
 * scale_factor measured for them. The EMA goes last: it replaces the weights in backend memory. */
static int save_weights(vd_train_run *r, int ema, const char *name, char *err, size_t errlen)
{
    char path[VD_TRAIN_PATH_LEN + 32];
    snprintf(path, sizeof path, "%s/%s", r->cfg.out_dir, name);
    vd_model *m = &r->model;
    vd_train_weights(r, ema, m->host);
    float trained_scale = m->cfg.ae.scale_factor;
    if (r->cfg.target == VD_TRAIN_AE) {
        if (ema) {
            r->be->copy(r->be, m->weights, r->ema, m->total * sizeof(float));
            r->be->declare_constant(r->be, m->weights, m->total * sizeof(float));
        }
        m->cfg.ae.scale_factor = latent_scale(r);
    }
    int rc = vd_model_save(m, path, VD_ST_F32, err, errlen);
    m->cfg.ae.scale_factor = trained_scale;
    return rc;
}

int vd_train(const vd_train_config *c, vd_backend *be, const char *resume_dir, vd_train_progress_fn progress,
             void *user, char *err, size_t errlen)
{
    return vd_train_on(c, &be, 1, resume_dir, progress, user, err, errlen);
}

int vd_train_on(const vd_train_config *c, vd_backend *const *be, int count, const char *resume_dir,
                vd_train_progress_fn progress, void *user, char *err, size_t errlen)
{
    if (make_dir(c->out_dir, err, errlen)) return -1;
    vd_train_run *r = vd_train_open_on(c, be, count, resume_dir, err, errlen);
    if (!r) return -1;
    char csv_path[VD_TRAIN_PATH_LEN + 16], svg_path[VD_TRAIN_PATH_LEN + 16];
    snprintf(csv_path, sizeof csv_path, "%s/train.csv", c->out_dir);
    snprintf(svg_path, sizeof svg_path, "%s/loss.svg", c->out_dir);
    int distill = r->distill != NULL;
    int rc = prepare_csv(csv_path, distill ? "step,loss,lr,grad_norm,clips_per_s,task,icd,mca,disc\n"
                                           : "step,loss,lr,grad_norm,clips_per_s\n",
                         vd_train_done_steps(r), err, errlen);
    FILE *csv = rc ? NULL : fopen(csv_path, "a");
    if (!rc && !csv) rc = vd_fail(err, errlen, "%s: %s", csv_path, strerror(errno));
    int first = vd_train_done_steps(r), stopped = 0;
    double start = vd_now(), window_start = start;
    int window_steps = 0;
    while (rc == 0 && !stopped && vd_train_done_steps(r) < c->steps) {
        vd_train_stats st;
        vd_train_step(r, &st);
        window_steps++;
        double now = vd_now();
        if (st.step % c->log_every == 0 || st.step == c->steps) {
            double clips_per_s = (double)window_steps * c->grad_accum * c->clips / fmax(now - window_start, 1e-9);
            fprintf(csv, "%d,%.8g,%.8g,%.8g,%.4g", st.step, st.loss, st.lr, st.grad_norm, clips_per_s);
            if (distill) fprintf(csv, ",%.8g,%.8g,%.8g,%.8g", st.task, st.icd, st.mca, st.disc);
            fputc('\n', csv);
            fflush(csv);
            window_start = now, window_steps = 0;
        }
        if (progress && progress(user, &st, c->steps, (st.step - first) / fmax(now - start, 1e-9))) stopped = 1;
        if (stopped || st.step == c->steps || (c->checkpoint_every && st.step % c->checkpoint_every == 0)) {
            rc = vd_train_checkpoint(r, err, errlen);
            if (rc == 0) rc = vd_train_plot(csv_path, svg_path, err, errlen);
        }
    }
    if (csv && fclose(csv) && rc == 0) rc = vd_fail(err, errlen, "%s: write error", csv_path);
    const char *what = c->target == VD_TRAIN_AE ? "ae" : distill ? "student" : "teacher";
    char name[32];
    snprintf(name, sizeof name, "%s.safetensors", what);
    if (rc == 0 && !stopped) rc = save_weights(r, 0, name, err, errlen);
    snprintf(name, sizeof name, "%s-ema.safetensors", what);
    if (rc == 0 && !stopped) rc = save_weights(r, 1, name, err, errlen);
    if (rc == 0 && first == c->steps) rc = vd_train_plot(csv_path, svg_path, err, errlen);
    vd_train_close(r);
    return rc;
}
