/* admin.h: the admin runs of vdminid — VDMini's block-importance analyses and pruning +
 * distillation runs — on one admin thread beside the scheduler.
 *
 * Runs are kept in the store (store.h) and run one at a time, in the order they were made;
 * further ones wait queued. A run's files live in DATA_DIR/admin/ID/ (the analysis report, the
 * pruned student, a distillation's checkpoints and weights). A run cut short by a restart starts
 * again at the next start; a distillation resumes from its newest checkpoint. A finished
 * distillation registers its student as a model (models.h). A distillation may be spread over
 * GPUs 0 .. gpus - 1 (its request's "gpus", as `vdmini distill --gpus`).
 *
 * Sharing the machine with serving: serving comes first. At each of its steps (a model of an
 * analysis, an optimizer step of a distillation) the admin thread waits while videos are queued
 * or being denoised, at most admin_yield_seconds, and on the CPU its threads run at the priority
 * admin_cpu_priority (by default SCHED_IDLE: only on cores serving leaves free). Progress goes
 * to the events of the run's id (events.h) as "progress" events and a final "completed",
 * "failed" or "cancelled". */
#ifndef VD_ADMIN_H
#define VD_ADMIN_H

#include <stddef.h>

#include "server.h"
#include "store.h"

typedef struct vd_admin vd_admin;

/* Queues again the runs a previous start left queued or running, and starts the admin thread. */
vd_admin *vd_admin_start(vd_server *srv);
/* Stops the running run at its next step (it stays in_progress in the store, to run again at the
 * next start; a distillation writes a checkpoint first) and joins the thread. */
void vd_admin_stop(vd_admin *a);

/* A fresh id: prefix ("analysis_", "distill_") and 24 random lower-case hex digits. */
void vd_admin_new_id(const char *prefix, char id[VD_RUN_ID_LEN]);
/* Stores run (status queued) and queues it. 0, or -1 with a message. */
int vd_admin_submit(vd_admin *a, const vd_admin_run *run, char *err, size_t errlen);
/* Cancels a queued run at once, a running one at its next step. 0 when it was queued or running,
 * 1 when it had finished, 2 when there is no such run, -1 with a message on a store error. */
int vd_admin_cancel(vd_admin *a, const char *id, char *err, size_t errlen);
/* 0-based position among queued runs, or -1 when not queued. */
int vd_admin_queue_position(vd_admin *a, const char *id);
/* The latest progress of the running run id as JSON text (malloc'd); NULL when id is not running. */
char *vd_admin_live_progress(vd_admin *a, const char *id);

#endif
