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

    /* The active model (models.h). An activation replaces all of these under model_lock (a
     * write lock); request handlers read them under the same lock (a read lock). Only the
     * scheduler's thread runs the engine; other threads use its tokenizer alone. */
    pthread_rwlock_t model_lock;
    vd_engine *engine;
    char model_id[128];   /* the registry's id: the configured file's name without ".safetensors" */
    int64_t model_created; /* the model file's modification time */
    int has_guide;         /* it has a guide model: requests default to guided sampling */
    vd_model_limits limits;
    int vocab_size;
    const char **vocab; /* vocab_size words (the array malloc'd, the words owned by the engine) */

    vd_store *store;
    vd_scheduler *scheduler;
    vd_events *events;
    vd_metrics *metrics;
    struct vd_admin *admin; /* admin runs (admin.h) */
    volatile int ready;    /* model loaded and scheduler running */
    volatile int draining; /* SIGTERM received: new jobs are refused with 503 */
} vd_server;

#endif
