/* admin.c: the admin thread of admin.h — its queue, the analysis and distillation runs on the
 * engine's vd_analyze and vd_prune + vd_train, their progress, cancellation and recovery. */
#include "admin.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "analysis.h"
#include "common.h"
#include "model.h"
#include "models.h"
#include "prune.h"
#include "train.h"

#define SAVE_EVERY_SECONDS 1.0   /* progress reaches the store about once a second */
#define YIELD_POLL_MS 20         /* how often a yielding admin step looks at the scheduler */
#define ERROR_LEN 1024
#define LOW_PRIORITY_NICE 10

struct vd_admin {
    vd_server *srv;
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t wake;
    char (*queue)[VD_RUN_ID_LEN];
    int queue_len, queue_cap;
    char current[VD_RUN_ID_LEN]; /* the running run, "" when none */
    int cancel_current;
    int stopping;
    char *live_progress; /* the running run's latest progress (JSON text) */
    pthread_t thread;
};

/* What a running run's progress callbacks need. */
typedef struct {
    vd_admin *a;
    vd_admin_run *run;
    double last_saved;
    int resumed_from; /* a distillation's checkpoint step it resumed from, 0 for a fresh start */
} run_context;

static int64_t now_seconds(void) { return (int64_t)time(NULL); }

void vd_admin_new_id(const char *prefix, char id[VD_RUN_ID_LEN])
{
    unsigned char bytes[12];
    if (getrandom(bytes, sizeof bytes, 0) != (ssize_t)sizeof bytes)
        for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (unsigned char)(rand() >> 4);
    size_t n = (size_t)snprintf(id, VD_RUN_ID_LEN, "%s", prefix);
    for (size_t i = 0; i < sizeof bytes && n + 2 < VD_RUN_ID_LEN; i++, n += 2) snprintf(id + n, 3, "%02x", bytes[i]);
}

static void save(vd_admin *a, const vd_admin_run *run)
{
    char err[256];
    if (vd_store_run_update(a->srv->store, run, err, sizeof err) != 0)
        VD_LOG(VD_LOG_ERROR, "store update of %s failed: %s", run->id, err);
}

/* Announces a run's status (the event type is the status name). */
static void publish_status(vd_admin *a, const vd_admin_run *run)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "id", run->id, "object", run->kind, "status",
                          vd_job_status_name(run->status));
    if (run->status == VD_JOB_FAILED)
        json_object_set_new(o, "error", json_pack("{s:s, s:s}", "code", run->error_code, "message",
                                                  run->error_message ? run->error_message : ""));
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (text) vd_events_publish(a->srv->events, run->id, vd_job_status_name(run->status), text);
    free(text);
}

/* Ends the running run: status, time, error, result; store, then the event. */
static void finish(vd_admin *a, vd_admin_run *run, vd_job_status status, const char *code, const char *message,
                   json_t *result)
{
    run->status = status;
    run->completed_at = now_seconds();
    if (code) snprintf(run->error_code, sizeof run->error_code, "%s", code);
    free(run->error_message);
    run->error_message = message ? strdup(message) : NULL;
    if (result) {
        free(run->result);
        run->result = json_dumps(result, JSON_COMPACT);
        json_decref(result);
    }
    save(a, run);
    publish_status(a, run);
    VD_LOG(status == VD_JOB_FAILED ? VD_LOG_WARN : VD_LOG_INFO, "%s %s%s%s", run->id, vd_job_status_name(status),
           message ? ": " : "", message ? message : "");
}

static int should_stop(vd_admin *a)
{
    pthread_mutex_lock(&a->lock);
    int stop = a->cancel_current || a->stopping;
    pthread_mutex_unlock(&a->lock);
    return stop;
}

/* Serving first: waits while videos are queued or being denoised, at most admin_yield_seconds. */
static void yield_to_serving(vd_admin *a)
{
    pthread_rwlock_rdlock(&a->srv->config_lock);
    double limit = a->srv->config.admin_yield_seconds;
    pthread_rwlock_unlock(&a->srv->config_lock);
    double deadline = vd_now() + limit;
    while (vd_now() < deadline && !should_stop(a)) {
        int queued, running;
        vd_scheduler_counts(a->srv->scheduler, &queued, &running);
        if (queued + running == 0) return;
        usleep(YIELD_POLL_MS * 1000);
    }
}

/* Records progress (a JSON object, taken over): kept for GET, published as a "progress" event,
 * and written to the store about once a second. */
static void report_progress(run_context *ctx, json_t *progress)
{
    char *text = json_dumps(progress, JSON_COMPACT | JSON_REAL_PRECISION(8));
    json_t *event = json_pack("{s:s, s:s, s:s, s:o}", "id", ctx->run->id, "object", ctx->run->kind, "status",
                              "in_progress", "progress", progress);
    char *event_text = json_dumps(event, JSON_COMPACT | JSON_REAL_PRECISION(8));
    json_decref(event);
    if (!text || !event_text) {
        free(text);
        free(event_text);
        return;
    }
    pthread_mutex_lock(&ctx->a->lock);
    free(ctx->a->live_progress);
    ctx->a->live_progress = strdup(text);
    pthread_mutex_unlock(&ctx->a->lock);
    vd_events_publish(ctx->a->srv->events, ctx->run->id, "progress", event_text);
    free(event_text);
    free(ctx->run->progress);
    ctx->run->progress = text;
    if (vd_now() - ctx->last_saved >= SAVE_EVERY_SECONDS) {
        ctx->last_saved = vd_now();
        save(ctx->a, ctx->run);
    }
}

static vd_device configured_device(vd_admin *a, int *bf16)
{
    pthread_rwlock_rdlock(&a->srv->config_lock);
    const char *d = a->srv->config.device;
    vd_device device = strcmp(d, "cpu") == 0 ? VD_DEVICE_CPU : strcmp(d, "cuda") == 0 ? VD_DEVICE_CUDA : VD_DEVICE_AUTO;
    *bf16 = a->srv->config.bf16;
    pthread_rwlock_unlock(&a->srv->config_lock);
    return device;
}

/* Creates dir (its parent exists). */
static int make_dir(const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) return vd_fail(err, errlen, "%s: cannot create: %s", dir, strerror(errno));
    return 0;
}

/* Writes text to path through a temporary file and a rename. */
static int write_file(const char *path, const char *text, char *err, size_t errlen)
{
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.part", path);
    FILE *f = fopen(tmp, "w");
    int ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f) ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return vd_fail(err, errlen, "%s: cannot write: %s", path, strerror(errno));
    }
    return 0;
}

/* Ends a run whose engine call returned: interrupted by a stop (it stays in_progress for the
 * next start), cancelled, or failed with the engine's message. */
static void finish_stopped_or_failed(vd_admin *a, vd_admin_run *run, const char *code, const char *err)
{
    pthread_mutex_lock(&a->lock);
    int stopping = a->stopping, cancelled = a->cancel_current;
    pthread_mutex_unlock(&a->lock);
    if (stopping && !cancelled) {
        save(a, run);
        VD_LOG(VD_LOG_INFO, "%s interrupted by the shutdown; it runs again at the next start", run->id);
    } else if (cancelled) {
        finish(a, run, VD_JOB_CANCELLED, NULL, NULL, NULL);
    } else {
        finish(a, run, VD_JOB_FAILED, code, err, NULL);
    }
}

/* ---- block-importance analysis ---- */

static int analysis_progress(void *user, int done, int total, const char *what)
{
    run_context *ctx = user;
    report_progress(ctx, json_pack("{s:i, s:i, s:s, s:i}", "done", done, "total", total, "current", what, "percent",
                                   total ? done * 100 / total : 0));
    yield_to_serving(ctx->a);
    return should_stop(ctx->a);
}

static void run_analysis(vd_admin *a, vd_admin_run *run, const json_t *request)
{
    run_context ctx = {.a = a, .run = run};
    int bf16;
    vd_analysis_options o = {.prompts = (int)json_integer_value(json_object_get(request, "prompts")),
                             .steps = (int)json_integer_value(json_object_get(request, "steps")),
                             .seed = (uint64_t)json_integer_value(json_object_get(request, "seed")),
                             .guidance = (float)json_number_value(json_object_get(request, "guidance")),
                             .units = json_string_value(json_object_get(request, "units"))};
    o.device = configured_device(a, &bf16);
    o.bf16 = bf16;
    const char *model_path = json_string_value(json_object_get(request, "model_path"));
    const char *ae = json_string_value(json_object_get(request, "ae"));
    char dir[4096], report_path[4200], err[ERROR_LEN];
    vd_store_run_dir(a->srv->store, run->id, dir, sizeof dir);
    snprintf(report_path, sizeof report_path, "%s/analysis.json", dir);
    if (make_dir(dir, err, sizeof err)) {
        finish(a, run, VD_JOB_FAILED, "storage_error", err, NULL);
        return;
    }
    vd_analysis *analysis = vd_malloc(sizeof *analysis);
    int rc = vd_analyze(model_path, ae && ae[0] ? ae : NULL, dir, &o, analysis_progress, &ctx, analysis, err, sizeof err);
    if (rc) {
        finish_stopped_or_failed(a, run, "analysis_failed", err);
    } else {
        int models = analysis->count + 1; /* the teacher and each block's variant */
        report_progress(&ctx, json_pack("{s:i, s:i, s:s, s:i}", "done", models, "total", models, "current", "report",
                                        "percent", 100));
        char *report = vd_analysis_json(analysis);
        if (write_file(report_path, report, err, sizeof err))
            finish(a, run, VD_JOB_FAILED, "storage_error", err, NULL);
        else
            finish(a, run, VD_JOB_COMPLETED, NULL, NULL,
                   json_pack("{s:s, s:i}", "report", report_path, "blocks", analysis->count));
        free(report);
    }
    free(analysis);
}

/* ---- pruning and distillation ---- */

static int train_progress(void *user, const vd_train_stats *st, int total, double steps_per_s)
{
    run_context *ctx = user;
    double eta = steps_per_s > 0 ? (total - st->step) / steps_per_s : 0;
    report_progress(ctx, json_pack("{s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "step", st->step,
                                   "total", total, "resumed_from", ctx->resumed_from, "loss", (double)st->loss, "lr", (double)st->lr, "grad_norm", st->grad_norm,
                                   "task", (double)st->task, "icd", (double)st->icd, "mca", (double)st->mca, "disc",
                                   (double)st->disc, "steps_per_s", steps_per_s, "eta_seconds", eta));
    yield_to_serving(ctx->a);
    return should_stop(ctx->a);
}

/* The newest checkpoint directory out_dir/step-NNNNNN into path; 0 when there is none. */
static int newest_checkpoint(const char *out_dir, char *path, size_t pathlen)
{
    DIR *d = opendir(out_dir);
    if (!d) return 0;
    long best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, "step-", 5) != 0 || strlen(e->d_name) != 11) continue;
        long step = strtol(e->d_name + 5, &end, 10);
        if (*end == 0 && step > best) best = step;
    }
    closedir(d);
    if (best < 0) return 0;
    snprintf(path, pathlen, "%s/step-%06ld", out_dir, best);
    return 1;
}

/* Writes the pruned student (the teacher without the named blocks) to path. */
static int write_student(const char *teacher_path, const json_t *remove, uint64_t seed, const char *path, char *err,
                         size_t errlen)
{
    int count = (int)json_array_size(remove);
    char **names = vd_calloc((size_t)count + 1, sizeof *names);
    for (int i = 0; i < count; i++) names[i] = (char *)json_string_value(json_array_get(remove, (size_t)i));
    vd_model teacher, student;
    vd_prune_report report;
    char inner[ERROR_LEN];
    int rc = vd_model_load(&teacher, teacher_path, inner, sizeof inner);
    if (rc) {
        vd_fail(err, errlen, "teacher %s: %s", teacher_path, inner);
    } else {
        rc = vd_prune(&teacher, names, count, seed, &student, &report, inner, sizeof inner);
        if (rc) {
            vd_fail(err, errlen, "pruning: %s", inner);
        } else {
            char tmp[4300];
            snprintf(tmp, sizeof tmp, "%s.part", path);
            rc = vd_model_save(&student, tmp, VD_ST_F32, inner, sizeof inner);
            if (rc || rename(tmp, path) != 0) {
                rc = vd_fail(err, errlen, "writing the student: %s", rc ? inner : strerror(errno));
                unlink(tmp);
            } else {
                VD_LOG(VD_LOG_INFO, "pruned %d blocks: %d tensors copied, %d sliced, %d fresh", count, report.copied,
                       report.sliced, report.fresh);
            }
            vd_model_free(&student);
        }
        vd_model_free(&teacher);
    }
    free(names);
    return rc ? -1 : 0;
}

/* The training configuration: the request's options with the run's files filled in. */
static int distillation_config(const json_t *request, const char *dir, const char *init, vd_train_config *cfg,
                               char *err, size_t errlen)
{
    json_t *options = json_deep_copy(json_object_get(request, "config"));
    json_object_set_new(options, "out_dir", json_string(dir));
    json_object_set_new(options, "init", json_string(init));
    json_object_set_new(options, "ae", json_string(json_string_value(json_object_get(request, "ae"))));
    char *text = json_dumps(options, JSON_COMPACT);
    json_decref(options);
    vd_train_config_defaults(cfg);
    cfg->target = VD_TRAIN_DENOISER;
    int rc = text ? vd_train_config_parse(text, cfg, err, errlen) : vd_fail(err, errlen, "config: cannot encode");
    free(text);
    snprintf(cfg->teacher, sizeof cfg->teacher, "%s", json_string_value(json_object_get(request, "teacher_path")));
    return rc;
}

static void run_distillation(vd_admin *a, vd_admin_run *run, const json_t *request)
{
    run_context ctx = {.a = a, .run = run};
    char dir[4096], init[4200], student[4200], checkpoint[4200], err[ERROR_LEN];
    vd_store_run_dir(a->srv->store, run->id, dir, sizeof dir);
    snprintf(init, sizeof init, "%s/student-init.safetensors", dir);
    snprintf(student, sizeof student, "%s/student-ema.safetensors", dir);
    if (make_dir(dir, err, sizeof err)) {
        finish(a, run, VD_JOB_FAILED, "storage_error", err, NULL);
        return;
    }
    const char *teacher_path = json_string_value(json_object_get(request, "teacher_path"));
    struct stat st;
    if (stat(init, &st) != 0 &&
        write_student(teacher_path, json_object_get(request, "remove"),
                      (uint64_t)json_integer_value(json_object_get(request, "seed")), init, err, sizeof err)) {
        finish(a, run, VD_JOB_FAILED, "pruning_failed", err, NULL);
        return;
    }
    vd_train_config cfg;
    if (distillation_config(request, dir, init, &cfg, err, sizeof err)) {
        finish(a, run, VD_JOB_FAILED, "invalid_config", err, NULL);
        return;
    }
    int resuming = newest_checkpoint(dir, checkpoint, sizeof checkpoint);
    if (resuming) {
        ctx.resumed_from = atoi(strrchr(checkpoint, '-') + 1);
        VD_LOG(VD_LOG_INFO, "%s resumes from %s", run->id, checkpoint);
    }
    int gpus = (int)json_integer_value(json_object_get(request, "gpus"));
    if (gpus < 1 || gpus > VD_TRAIN_MAX_REPLICAS) gpus = 1; /* runs made before the field existed */
    int bf16;
    vd_device device = configured_device(a, &bf16);
    vd_backend *be[VD_TRAIN_MAX_REPLICAS];
    char device_err[VD_ERR_LEN];
    int rc = vd_open_backends(device, bf16, gpus, be, device_err);
    if (rc) {
        snprintf(err, sizeof err, "device: %s", device_err);
    } else {
        rc = vd_train_on(&cfg, be, gpus, resuming ? checkpoint : NULL, train_progress, &ctx, err, sizeof err);
        for (int g = gpus - 1; g >= 0; g--) be[g]->destroy(be[g]);
    }
    if (rc == 0 && stat(student, &st) != 0) { /* stopped early (after a checkpoint), or broken */
        rc = -1;
        snprintf(err, sizeof err, "the training run ended without writing %.900s", student);
    }
    if (rc) {
        finish_stopped_or_failed(a, run, "distillation_failed", err);
        return;
    }
    char model_id[128];
    snprintf(model_id, sizeof model_id, "%s-vdmini-%.8s", json_string_value(json_object_get(request, "teacher")),
             run->id + strlen("distill_"));
    if (vd_models_register(a->srv, model_id, student, json_string_value(json_object_get(request, "ae")), run->id, err,
                           sizeof err)) {
        finish(a, run, VD_JOB_FAILED, "storage_error", err, NULL);
        return;
    }
    finish(a, run, VD_JOB_COMPLETED, NULL, NULL, json_pack("{s:s, s:s}", "model", model_id, "path", student));
}

/* ---- the admin thread ---- */

static void run_one(vd_admin *a, const char *id)
{
    vd_admin_run run;
    char err[256];
    if (vd_store_run_get(a->srv->store, id, &run, err, sizeof err) != 0) {
        VD_LOG(VD_LOG_ERROR, "admin run %s vanished from the store: %s", id, err);
        return;
    }
    run.status = VD_JOB_IN_PROGRESS;
    run.started_at = now_seconds();
    run.attempts++;
    save(a, &run);
    publish_status(a, &run);
    VD_LOG(VD_LOG_INFO, "%s started (attempt %d)", run.id, run.attempts);
    json_error_t jerr;
    json_t *request = json_loads(run.request, 0, &jerr);
    if (!request) finish(a, &run, VD_JOB_FAILED, "invalid_request", "the stored request is not JSON", NULL);
    else if (strcmp(run.kind, "analysis") == 0) run_analysis(a, &run, request);
    else run_distillation(a, &run, request);
    json_decref(request);
    vd_admin_run_clear(&run);
}

/* Admin work yields the CPU to serving: this thread, and the OpenMP and loader threads it starts
 * (they inherit it), run under SCHED_IDLE ("idle": only on a core that nothing else wants) or at
 * niceness LOW_PRIORITY_NICE ("low"). A mere niceness still hands the admin threads slices of a
 * busy core, and one slice in the middle of a parallel region stalls all of serving's threads at
 * its barrier, which SCHED_IDLE avoids. */
static void lower_priority(vd_admin *a)
{
    pthread_rwlock_rdlock(&a->srv->config_lock);
    char priority[16];
    snprintf(priority, sizeof priority, "%s", a->srv->config.admin_cpu_priority);
    pthread_rwlock_unlock(&a->srv->config_lock);
    pid_t tid = (pid_t)syscall(SYS_gettid);
    struct sched_param none = {.sched_priority = 0};
    int rc = 0;
    if (strcmp(priority, "idle") == 0) rc = sched_setscheduler(tid, SCHED_IDLE, &none);
    else if (strcmp(priority, "low") == 0) rc = setpriority(PRIO_PROCESS, (id_t)tid, LOW_PRIORITY_NICE);
    if (rc != 0) VD_LOG(VD_LOG_WARN, "cannot give the admin thread the CPU priority %s: %s", priority, strerror(errno));
}

static void *admin_main(void *arg)
{
    vd_admin *a = arg;
    lower_priority(a);
    pthread_mutex_lock(&a->lock);
    for (;;) {
        while (!a->stopping && a->queue_len == 0) pthread_cond_wait(&a->wake, &a->lock);
        if (a->stopping) break;
        memcpy(a->current, a->queue[0], VD_RUN_ID_LEN);
        memmove(&a->queue[0], &a->queue[1], (size_t)(a->queue_len - 1) * sizeof *a->queue);
        a->queue_len--;
        a->cancel_current = 0;
        pthread_mutex_unlock(&a->lock);
        char id[VD_RUN_ID_LEN];
        memcpy(id, a->current, VD_RUN_ID_LEN);
        run_one(a, id);
        pthread_mutex_lock(&a->lock);
        a->current[0] = 0;
        free(a->live_progress);
        a->live_progress = NULL;
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

static void push_locked(vd_admin *a, const char *id)
{
    if (a->queue_len == a->queue_cap) {
        a->queue_cap = a->queue_cap ? 2 * a->queue_cap : 16;
        a->queue = vd_realloc(a->queue, (size_t)a->queue_cap * sizeof *a->queue);
    }
    snprintf(a->queue[a->queue_len++], VD_RUN_ID_LEN, "%s", id);
}

vd_admin *vd_admin_start(vd_server *srv)
{
    vd_admin *a = vd_calloc(1, sizeof *a);
    a->srv = srv;
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->wake, NULL);
    vd_admin_run *runs = NULL;
    int count = 0, requeued = 0;
    char err[256];
    if (vd_store_run_list(srv->store, NULL, &runs, &count, err, sizeof err) != 0)
        VD_LOG(VD_LOG_ERROR, "cannot read the admin runs from the store: %s", err);
    for (int i = 0; i < count; i++) {
        if (runs[i].status == VD_JOB_QUEUED || runs[i].status == VD_JOB_IN_PROGRESS) {
            runs[i].status = VD_JOB_QUEUED;
            save(a, &runs[i]);
            push_locked(a, runs[i].id);
            requeued++;
        }
        vd_admin_run_clear(&runs[i]);
    }
    free(runs);
    if (requeued) VD_LOG(VD_LOG_INFO, "queued %d unfinished admin runs again", requeued);
    if (pthread_create(&a->thread, NULL, admin_main, a) != 0) {
        VD_LOG(VD_LOG_ERROR, "cannot start the admin thread");
        abort();
    }
    return a;
}

void vd_admin_stop(vd_admin *a)
{
    if (!a) return;
    pthread_mutex_lock(&a->lock);
    a->stopping = 1;
    pthread_cond_signal(&a->wake);
    pthread_mutex_unlock(&a->lock);
    pthread_join(a->thread, NULL);
    free(a->queue);
    free(a->live_progress);
    pthread_mutex_destroy(&a->lock);
    pthread_cond_destroy(&a->wake);
    free(a);
}

int vd_admin_submit(vd_admin *a, const vd_admin_run *run, char *err, size_t errlen)
{
    if (vd_store_run_insert(a->srv->store, run, err, errlen) != 0) return -1;
    pthread_mutex_lock(&a->lock);
    push_locked(a, run->id);
    pthread_cond_signal(&a->wake);
    pthread_mutex_unlock(&a->lock);
    publish_status(a, run);
    VD_LOG(VD_LOG_INFO, "queued %s %s", run->kind, run->id);
    return 0;
}

int vd_admin_cancel(vd_admin *a, const char *id, char *err, size_t errlen)
{
    pthread_mutex_lock(&a->lock);
    int queued = -1;
    for (int i = 0; i < a->queue_len && queued < 0; i++)
        if (strcmp(a->queue[i], id) == 0) queued = i;
    if (queued >= 0) {
        memmove(&a->queue[queued], &a->queue[queued + 1], (size_t)(a->queue_len - queued - 1) * sizeof *a->queue);
        a->queue_len--;
    }
    int running = strcmp(a->current, id) == 0;
    if (running) a->cancel_current = 1;
    pthread_mutex_unlock(&a->lock);
    if (running) return 0;
    vd_admin_run run;
    int rc = vd_store_run_get(a->srv->store, id, &run, err, errlen);
    if (rc) return rc < 0 ? -1 : 2;
    if (queued >= 0) finish(a, &run, VD_JOB_CANCELLED, NULL, NULL, NULL);
    vd_admin_run_clear(&run);
    return queued >= 0 ? 0 : 1;
}

int vd_admin_queue_position(vd_admin *a, const char *id)
{
    pthread_mutex_lock(&a->lock);
    int pos = -1;
    for (int i = 0; i < a->queue_len && pos < 0; i++)
        if (strcmp(a->queue[i], id) == 0) pos = i;
    pthread_mutex_unlock(&a->lock);
    return pos;
}

char *vd_admin_live_progress(vd_admin *a, const char *id)
{
    pthread_mutex_lock(&a->lock);
    char *text = strcmp(a->current, id) == 0 && a->live_progress ? strdup(a->live_progress) : NULL;
    pthread_mutex_unlock(&a->lock);
    return text;
}
