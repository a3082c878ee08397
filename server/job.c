/* job.c: helpers for the job record of job.h. */
#include "job.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static const char *const status_names[] = {"queued", "in_progress", "completed", "failed", "cancelled"};

const char *vd_job_status_name(vd_job_status s)
{
    return (unsigned)s < 5 ? status_names[s] : "unknown";
}

void vd_job_clear(vd_job *j)
{
    free(j->prompt);
    free(j->unknown_words);
    free(j->error_message);
    free(j->idempotency_key);
    j->prompt = j->unknown_words = j->error_message = j->idempotency_key = NULL;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

void vd_job_copy(vd_job *dst, const vd_job *src)
{
    *dst = *src;
    dst->prompt = dup_or_null(src->prompt);
    dst->unknown_words = dup_or_null(src->unknown_words);
    dst->error_message = dup_or_null(src->error_message);
    dst->idempotency_key = dup_or_null(src->idempotency_key);
}

void vd_job_new_id(char id[VD_JOB_ID_LEN])
{
    unsigned char bytes[16];
    if (getrandom(bytes, sizeof bytes, 0) != (ssize_t)sizeof bytes) {
        /* the kernel's generator does not fail for 16 bytes; fall back to the clock anyway */
        for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (unsigned char)(rand() >> 4);
    }
    memcpy(id, "video_", 6);
    for (int i = 0; i < 16; i++) snprintf(id + 6 + 2 * i, 3, "%02x", bytes[i]);
}
