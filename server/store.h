/* store.h: jobs persisted in SQLite (DATA_DIR/jobs.db) and their files beside it
 * (DATA_DIR/videos/ID.mp4, ID.png thumbnail, ID.input.png first frame for image-to-video), so a
 * restart after a crash loses no job. Every function is safe to call from several threads (the
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

#endif
