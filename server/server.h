/* server.h: what the parts of the daemon vdminid share — the configuration, the engine's model
 * facts, the job store, the scheduler, events and metrics — assembled by vdminid.c and handed
 * to the HTTP layer. */
#ifndef VD_SERVER_H
#define VD_SERVER_H

#include <pthread.h>
#include <stdint.h>

#include "config.h"
#include "events.h"
#include "metrics.h"
#include "scheduler.h"
#include "store.h"
#include "vdmini.h"

typedef struct {
    /* The configuration in force. SIGHUP replaces it under config_lock; request handlers read
     * the limits under the same lock (a read lock). */
    vd_server_config config;
    pthread_rwlock_t config_lock;

    vd_engine *engine; /* only the scheduler's thread runs it; the limits and vocabulary below
                          are read-only copies safe for every thread */
    char model_id[128];   /* the served model's id: its file name without ".safetensors" */
    int64_t model_created; /* the model file's modification time */
    vd_model_limits limits;
    int vocab_size;
    const char *const *vocab; /* vocab_size words, owned by the engine */

    vd_store *store;
    vd_scheduler *scheduler;
    vd_events *events;
    vd_metrics *metrics;
    volatile int ready;    /* model loaded and scheduler running */
    volatile int draining; /* SIGTERM received: new jobs are refused with 503 */
} vd_server;

#endif
