/* job.h: a video job as the server keeps it — the request's parameters, its state and its
 * result — shared by the HTTP layer (api.c), the job store (store.c) and the scheduler. */
#ifndef VD_JOB_H
#define VD_JOB_H

#include <stdint.h>

typedef enum {
    VD_JOB_QUEUED = 0,
    VD_JOB_IN_PROGRESS,
    VD_JOB_COMPLETED,
    VD_JOB_FAILED,
    VD_JOB_CANCELLED
} vd_job_status;

#define VD_JOB_ID_LEN 40 /* "video_" + 32 lower-case hex digits + NUL fits */

typedef struct {
    char id[VD_JOB_ID_LEN];
    char model[128];
    vd_job_status status;
    int progress;       /* 0..100 */
    int64_t created_at; /* unix seconds */
    int64_t started_at, completed_at, expires_at; /* 0 when not yet */
    char *prompt;
    int width, height, frames, fps, steps;
    float guidance;
    float guide_scale;  /* moves away from the model's guide (0: none) */
    int sampler;        /* vd_sampler_kind */
    float eta;          /* DDIM's fresh noise each step (0 with euler) */
    uint64_t seed;
    int has_image;      /* image-to-video: the first frame is stored beside the outputs */
    char *unknown_words;   /* space separated, may be empty */
    char error_code[48];   /* empty unless failed */
    char *error_message;   /* NULL unless failed */
    char *idempotency_key; /* NULL when none */
    char key_id[32];       /* which API key made it ("" without keys): for per-key limits */
    char remixed_from[VD_JOB_ID_LEN]; /* "" unless a remix */
    int attempts;          /* times it was started (a restart after a crash starts it again) */
} vd_job;

const char *vd_job_status_name(vd_job_status s); /* "queued", "in_progress", ... */
/* Frees the strings a job owns (not the job itself). */
void vd_job_clear(vd_job *j);
/* Deep copy. */
void vd_job_copy(vd_job *dst, const vd_job *src);
/* A fresh random id "video_<32 hex>". */
void vd_job_new_id(char id[VD_JOB_ID_LEN]);

#endif
