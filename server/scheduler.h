/* scheduler.h: runs the queue of jobs on the engine with step-level batching.
 *
 * One denoising thread owns the engine. Between any two denoiser steps it drops finished and
 * cancelled videos from the running batch and admits queued jobs that fit (same frames, width
 * and height as the batch; at most max_batch videos), so a new request starts at the next step
 * instead of waiting for the whole batch. Finished videos are decoded to frames there and
 * handed to encoding threads that write the MP4 and thumbnail, so the GPU does not wait for
 * FFmpeg. Every state change is written to the store before it is announced as an event. */
#ifndef VD_SCHEDULER_H
#define VD_SCHEDULER_H

#include "events.h"
#include "job.h"
#include "metrics.h"
#include "store.h"
#include "vdmini.h"

typedef struct vd_scheduler vd_scheduler;

typedef struct {
    int max_batch;         /* videos per denoiser batch; 1 turns batching off */
    int max_queue;         /* queued jobs accepted before submit says "full" */
    int max_queue_wait_ms; /* how long the first queued job may wait for batch-mates before an
                              idle engine starts it anyway */
    int retention_seconds; /* expires_at = completed_at + this */
} vd_scheduler_config;

/* Starts the threads on engine (the model model_id), which the scheduler then owns: it closes it
 * when it switches away from it or stops. Jobs the store holds as queued or in_progress (a
 * restart after a crash or a drain) are queued again, oldest first. */
vd_scheduler *vd_scheduler_start(vd_engine *engine, const char *model_id, vd_store *store, vd_events *events,
                                 vd_metrics *metrics, const vd_scheduler_config *cfg);

/* Queues a job already inserted in the store as queued (with its input image file, if any).
 * Returns 0, or -1 when the queue is full (the caller answers 429). */
int vd_scheduler_submit(vd_scheduler *s, const vd_job *job);
/* Cancels a queued or running job (takes effect before the next step). 0 when it was queued or
 * running, 1 when it is not (finished or unknown). */
int vd_scheduler_cancel(vd_scheduler *s, const char *id);
/* 0-based position among queued jobs, or -1 when not queued. */
int vd_scheduler_queue_position(vd_scheduler *s, const char *id);
/* Jobs queued and running now. */
void vd_scheduler_counts(vd_scheduler *s, int *queued, int *running);
/* Queued plus running jobs made with key_id. */
int vd_scheduler_jobs_of_key(vd_scheduler *s, const char *key_id);
void vd_scheduler_set_config(vd_scheduler *s, const vd_scheduler_config *cfg);

/* Serves another model (the scheduler takes engine over). Running videos finish on the current
 * model; no queued job starts until they have, and then the denoising thread switches at that
 * step boundary and the queue goes on with the new model. A later call before the switch
 * replaces this one. */
void vd_scheduler_switch_engine(vd_scheduler *s, vd_engine *engine, const char *model_id);
/* The model videos run on now, and whether a switch is waiting for the batch to drain. */
void vd_scheduler_model(vd_scheduler *s, char model_id[128], int *switching);

/* Stops admitting; with finish_running, lets running videos complete (else they stay
 * in_progress in the store and run again at the next start); waits for the encoder; joins. */
void vd_scheduler_stop(vd_scheduler *s, int finish_running);

#endif
