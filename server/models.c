/* models.c: the model registry and activation of models.h. */
#include "models.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define SETTING_ACTIVE "active_model"
#define SETTING_ACTIVE_OVER "active_model_over" /* the configured model file when it was activated */

/* One activation at a time: the served facts and the scheduler's next engine change together. */
static pthread_mutex_t activation_lock = PTHREAD_MUTEX_INITIALIZER;

static vd_device device_of(const char *name)
{
    return strcmp(name, "cpu") == 0 ? VD_DEVICE_CPU : strcmp(name, "cuda") == 0 ? VD_DEVICE_CUDA : VD_DEVICE_AUTO;
}

/* The length of path without a final ".safetensors". */
static int stem_length(const char *path)
{
    size_t n = strlen(path);
    return (int)(n >= 12 && strcmp(path + n - 12, ".safetensors") == 0 ? n - 12 : n);
}

/* The id of a model file: its name without the ".safetensors" extension. */
static void model_id_of(const char *path, char *out, size_t outlen)
{
    char *copy = strdup(path);
    const char *name = basename(copy);
    snprintf(out, outlen, "%.*s", stem_length(name), name);
    free(copy);
}

static int64_t modification_time(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_mtime : (int64_t)time(NULL);
}

/* The guide file of a registry entry, into out (empty for none): the entry's guide, none for
 * "none", and for "" the model's own beside it (PATH less ".safetensors", plus
 * "-guide.safetensors") when that file exists. */
static void guide_of(const vd_model_entry *m, char *out, size_t outlen)
{
    out[0] = 0;
    if (strcmp(m->guide, "none") == 0) return;
    if (m->guide[0]) {
        snprintf(out, outlen, "%s", m->guide);
        return;
    }
    snprintf(out, outlen, "%.*s-guide.safetensors", stem_length(m->path), m->path);
    if (access(out, R_OK) != 0) out[0] = 0;
}

/* Loads the registry entry's model, and its guide when it has one, with the configuration's
 * device and precision. */
static vd_engine *open_entry(const vd_server *srv, const vd_model_entry *m, char *err, size_t errlen)
{
    char engine_err[VD_ERR_LEN];
    pthread_rwlock_rdlock((pthread_rwlock_t *)&srv->config_lock);
    vd_device device = device_of(srv->config.device);
    int bf16 = srv->config.bf16, record = srv->config.record_forwards;
    pthread_rwlock_unlock((pthread_rwlock_t *)&srv->config_lock);
    vd_engine *e = vd_engine_open(m->path, m->ae[0] ? m->ae : NULL, device, bf16, engine_err);
    if (!e) {
        vd_fail(err, errlen, "model %s (%s): %s", m->id, m->path, engine_err);
        return NULL;
    }
    vd_engine_record_forwards(e, record);
    char guide[sizeof m->guide + 32];
    guide_of(m, guide, sizeof guide);
    if (guide[0] && vd_engine_set_guide(e, guide, NULL, engine_err)) {
        vd_fail(err, errlen, "model %s: cannot load its guide %s: %s", m->id, guide, engine_err);
        vd_engine_close(e);
        return NULL;
    }
    if (guide[0]) VD_LOG(VD_LOG_INFO, "model %s samples with the guide %s", m->id, guide);
    return e;
}

/* Makes engine the active model's: the facts request handlers read change under the write lock. */
static void set_served(vd_server *srv, vd_engine *engine, const vd_model_entry *m)
{
    int vocab_size = vd_engine_vocab_size(engine);
    const char **vocab = vd_malloc((size_t)vocab_size * sizeof *vocab);
    for (int i = 0; i < vocab_size; i++) vocab[i] = vd_engine_vocab_word(engine, i);
    pthread_rwlock_wrlock(&srv->model_lock);
    const char **old_vocab = srv->vocab;
    srv->engine = engine;
    snprintf(srv->model_id, sizeof srv->model_id, "%s", m->id);
    srv->model_created = modification_time(m->path);
    srv->has_guide = vd_engine_has_guide(engine);
    vd_engine_limits(engine, &srv->limits);
    srv->vocab_size = vocab_size;
    srv->vocab = vocab;
    pthread_rwlock_unlock(&srv->model_lock);
    free(old_vocab);
}

int vd_models_startup(vd_server *srv, char *err, size_t errlen)
{
    const vd_server_config *c = &srv->config;
    vd_model_entry configured = {.created_at = modification_time(c->model)};
    model_id_of(c->model, configured.id, sizeof configured.id);
    snprintf(configured.path, sizeof configured.path, "%s", c->model);
    snprintf(configured.ae, sizeof configured.ae, "%s", c->ae);
    snprintf(configured.guide, sizeof configured.guide, "%s", c->guide);
    snprintf(configured.source, sizeof configured.source, "config");
    if (vd_store_model_put(srv->store, &configured, err, errlen)) return -1;
    for (int i = 0; i < c->extra_model_count; i++) {
        const char *path = c->extra_models[i];
        vd_model_entry extra = {.created_at = modification_time(path)};
        model_id_of(path, extra.id, sizeof extra.id);
        if (strcmp(path, c->model) == 0) continue; /* the configured model itself */
        if (access(path, R_OK)) {
            VD_LOG(VD_LOG_WARN, "extra_models: %s: %s; not registered", path, strerror(errno));
            continue;
        }
        if (strcmp(extra.id, configured.id) == 0) {
            VD_LOG(VD_LOG_WARN, "extra_models: %s: its id \"%s\" is the configured model's; not registered", path,
                   extra.id);
            continue;
        }
        snprintf(extra.path, sizeof extra.path, "%s", path);
        snprintf(extra.ae, sizeof extra.ae, "%s", c->ae);
        snprintf(extra.source, sizeof extra.source, "config");
        if (vd_store_model_put(srv->store, &extra, err, errlen)) return -1;
    }

    /* the model activated last, as long as the configured model is still the one it replaced */
    char active[128], over[4096];
    vd_model_entry chosen;
    int use_activated = vd_store_setting_get(srv->store, SETTING_ACTIVE, active, sizeof active, err, errlen) == 0 &&
                        vd_store_setting_get(srv->store, SETTING_ACTIVE_OVER, over, sizeof over, err, errlen) == 0 &&
                        strcmp(over, c->model) == 0 && strcmp(active, configured.id) != 0 &&
                        vd_store_model_get(srv->store, active, &chosen, err, errlen) == 0;
    vd_engine *engine = NULL;
    if (use_activated) {
        engine = open_entry(srv, &chosen, err, errlen);
        if (engine) VD_LOG(VD_LOG_INFO, "serving %s, activated in place of the configured %s", chosen.id, configured.id);
        else VD_LOG(VD_LOG_WARN, "cannot serve the activated model, serving the configured one: %s", err);
    }
    if (!engine) {
        chosen = configured;
        engine = open_entry(srv, &chosen, err, errlen);
        if (!engine) return -1;
    }
    set_served(srv, engine, &chosen);
    return 0;
}

/* vd_models_activate with activation_lock held. */
static int activate_locked(vd_server *srv, const vd_model_entry *m, char *err, size_t errlen)
{
    pthread_rwlock_rdlock(&srv->model_lock);
    int already = strcmp(srv->model_id, m->id) == 0;
    pthread_rwlock_unlock(&srv->model_lock);
    if (already) return 0;
    char guide[sizeof m->guide + 32];
    guide_of(m, guide, sizeof guide);
    const char *gone = access(m->path, R_OK)              ? m->path
                       : m->ae[0] && access(m->ae, R_OK) ? m->ae
                       : guide[0] && access(guide, R_OK) ? guide
                                                         : NULL;
    if (gone) return vd_fail(err, errlen, "%s: %s", gone, strerror(errno)), 2;
    vd_engine *engine = open_entry(srv, m, err, errlen);
    if (!engine) return -1;
    pthread_rwlock_rdlock(&srv->config_lock);
    char *configured = strdup(srv->config.model);
    pthread_rwlock_unlock(&srv->config_lock);
    int rc = vd_store_setting_put(srv->store, SETTING_ACTIVE, m->id, err, errlen);
    if (rc == 0) rc = vd_store_setting_put(srv->store, SETTING_ACTIVE_OVER, configured, err, errlen);
    free(configured);
    if (rc) {
        vd_engine_close(engine);
        return -1;
    }
    set_served(srv, engine, m);
    vd_scheduler_switch_engine(srv->scheduler, engine, m->id);
    VD_LOG(VD_LOG_INFO, "activated model %s (%s): queued jobs run on it once the running batch is done", m->id, m->path);
    return 0;
}

int vd_models_activate(vd_server *srv, const char *id, char *err, size_t errlen)
{
    vd_model_entry m;
    int rc = vd_store_model_get(srv->store, id, &m, err, errlen);
    if (rc) return rc;
    pthread_mutex_lock(&activation_lock);
    rc = activate_locked(srv, &m, err, errlen);
    pthread_mutex_unlock(&activation_lock);
    return rc;
}

int vd_models_register(vd_server *srv, const char *id, const char *path, const char *ae, const char *source,
                       char *err, size_t errlen)
{
    vd_model_entry m = {.created_at = (int64_t)time(NULL)};
    snprintf(m.id, sizeof m.id, "%s", id);
    snprintf(m.path, sizeof m.path, "%s", path);
    snprintf(m.ae, sizeof m.ae, "%s", ae);
    snprintf(m.source, sizeof m.source, "%s", source);
    return vd_store_model_put(srv->store, &m, err, errlen);
}

void vd_models_release(vd_server *srv)
{
    free(srv->vocab);
    srv->vocab = NULL;
    srv->vocab_size = 0;
}

void vd_models_default_scales(const vd_server *srv, const vd_server_config *c, double *guidance, double *guide_scale)
{
    *guidance = srv->has_guide ? c->default_guided_guidance : c->default_guidance;
    if (srv->limits.sampling_guidance > 0) *guidance = srv->limits.sampling_guidance;
    *guide_scale = srv->has_guide ? c->default_guide_scale : 0.0;
}
