/* config.h: the server's configuration — one declarative table of options (name, type,
 * bounds, default, help) in config.c drives the defaults, the YAML file, the command-line
 * overrides, the documented conf/vdmini.yaml and the reload on SIGHUP. A YAML error names
 * FILE:LINE and the option. */
#ifndef VD_SERVER_CONFIG_H
#define VD_SERVER_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    /* where and what */
    char *listen;     /* "HOST:PORT", default "127.0.0.1:8080" */
    char *data_dir;   /* jobs database and outputs, default "data" */
    char *model;      /* the model served, default "models/vdmini.safetensors" */
    char *ae;         /* autoencoder file when the model has none ("" = beside the model) */
    char *guide;      /* the configured model's guide file ("": the model's own beside it, if any; "none") */
    char **extra_models; /* other model files registered at start, to be activated */
    int extra_model_count;
    char *device;     /* "auto", "cpu" or "cuda" */
    int bf16;         /* bf16 matrix products on the GPU */
    int record_forwards; /* replay recorded UNet forwards where the backend records */
    char *web_dir;    /* static files served at / */
    int http_threads; /* libmicrohttpd's thread pool */
    char *log_level;  /* debug, info, warn, error */
    /* security */
    char **api_keys;   /* Bearer keys for /v1; none: loopback only */
    int api_key_count;
    char **admin_keys; /* Bearer keys for /admin */
    int admin_key_count;
    /* limits */
    size_t max_body_bytes;
    int max_prompt_chars;
    size_t max_image_bytes;
    int max_image_side;
    int64_t max_image_pixels;
    int max_frames, max_width, max_height, max_steps;
    int max_queue;
    int max_jobs_per_key;
    /* request defaults */
    int default_frames, default_steps, default_fps;
    int default_width, default_height;
    double default_guidance;        /* for a model without a guide */
    double default_guide_scale;     /* for a model with a guide */
    double default_guided_guidance; /* classifier-free guidance for a model with a guide */
    double default_eta;             /* DDIM's fresh noise each step */
    char *default_sampler;
    /* scheduling and retention */
    int max_batch;
    int max_queue_wait_ms;
    int retention_seconds;
    /* admin runs */
    int admin_yield_seconds; /* longest wait of an admin step for serving to go idle */
    char *admin_cpu_priority; /* "idle", "low" or "normal": the admin run's threads on the CPU */
} vd_server_config;

/* All options at their defaults. */
void vd_server_config_defaults(vd_server_config *c);
/* Applies a YAML file (a mapping of option names to values; lists for the key options) on top
 * of c. Unknown options, wrong types and out-of-bounds values are errors naming FILE:LINE and
 * the option; on error c is unchanged. */
int vd_server_config_load(vd_server_config *c, const char *path, char *err, size_t errlen);
/* Sets one option from text (a command-line override), with the same checks. */
int vd_server_config_set(vd_server_config *c, const char *name, const char *value, char *err,
                         size_t errlen);
/* Checks relations between options (e.g. a non-loopback listen address needs API keys). */
int vd_server_config_validate(const vd_server_config *c, char *err, size_t errlen);
void vd_server_config_free(vd_server_config *c);
void vd_server_config_copy(vd_server_config *dst, const vd_server_config *src);
/* Writes the documented YAML of every option at its default (conf/vdmini.yaml is this). */
void vd_server_config_write_defaults(FILE *out);

#endif
