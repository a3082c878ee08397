/* store.h: jobs persisted in SQLite (DATA_DIR/jobs.db) and their files beside it
 * (DATA_DIR/videos/ID.mp4, ID.png thumbnail, ID.input.png first frame for image-to-video), so a
 * restart after a crash loses no job. The same database keeps the admin runs (block-importance
 * analyses and distillations, their files under DATA_DIR/admin/ID/), the registry of models and
 * a few named settings (which model is active). Every function is safe to call from several threads (the
 * store serialises them). Functions return 0 on success and -1 on a database or file error
 * with a message in err; lookups return 1 for "not found". */
#ifndef VD_STORE_H
#define VD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "job.h"

typedef struct vd_store vd_store;

/* Opens (creating when needed) the data directory, its videos/ folder and the database. */
vd_store *vd_store_open(const char *data_dir, char *err, size_t errlen);
void vd_store_close(vd_store *s);

/* Inserts a new job. When job->idempotency_key is set and (key_id, idempotency_key) already
 * names a job, nothing is inserted, existing_id receives that job's id and 2 is returned. */
int vd_store_insert(vd_store *s, const vd_job *job, char existing_id[VD_JOB_ID_LEN], char *err,
                    size_t errlen);
/* Fills out (caller frees with vd_job_clear). 1 when there is no such job. */
int vd_store_get(vd_store *s, const char *id, vd_job *out, char *err, size_t errlen);
/* Writes every field of job over the stored row with that id. 1 when there is no such job. */
int vd_store_update(vd_store *s, const vd_job *job, char *err, size_t errlen);
/* Deletes the row and its files. 1 when there is no such job. */
int vd_store_delete(vd_store *s, const char *id, char *err, size_t errlen);

/* A page of jobs ordered by (created_at, id), ascending or descending, starting after the job
 * `after` (NULL: from the start). *jobs is malloc'd (free each with vd_job_clear, then the
 * array); *has_more tells whether more jobs follow. An unknown `after` id returns 1. */
int vd_store_list(vd_store *s, int limit, const char *after, int ascending, vd_job **jobs, int *count,
                  int *has_more, char *err, size_t errlen);

/* Jobs with the given status, oldest first (for restart recovery and the queue). */
int vd_store_list_status(vd_store *s, vd_job_status status, vd_job **jobs, int *count, char *err,
                         size_t errlen);
/* Ids of finished jobs whose expires_at is at or before now; each is deleted with its files.
 * Returns the number removed, or -1. */
int vd_store_remove_expired(vd_store *s, int64_t now, char *err, size_t errlen);

/* Paths of a job's files: kind is "mp4", "png" (thumbnail) or "input.png". */
void vd_store_path(const vd_store *s, const char *id, const char *kind, char *buf, size_t buflen);

/* ---- admin runs ---- */

#define VD_RUN_ID_LEN 40 /* "analysis_" or "distill_" + 24 lower-case hex digits + NUL fits */

typedef struct {
    char id[VD_RUN_ID_LEN];
    char kind[16];         /* "analysis" or "distillation" */
    vd_job_status status;  /* queued, in_progress, completed, failed or cancelled */
    int64_t created_at, started_at, completed_at; /* unix seconds; 0 when not yet */
    char *request;         /* the validated request as JSON text (what the run needs to start again) */
    char *progress;        /* the latest progress as JSON text, NULL before the first */
    char *result;          /* the outcome as JSON text (report file, registered model), NULL before */
    char error_code[48];   /* empty unless failed */
    char *error_message;   /* NULL unless failed */
    int attempts;          /* times it was started */
} vd_admin_run;

void vd_admin_run_clear(vd_admin_run *r);

int vd_store_run_insert(vd_store *s, const vd_admin_run *run, char *err, size_t errlen);
/* Writes every field of run over the stored row with its id. 1 when there is no such run. */
int vd_store_run_update(vd_store *s, const vd_admin_run *run, char *err, size_t errlen);
/* Fills out (free with vd_admin_run_clear). 1 when there is no such run. */
int vd_store_run_get(vd_store *s, const char *id, vd_admin_run *out, char *err, size_t errlen);
/* Runs of one kind (NULL: every kind), oldest first; *runs is malloc'd (NULL when none). */
int vd_store_run_list(vd_store *s, const char *kind, vd_admin_run **runs, int *count, char *err, size_t errlen);
/* The run's directory: DATA_DIR/admin/ID (created by the caller). */
void vd_store_run_dir(const vd_store *s, const char *id, char *buf, size_t buflen);

/* ---- the model registry ---- */

typedef struct {
    char id[128];
    char path[1024];   /* the weights file */
    char ae[1024];     /* the autoencoder file ("": the model's own, or beside it) */
    char guide[1024];  /* the guide model file ("": the model's own beside it, if any; "none": none) */
    char source[64];   /* "config" for the configured model, else the distillation's run id */
    int64_t created_at;
} vd_model_entry;

/* Inserts or replaces the entry with that id. */
int vd_store_model_put(vd_store *s, const vd_model_entry *m, char *err, size_t errlen);
/* 1 when there is no such model. */
int vd_store_model_get(vd_store *s, const char *id, vd_model_entry *out, char *err, size_t errlen);
/* All entries, oldest first; *models is malloc'd (NULL when none). */
int vd_store_model_list(vd_store *s, vd_model_entry **models, int *count, char *err, size_t errlen);

/* ---- named settings ---- */

/* value receives the setting (""), 1 when it was never set. */
int vd_store_setting_get(vd_store *s, const char *name, char *value, size_t valuelen, char *err, size_t errlen);
int vd_store_setting_put(vd_store *s, const char *name, const char *value, char *err, size_t errlen);

#endif
