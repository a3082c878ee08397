/* models.h: the registry of models the server can serve — the configured model (and those
 * configured at earlier starts), the extra_models files and the students that distillations
 * registered — kept in the store, and which of them is active. The configured model's entry
 * has the configured guide; every entry whose guide is "" samples with the file beside its model
 * named like it with "-guide" (loaded with it, for guided sampling) when there is one, and
 * "none" has none.
 * Activating a model loads it beside the one in use and hands it to the scheduler, which
 * switches at a step boundary once the running batch is empty (scheduler.h); from the moment
 * of activation new jobs are created for the new model. An activation holds across restarts for
 * as long as the configured model stays the same. */
#ifndef VD_MODELS_H
#define VD_MODELS_H

#include <stddef.h>

#include "server.h"

/* At startup, before the scheduler: registers the configured model and the readable
 * extra_models files (an unreadable one, or one whose id is the configured model's, is skipped
 * with a warning), and loads the model to serve (the one activated last, unless the configured
 * model changed since; else the configured one), filling srv's engine and model facts. 0, or -1
 * with a message. */
int vd_models_startup(vd_server *srv, char *err, size_t errlen);

/* Serves the registered model id: 0 (also when it is already active), 1 when there is no such
 * model, 2 with a message when its weights, autoencoder or guide file can no longer be read, -1
 * with a message when it cannot be loaded (the active model stays in every failure). */
int vd_models_activate(vd_server *srv, const char *id, char *err, size_t errlen);

/* Adds a model file to the registry (source: the run that made it). 0, or -1 with a message. */
int vd_models_register(vd_server *srv, const char *id, const char *path, const char *ae, const char *source,
                       char *err, size_t errlen);

/* Frees what vd_models_startup and vd_models_activate allocated in srv (not the engine, which
 * the scheduler owns). */
void vd_models_release(vd_server *srv);
/* The guidance and guide scales of a request that gives none, for the active model and config c:
 * with a guide, default_guided_guidance and default_guide_scale; without, default_guidance and
 * no guide; a model whose file records the guidance it samples at (a guidance-distilled
 * student's 1) gets that guidance instead (model_lock read-locked). */
void vd_models_default_scales(const vd_server *srv, const vd_server_config *c, double *guidance, double *guide_scale);

#endif
