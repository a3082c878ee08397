/* vdminid.c: the daemon. Reads the configuration (defaults, then the YAML file, then flags),
 * opens the job store, loads the active model (models.h), starts the scheduler, the admin thread
 * (admin.h) and the HTTP front end, and then
 * waits for signals: SIGHUP re-reads the configuration, SIGTERM and SIGINT drain (stop
 * accepting, finish the running batch, keep the queue for the next start) and exit. Expired
 * videos are swept once a minute.
 *
 *   vdminid [--config FILE] [--listen HOST:PORT] [--data-dir DIR] [--model PATH]
 *           [--set OPTION=VALUE]...
 *   vdminid --print-defaults      (the documented configuration, as in conf/vdmini.yaml) */
#include "admin.h"
#include "common.h"
#include "config.h"
#include "http.h"
#include "models.h"
#include "server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SWEEP_SECONDS 60

typedef struct {
    const char *config_path;
    int override_count;
    char *names[64], *values[64]; /* command-line overrides, applied after the file */
} startup_args;

static void usage(FILE *out)
{
    fprintf(out, "usage: vdminid [--config FILE] [--listen HOST:PORT] [--data-dir DIR] [--model PATH]\n"
                 "               [--set OPTION=VALUE]...\n"
                 "       vdminid --print-defaults\n"
                 "Options and their defaults are documented in conf/vdmini.yaml.\n");
}

static int parse_args(int argc, char **argv, startup_args *a)
{
    static const struct { const char *flag, *option; } shortcuts[] = {
        {"--listen", "listen"}, {"--data-dir", "data_dir"}, {"--model", "model"},
    };
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(f, "--print-defaults") == 0) {
            vd_server_config_write_defaults(stdout);
            exit(0);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "vdminid: %s: missing value\n", f);
            return -1;
        }
        const char *v = argv[++i];
        if (strcmp(f, "--config") == 0) {
            a->config_path = v;
            continue;
        }
        if (a->override_count == 64) {
            fprintf(stderr, "vdminid: too many overrides\n");
            return -1;
        }
        int known = 0;
        for (size_t k = 0; k < VD_ARRAY_LEN(shortcuts) && !known; k++)
            if (strcmp(f, shortcuts[k].flag) == 0) {
                a->names[a->override_count] = strdup(shortcuts[k].option);
                a->values[a->override_count++] = strdup(v);
                known = 1;
            }
        if (known) continue;
        const char *eq = strchr(v, '=');
        if (strcmp(f, "--set") == 0 && eq) {
            a->names[a->override_count] = strndup(v, (size_t)(eq - v));
            a->values[a->override_count++] = strdup(eq + 1);
            continue;
        }
        fprintf(stderr, "vdminid: unknown option %s\n", f);
        usage(stderr);
        return -1;
    }
    return 0;
}

/* Defaults, then the file, then the overrides; validated. */
static int build_config(const startup_args *a, vd_server_config *c, char *err, size_t errlen)
{
    vd_server_config_defaults(c);
    if (a->config_path && vd_server_config_load(c, a->config_path, err, errlen)) return -1;
    for (int i = 0; i < a->override_count; i++)
        if (vd_server_config_set(c, a->names[i], a->values[i], err, errlen)) return -1;
    return vd_server_config_validate(c, err, errlen);
}

static vd_scheduler_config scheduler_config(const vd_server_config *c)
{
    return (vd_scheduler_config){.max_batch = c->max_batch, .max_queue = c->max_queue,
                                 .max_queue_wait_ms = c->max_queue_wait_ms,
                                 .retention_seconds = c->retention_seconds};
}

static void set_log_level(const char *name)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0) vd_log_set_threshold((vd_log_level)i);
}

/* On the GPU, one step at every batch size the scheduler may form (default request shape), so
 * that choosing cuDNN algorithms for those shapes happens before the first request. With a guide
 * the step runs it too (guide_scale > 0, whatever default_guide_scale says), so that its shapes
 * are chosen as well. */
static void warm_up(vd_server *srv)
{
    const vd_server_config *c = &srv->config;
    if (strcmp(vd_engine_device_name(srv->engine), "cuda") != 0) return;
    double t0 = vd_now();
    vd_video **videos = vd_calloc((size_t)c->max_batch, sizeof *videos);
    double guidance, guide_scale;
    vd_models_default_scales(srv, c, &guidance, &guide_scale);
    vd_gen_params p = {.prompt = "", .frames = c->default_frames, .width = c->default_width,
                       .height = c->default_height, .steps = 1, .guidance = (float)guidance,
                       .guide_scale = srv->has_guide ? 1.0f : 0.0f,
                       .sampler = strcmp(c->default_sampler, "euler") == 0 ? VD_SAMPLER_EULER : VD_SAMPLER_DDIM};
    char err[VD_ERR_LEN];
    for (int n = 1; n <= c->max_batch; n++) {
        for (int i = 0; i < n; i++) videos[i] = vd_video_begin(srv->engine, &p, err);
        if (videos[0]) vd_step(srv->engine, videos, n);
        for (int i = 0; i < n; i++) vd_video_free(srv->engine, videos[i]);
    }
    free(videos);
    VD_LOG(VD_LOG_INFO, "warmed up batch sizes 1 to %d in %.1f s", c->max_batch, vd_now() - t0);
}

static int lists_differ(char **a, int a_count, char **b, int b_count)
{
    if (a_count != b_count) return 1;
    for (int i = 0; i < a_count; i++)
        if (strcmp(a[i], b[i])) return 1;
    return 0;
}

static void reload(vd_server *srv, const startup_args *a)
{
    vd_server_config next;
    char err[512];
    if (build_config(a, &next, err, sizeof err)) {
        VD_LOG(VD_LOG_ERROR, "SIGHUP: configuration not reloaded: %s", err);
        vd_server_config_free(&next);
        return;
    }
    pthread_rwlock_wrlock(&srv->config_lock);
    const vd_server_config *old = &srv->config;
    if (strcmp(old->listen, next.listen) || strcmp(old->data_dir, next.data_dir) || strcmp(old->model, next.model) ||
        strcmp(old->guide, next.guide) || strcmp(old->device, next.device) || old->http_threads != next.http_threads ||
        strcmp(old->admin_cpu_priority, next.admin_cpu_priority) ||
        lists_differ(old->extra_models, old->extra_model_count, next.extra_models, next.extra_model_count))
        VD_LOG(VD_LOG_WARN,
               "SIGHUP: listen, data_dir, model, guide, extra_models, device, http_threads and admin_cpu_priority "
               "change only at restart");
    vd_server_config_free(&srv->config);
    srv->config = next;
    set_log_level(srv->config.log_level);
    vd_scheduler_config sc = scheduler_config(&srv->config);
    pthread_rwlock_unlock(&srv->config_lock);
    vd_scheduler_set_config(srv->scheduler, &sc);
    VD_LOG(VD_LOG_INFO, "SIGHUP: configuration reloaded");
}

int main(int argc, char **argv)
{
    startup_args args = {0};
    if (parse_args(argc, argv, &args)) return 2;
    vd_server srv;
    memset(&srv, 0, sizeof srv);
    char err[512];
    if (build_config(&args, &srv.config, err, sizeof err)) {
        fprintf(stderr, "vdminid: %s\n", err);
        return 2;
    }
    set_log_level(srv.config.log_level);
    pthread_rwlock_init(&srv.config_lock, NULL);

    /* signals go to the main thread only: block them before any thread starts */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    const vd_server_config *c = &srv.config;
    pthread_rwlock_init(&srv.model_lock, NULL);
    srv.store = vd_store_open(c->data_dir, err, sizeof err);
    if (!srv.store) {
        fprintf(stderr, "vdminid: %s\n", err);
        return 1;
    }
    if (vd_models_startup(&srv, err, sizeof err)) {
        fprintf(stderr, "vdminid: cannot load the model: %s\n", err);
        return 1;
    }
    warm_up(&srv);
    srv.events = vd_events_new();
    srv.metrics = vd_metrics_new();
    vd_scheduler_config sc = scheduler_config(c);
    srv.scheduler = vd_scheduler_start(srv.engine, srv.model_id, srv.store, srv.events, srv.metrics, &sc);
    srv.admin = vd_admin_start(&srv);
    srv.ready = 1; /* the model is loaded and the scheduler runs: the first request may come */
    vd_http *http = vd_http_start(&srv, err, sizeof err);
    if (!http) {
        fprintf(stderr, "vdminid: %s\n", err);
        vd_admin_stop(srv.admin);
        vd_scheduler_stop(srv.scheduler, 0);
        return 1;
    }
    VD_LOG(VD_LOG_INFO, "serving model %s on %s at http://%s/ (port %d)%s", srv.model_id,
           vd_engine_device_name(srv.engine), c->listen, vd_http_port(http),
           c->api_key_count ? "" : "; no api_keys configured, so only loopback clients can reach it");

    int64_t next_sweep = 0;
    for (;;) {
        if ((int64_t)time(NULL) >= next_sweep) {
            int removed = vd_store_remove_expired(srv.store, (int64_t)time(NULL), err, sizeof err);
            if (removed < 0) VD_LOG(VD_LOG_ERROR, "removing expired videos: %s", err);
            else if (removed > 0) VD_LOG(VD_LOG_INFO, "removed %d expired videos", removed);
            next_sweep = (int64_t)time(NULL) + SWEEP_SECONDS;
        }
        struct timespec timeout = {.tv_sec = 5};
        int sig = sigtimedwait(&signals, NULL, &timeout);
        if (sig == SIGHUP) {
            reload(&srv, &args);
        } else if (sig == SIGTERM || sig == SIGINT) {
            VD_LOG(VD_LOG_INFO, "%s: draining (finishing the running batch; queued jobs stay for the next start)",
                   sig == SIGTERM ? "SIGTERM" : "SIGINT");
            break;
        } else if (sig < 0 && errno != EAGAIN && errno != EINTR) {
            VD_LOG(VD_LOG_ERROR, "waiting for signals: %s", strerror(errno));
        }
    }
    srv.draining = 1;
    vd_http_quiesce(http);
    vd_admin_stop(srv.admin); /* the admin run stops at its next step and runs again at the next start */
    vd_scheduler_stop(srv.scheduler, 1);
    vd_http_stop(http);
    vd_events_free(srv.events);
    vd_metrics_free(srv.metrics);
    vd_store_close(srv.store);
    vd_models_release(&srv); /* the scheduler closed the engine */
    vd_server_config_free(&srv.config);
    pthread_rwlock_destroy(&srv.config_lock);
    pthread_rwlock_destroy(&srv.model_lock);
    for (int i = 0; i < args.override_count; i++) free(args.names[i]), free(args.values[i]);
    VD_LOG(VD_LOG_INFO, "stopped");
    return 0;
}
