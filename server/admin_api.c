/* admin_api.c: the handlers of the admin API (api.h) under /admin/v1 — block-importance
 * analyses, pruning + distillation runs and the model registry. A request is validated in full
 * before a run is queued (errors name the field: "plan.rule", "config"), so a queued run fails
 * only for what the engine finds while it runs. Runs are answered as objects
 * {"id", "object": "analysis"|"distillation", "status", "request", "progress", ...}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "analysis.h"
#include "api.h"
#include "common.h"
#include "model.h"
#include "models.h"
#include "train.h"

#define ANALYSIS_DEFAULT_PROMPTS 8
#define ANALYSIS_MAX_PROMPTS 1000
#define ANALYSIS_DEFAULT_STEPS 25
#define ANALYSIS_DEFAULT_SEED 1000
#define KIND_ANALYSIS "analysis"
#define KIND_DISTILLATION "distillation"

/* ---- the run object ---- */

static json_t *parsed_or_null(const char *text)
{
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;
    return v ? v : json_null();
}

static json_t *optional_time(int64_t t) { return t ? json_integer(t) : json_null(); }

/* The whole report file of a completed analysis, or NULL. */
static json_t *analysis_report(const json_t *result)
{
    const char *path = json_string_value(json_object_get(result, "report"));
    return path ? json_load_file(path, 0, NULL) : NULL;
}

/* with_report: a completed analysis carries its whole report (GET of one run). */
static json_t *run_object(vd_server *srv, const vd_admin_run *run, int with_report)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(run->id));
    json_object_set_new(o, "object", json_string(run->kind));
    json_object_set_new(o, "status", json_string(vd_job_status_name(run->status)));
    json_object_set_new(o, "created_at", json_integer(run->created_at));
    json_object_set_new(o, "started_at", optional_time(run->started_at));
    json_object_set_new(o, "completed_at", optional_time(run->completed_at));
    json_object_set_new(o, "attempts", json_integer(run->attempts));
    int position = run->status == VD_JOB_QUEUED ? vd_admin_queue_position(srv->admin, run->id) : -1;
    json_object_set_new(o, "queue_position", position >= 0 ? json_integer(position) : json_null());
    json_object_set_new(o, "request", parsed_or_null(run->request));
    char *live = run->status == VD_JOB_IN_PROGRESS ? vd_admin_live_progress(srv->admin, run->id) : NULL;
    json_object_set_new(o, "progress", parsed_or_null(live ? live : run->progress));
    free(live);
    json_t *result = parsed_or_null(run->result);
    json_object_set_new(o, "error", run->status == VD_JOB_FAILED
                                        ? json_pack("{s:s, s:s}", "code", run->error_code, "message",
                                                    run->error_message ? run->error_message : "")
                                        : json_null());
    if (strcmp(run->kind, KIND_DISTILLATION) == 0) {
        json_t *model = json_object_get(result, "model");
        json_object_set_new(o, "model", model ? json_incref(model) : json_null());
    } else if (with_report && run->status == VD_JOB_COMPLETED) {
        json_t *report = analysis_report(result);
        json_object_set_new(o, "report", report ? report : json_null());
    }
    json_decref(result);
    return o;
}

/* Looks up run {id} of kind: 0 found, else the reply is the 404 or 500. */
static int find_run(const vd_request *r, const char *kind, vd_admin_run *run, vd_reply *reply)
{
    char err[256];
    int rc = vd_store_run_get(r->srv->store, r->id, run, err, sizeof err);
    if (rc == 0 && strcmp(run->kind, kind) == 0) return 0;
    if (rc == 0) vd_admin_run_clear(run);
    if (rc < 0) vd_api_internal_error(reply, "reading the admin runs", err);
    else vd_api_error(reply, 404, "id", "not_found", "No %s with id '%.80s'.", kind, r->id);
    return -1;
}

static void get_run(const vd_request *r, const char *kind, vd_reply *reply)
{
    vd_admin_run run;
    if (find_run(r, kind, &run, reply)) return;
    vd_api_reply_json(reply, 200, run_object(r->srv, &run, 1));
    vd_admin_run_clear(&run);
}

static void list_runs(const vd_request *r, const char *kind, vd_reply *reply)
{
    vd_admin_run *runs;
    int count;
    char err[256];
    if (vd_store_run_list(r->srv->store, kind, &runs, &count, err, sizeof err)) {
        vd_api_internal_error(reply, "reading the admin runs", err);
        return;
    }
    json_t *data = json_array();
    for (int i = 0; i < count; i++) {
        json_array_append_new(data, run_object(r->srv, &runs[i], 0));
        vd_admin_run_clear(&runs[i]);
    }
    free(runs);
    vd_api_reply_json(reply, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static void cancel_run(const vd_request *r, const char *kind, vd_reply *reply)
{
    vd_admin_run run;
    if (find_run(r, kind, &run, reply)) return;
    vd_admin_run_clear(&run);
    char err[256];
    int rc = vd_admin_cancel(r->srv->admin, r->id, err, sizeof err);
    if (rc == 1) {
        vd_api_error(reply, 409, "id", "run_finished", "The %s '%.80s' has already finished.", kind, r->id);
        return;
    }
    if (rc == 2) {
        vd_api_error(reply, 404, "id", "not_found", "No %s with id '%.80s'.", kind, r->id);
        return;
    }
    if (rc < 0) {
        vd_api_internal_error(reply, "cancelling the run", err);
        return;
    }
    if (find_run(r, kind, &run, reply)) return;
    vd_api_reply_json(reply, 200, run_object(r->srv, &run, 0));
    vd_admin_run_clear(&run);
}

static void run_events(const vd_request *r, const char *kind, vd_reply *reply)
{
    vd_admin_run run;
    if (find_run(r, kind, &run, reply)) return;
    vd_admin_run_clear(&run);
    vd_api_reply_events(reply, r->id);
}

char *vd_api_run_state_event(vd_server *srv, const char *id, int *finished)
{
    vd_admin_run run;
    char err[256];
    if (vd_store_run_get(srv->store, id, &run, err, sizeof err) != 0) return NULL;
    *finished = run.status == VD_JOB_COMPLETED || run.status == VD_JOB_FAILED || run.status == VD_JOB_CANCELLED;
    json_t *o = run_object(srv, &run, 0);
    char *data = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(8));
    json_decref(o);
    char *text = NULL;
    if (data && asprintf(&text, "event: %s\ndata: %s\n\n", vd_job_status_name(run.status), data) < 0) text = NULL;
    free(data);
    vd_admin_run_clear(&run);
    return text;
}

/* ---- creating runs ---- */

/* The registered model a request names (param), or the active one when it names none. 0, else
 * the reply is the 400, 404 or 500. */
static int resolve_model(const vd_request *r, const json_t *body, const char *param, vd_model_entry *m,
                         vd_reply *reply)
{
    const char *id = NULL;
    if (vd_api_get_string(body, param, &id, reply) < 0) return -1;
    char active[128];
    if (!id) {
        pthread_rwlock_rdlock(&r->srv->model_lock);
        snprintf(active, sizeof active, "%s", r->srv->model_id);
        pthread_rwlock_unlock(&r->srv->model_lock);
        id = active;
    }
    char err[256];
    int rc = vd_store_model_get(r->srv->store, id, m, err, sizeof err);
    if (rc == 1) vd_api_error(reply, 404, param, "model_not_found", "The model '%.100s' is not registered.", id);
    else if (rc) vd_api_internal_error(reply, "reading the model registry", err);
    return rc ? -1 : 0;
}

/* Stores and queues a new run of kind with its request (taken over); replies with the run. */
static void submit_run(const vd_request *r, const char *kind, const char *prefix, json_t *request, vd_reply *reply)
{
    vd_admin_run run = {.status = VD_JOB_QUEUED, .created_at = (int64_t)time(NULL)};
    vd_admin_new_id(prefix, run.id);
    snprintf(run.kind, sizeof run.kind, "%s", kind);
    run.request = json_dumps(request, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(request);
    char err[256];
    if (vd_admin_submit(r->srv->admin, &run, err, sizeof err)) vd_api_internal_error(reply, "storing the run", err);
    else vd_api_reply_json(reply, 200, run_object(r->srv, &run, 0));
    vd_admin_run_clear(&run);
}

/* The optional "units" of an analysis: 1 to VD_ANALYSIS_MAX_BLOCKS distinct unit names, joined
 * with commas into *list (NULL when absent; malloc'd); check_units then asks the model. */
static int analysis_units(const json_t *body, char **list, vd_reply *reply)
{
    *list = NULL;
    json_t *names = json_object_get(body, "units");
    if (!names) return 0;
    size_t n = json_array_size(names);
    if (!json_is_array(names) || n == 0 || n > VD_ANALYSIS_MAX_BLOCKS) {
        vd_api_error(reply, 400, "units", "invalid_value", "Invalid 'units': expected an array of 1 to %d unit names.",
                     VD_ANALYSIS_MAX_BLOCKS);
        return -1;
    }
    *list = vd_calloc(n, 17);
    for (size_t i = 0; i < n; i++) {
        const char *name = json_string_value(json_array_get(names, i));
        int bad = !name || !name[0] || strlen(name) >= 16 || strchr(name, ',');
        for (size_t j = 0; !bad && j < i; j++) bad = strcmp(name, json_string_value(json_array_get(names, j))) == 0;
        if (bad) {
            vd_api_error(reply, 400, "units", "invalid_value",
                         "Invalid 'units': item %zu is not a unit name such as \"down.0.1\", \"temporal.0\" or "
                         "\"up.1.2.attn\", or is named twice.", i);
            free(*list);
            *list = NULL;
            return -1;
        }
        if (i) strcat(*list, ",");
        strcat(*list, name);
    }
    return 0;
}

/* 0 when every name of the comma-separated list is a unit the model file's UNet can remove;
 * else a 400 naming the first that is not (or a 500 when the file cannot be read). */
static int check_units(const char *model_path, const char *list, vd_reply *reply)
{
    char err[256];
    vd_model_config cfg;
    if (vd_model_read_config(model_path, &cfg, err, sizeof err)) {
        vd_api_internal_error(reply, "reading the model's config", err);
        return -1;
    }
    char names[VD_ANALYSIS_MAX_BLOCKS][16];
    int count = vd_unet_removable_units(&cfg.unet, names, VD_ANALYSIS_MAX_BLOCKS);
    vd_config_free(&cfg);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        int found = 0;
        for (int b = 0; b < count && !found; b++) found = strlen(names[b]) == len && strncmp(names[b], p, len) == 0;
        if (!found) {
            vd_api_error(reply, 400, "units", "invalid_value", "Invalid 'units': '%.*s' is not a unit this model can remove.",
                         (int)len, p);
            return -1;
        }
        p += len + (p[len] == ',');
    }
    return 0;
}

void vd_api_create_analysis(const vd_request *r, vd_reply *reply)
{
    static const char *const allowed[] = {"model", "prompts", "seed", "steps", "guidance", "units", NULL};
    json_t *body;
    if (vd_api_json_body(r, &body, reply)) return;
    long long prompts = ANALYSIS_DEFAULT_PROMPTS, steps = ANALYSIS_DEFAULT_STEPS, seed = ANALYSIS_DEFAULT_SEED;
    double guidance = 0;
    vd_model_entry m;
    char *units = NULL;
    int has_guidance = 0;
    int ok = vd_api_check_known(body, allowed, reply) == 0 &&
             vd_api_get_integer(body, "prompts", 1, ANALYSIS_MAX_PROMPTS, &prompts, reply) >= 0 &&
             vd_api_get_integer(body, "steps", 1, r->config->max_steps, &steps, reply) >= 0 &&
             vd_api_get_integer(body, "seed", 0, (1ll << 53), &seed, reply) >= 0 &&
             (has_guidance = vd_api_get_number(body, "guidance", 0, 100, &guidance, reply)) >= 0 &&
             analysis_units(body, &units, reply) == 0 && resolve_model(r, body, "model", &m, reply) == 0;
    json_decref(body);
    if (!ok || (units && check_units(m.path, units, reply))) {
        free(units);
        return;
    }
    if (!has_guidance) guidance = vd_default_guidance(m.path); /* the model's own, else 4 */
    json_t *request = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:f}", "model", m.id, "model_path", m.path, "ae", m.ae,
                                "prompts", (json_int_t)prompts, "steps", (json_int_t)steps, "seed", (json_int_t)seed,
                                "guidance", guidance);
    if (units) json_object_set_new(request, "units", json_string(units));
    free(units);
    submit_run(r, KIND_ANALYSIS, "analysis_", request, reply);
}

/* The blocks of an explicit plan {"remove": [...]}: non-empty, distinct names. */
static int explicit_plan(const json_t *plan, json_t **remove, vd_reply *reply)
{
    if (json_object_size(plan) != 1) {
        vd_api_error(reply, 400, "plan", "invalid_value", "Invalid 'plan': {\"remove\": [...]} takes no other field.");
        return -1;
    }
    json_t *names = json_object_get(plan, "remove");
    size_t n = json_array_size(names);
    if (!json_is_array(names) || n == 0 || n > VD_ANALYSIS_MAX_BLOCKS) {
        vd_api_error(reply, 400, "plan.remove", "invalid_value",
                     "Invalid 'plan.remove': expected an array of 1 to %d unit names.", VD_ANALYSIS_MAX_BLOCKS);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = json_string_value(json_array_get(names, i));
        if (!name || !name[0] || strlen(name) >= 16) {
            vd_api_error(reply, 400, "plan.remove", "invalid_value",
                         "Invalid 'plan.remove': item %zu is not a unit name such as \"down.0.1\", \"mid\", "
                         "\"temporal.0\" or \"up.1.2.attn\".", i);
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(name, json_string_value(json_array_get(names, j))) == 0) {
                vd_api_error(reply, 400, "plan.remove", "invalid_value", "Invalid 'plan.remove': '%s' is named twice.", name);
                return -1;
            }
    }
    *remove = json_incref(names);
    return 0;
}

/* A plan made from a completed analysis: {"analysis", "params"|"flops"|"latency", "rule", "seed"}. */
static int analysis_plan(const vd_request *r, const json_t *plan, json_t **remove, vd_reply *reply)
{
    static const char *const measures[] = {"params", "flops", "latency"};
    static const char *const rules[] = {"shallow", "deep", "random", "cost"};
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)plan, key, value) {
        int known = strcmp(key, "analysis") == 0 || strcmp(key, "rule") == 0 || strcmp(key, "seed") == 0;
        for (size_t i = 0; i < VD_ARRAY_LEN(measures) && !known; i++) known = strcmp(key, measures[i]) == 0;
        if (!known) {
            char param[80];
            snprintf(param, sizeof param, "plan.%.64s", key);
            vd_api_error(reply, 400, param, "unknown_parameter", "Unknown parameter: '%s'.", param);
            return -1;
        }
    }
    int measure = -1;
    double target = 0;
    for (size_t i = 0; i < VD_ARRAY_LEN(measures); i++) {
        json_t *v = json_object_get(plan, measures[i]);
        if (!v) continue;
        char param[32];
        snprintf(param, sizeof param, "plan.%s", measures[i]);
        if (measure >= 0) {
            vd_api_error(reply, 400, param, "invalid_value", "Give one of plan.params, plan.flops and plan.latency.");
            return -1;
        }
        target = json_number_value(v);
        if (!json_is_number(v) || !(target > 0 && target < 1)) {
            vd_api_error(reply, 400, param, "invalid_value", "Invalid '%s': expected a fraction between 0 and 1.", param);
            return -1;
        }
        measure = (int)i;
    }
    if (measure < 0) {
        vd_api_error(reply, 400, "plan.params", "missing_required_parameter",
                     "The plan needs a target: plan.params, plan.flops or plan.latency (a fraction).");
        return -1;
    }
    json_t *rule_value = json_object_get(plan, "rule"), *seed_value = json_object_get(plan, "seed");
    int rule = rule_value ? -1 : VD_PLAN_SHALLOW;
    for (size_t i = 0; i < VD_ARRAY_LEN(rules) && rule < 0; i++)
        if (json_is_string(rule_value) && strcmp(json_string_value(rule_value), rules[i]) == 0) rule = (int)i;
    if (rule < 0) {
        vd_api_error(reply, 400, "plan.rule", "invalid_value", "Invalid 'plan.rule': expected \"shallow\", \"deep\", \"random\" or \"cost\".");
        return -1;
    }
    if (seed_value && (!json_is_integer(seed_value) || json_integer_value(seed_value) < 0)) {
        vd_api_error(reply, 400, "plan.seed", "invalid_value", "Invalid 'plan.seed': expected a whole number, 0 or more.");
        return -1;
    }
    const char *analysis_id = json_string_value(json_object_get(plan, "analysis"));
    if (!analysis_id) {
        vd_api_error(reply, 400, "plan.analysis", "invalid_type", "Invalid 'plan.analysis': expected an analysis id.");
        return -1;
    }
    vd_admin_run run;
    char err[512];
    int rc = vd_store_run_get(r->srv->store, analysis_id, &run, err, sizeof err);
    if (rc < 0) {
        vd_api_internal_error(reply, "reading the admin runs", err);
        return -1;
    }
    if (rc == 1 || strcmp(run.kind, KIND_ANALYSIS) != 0) {
        if (rc == 0) vd_admin_run_clear(&run);
        vd_api_error(reply, 404, "plan.analysis", "not_found", "No analysis with id '%.80s'.", analysis_id);
        return -1;
    }
    json_t *result = parsed_or_null(run.result);
    int completed = run.status == VD_JOB_COMPLETED;
    vd_admin_run_clear(&run);
    json_t *report = completed ? analysis_report(result) : NULL;
    json_decref(result);
    if (!completed) {
        vd_api_error(reply, 409, "plan.analysis", "analysis_not_completed", "The analysis '%.80s' has not completed.",
                     analysis_id);
        return -1;
    }
    char *report_text = report ? json_dumps(report, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(report);
    vd_analysis *a = vd_malloc(sizeof *a);
    char (*names)[16] = vd_malloc(VD_ANALYSIS_MAX_BLOCKS * sizeof *names);
    int count = 0;
    rc = report_text ? vd_analysis_from_json(report_text, a, err, sizeof err) : vd_fail(err, sizeof err, "the report is missing");
    free(report_text);
    if (rc) {
        vd_api_internal_error(reply, "reading the analysis report", err);
    } else if (vd_plan_make(a, (vd_plan_rule)rule, (vd_plan_measure)measure, target,
                            (uint64_t)json_integer_value(seed_value), names, &count, err, sizeof err)) {
        vd_api_error(reply, 400, "plan", "invalid_value", "Invalid 'plan': %s.", err);
        rc = -1;
    } else {
        *remove = json_array();
        for (int i = 0; i < count; i++) json_array_append_new(*remove, json_string(names[i]));
    }
    free(names);
    free(a);
    return rc ? -1 : 0;
}

/* The autoencoder file of a distillation: the registry's, else the teacher file when it has
 * one (the training loads the autoencoder part of the file it is given), else ae.safetensors
 * beside the teacher. */
static void autoencoder_of(const vd_model_entry *teacher, char *out, size_t outlen)
{
    if (teacher->ae[0]) {
        snprintf(out, outlen, "%s", teacher->ae);
        return;
    }
    vd_model m;
    char err[512];
    int own = vd_model_load(&m, teacher->path, err, sizeof err) == 0;
    if (own) {
        own = m.cfg.ae.present;
        vd_model_free(&m);
    }
    if (own) {
        snprintf(out, outlen, "%s", teacher->path);
        return;
    }
    const char *slash = strrchr(teacher->path, '/');
    if (slash) snprintf(out, outlen, "%.*s/ae.safetensors", (int)(slash - teacher->path), teacher->path);
    else snprintf(out, outlen, "ae.safetensors");
}

/* The training options: a JSON object without the fields the server fills, that the trainer
 * accepts, with a grad_accum that gpus divides (each GPU takes every gpus-th micro-batch). */
static int check_training_config(const json_t *config, int gpus, vd_reply *reply)
{
    static const char *const filled[] = {"out_dir", "init", "ae", "teacher"};
    if (!json_is_object(config)) {
        vd_api_error(reply, 400, "config", "invalid_type", "Invalid type for 'config': expected an object of training options.");
        return -1;
    }
    for (size_t i = 0; i < VD_ARRAY_LEN(filled); i++)
        if (json_object_get(config, filled[i])) {
            char param[32];
            snprintf(param, sizeof param, "config.%s", filled[i]);
            vd_api_error(reply, 400, param, "invalid_value", "'%s' is set by the server (the run's directory, the "
                         "pruned student, the teacher's autoencoder and the teacher).", param);
            return -1;
        }
    json_t *probe = json_deep_copy(config);
    json_object_set_new(probe, "out_dir", json_string("out"));
    json_object_set_new(probe, "ae", json_string("ae.safetensors"));
    char *text = json_dumps(probe, JSON_COMPACT);
    json_decref(probe);
    vd_train_config cfg;
    vd_train_config_defaults(&cfg);
    cfg.target = VD_TRAIN_DENOISER;
    char err[512];
    int rc = text ? vd_train_config_parse(text, &cfg, err, sizeof err) : vd_fail(err, sizeof err, "cannot encode");
    free(text);
    if (rc) {
        vd_api_error(reply, 400, "config", "invalid_value", "Invalid 'config': %s.", err);
        return -1;
    }
    if (cfg.grad_accum % gpus) {
        vd_api_error(reply, 400, "gpus", "invalid_value", "Invalid 'gpus': %d GPUs need a config.grad_accum that is a "
                     "multiple of %d (it is %d).", gpus, gpus, cfg.grad_accum);
        return -1;
    }
    return 0;
}

/* A distillation over several GPUs needs a server that runs on the GPU. */
static int check_gpus(const vd_request *r, int gpus, vd_reply *reply)
{
    if (gpus == 1) return 0;
    vd_server *srv = r->srv;
    pthread_rwlock_rdlock(&srv->model_lock);
    char device[32];
    snprintf(device, sizeof device, "%s", srv->engine ? vd_engine_device_name(srv->engine) : "none");
    pthread_rwlock_unlock(&srv->model_lock);
    if (strcmp(device, "cuda") == 0) return 0;
    vd_api_error(reply, 400, "gpus", "invalid_value", "Invalid 'gpus': %d GPUs need the server on the GPU (it runs on "
                 "the %s).", gpus, strcmp(device, "cpu") == 0 ? "CPU" : device);
    return -1;
}

void vd_api_create_distillation(const vd_request *r, vd_reply *reply)
{
    static const char *const allowed[] = {"teacher", "plan", "config", "seed", "gpus", NULL};
    json_t *body;
    if (vd_api_json_body(r, &body, reply)) return;
    long long seed = 0, gpus = 1;
    vd_model_entry teacher;
    json_t *plan = json_object_get(body, "plan"), *config = json_object_get(body, "config"), *remove = NULL;
    int ok = vd_api_check_known(body, allowed, reply) == 0 && vd_api_get_integer(body, "seed", 0, (1ll << 53), &seed, reply) >= 0 &&
             vd_api_get_integer(body, "gpus", 1, VD_TRAIN_MAX_REPLICAS, &gpus, reply) >= 0 &&
             resolve_model(r, body, "teacher", &teacher, reply) == 0;
    if (ok && !json_is_object(plan)) {
        vd_api_error(reply, 400, "plan", plan ? "invalid_type" : "missing_required_parameter",
                     "'plan' must be {\"remove\": [block names]} or {\"analysis\": id, \"params\"|\"flops\"|\"latency\": "
                     "fraction, \"rule\", \"seed\"}.");
        ok = 0;
    }
    if (ok) ok = (json_object_get(plan, "remove") ? explicit_plan(plan, &remove, reply)
                                                  : analysis_plan(r, plan, &remove, reply)) == 0;
    json_t *options = config ? json_incref(config) : json_object();
    if (ok) ok = check_training_config(options, (int)gpus, reply) == 0 && check_gpus(r, (int)gpus, reply) == 0;
    if (ok) {
        char ae[1024];
        autoencoder_of(&teacher, ae, sizeof ae);
        submit_run(r, KIND_DISTILLATION, "distill_",
                   json_pack("{s:s, s:s, s:s, s:O, s:O, s:I, s:I, s:O}", "teacher", teacher.id, "teacher_path",
                             teacher.path, "ae", ae, "plan", plan, "remove", remove, "seed", (json_int_t)seed, "gpus",
                             (json_int_t)gpus, "config", options),
                   reply);
    }
    json_decref(remove);
    json_decref(options);
    json_decref(body);
}

/* ---- the routes ---- */

void vd_api_list_analyses(const vd_request *r, vd_reply *reply) { list_runs(r, KIND_ANALYSIS, reply); }
void vd_api_get_analysis(const vd_request *r, vd_reply *reply) { get_run(r, KIND_ANALYSIS, reply); }
void vd_api_cancel_analysis(const vd_request *r, vd_reply *reply) { cancel_run(r, KIND_ANALYSIS, reply); }
void vd_api_analysis_events(const vd_request *r, vd_reply *reply) { run_events(r, KIND_ANALYSIS, reply); }
void vd_api_list_distillations(const vd_request *r, vd_reply *reply) { list_runs(r, KIND_DISTILLATION, reply); }
void vd_api_get_distillation(const vd_request *r, vd_reply *reply) { get_run(r, KIND_DISTILLATION, reply); }
void vd_api_cancel_distillation(const vd_request *r, vd_reply *reply) { cancel_run(r, KIND_DISTILLATION, reply); }
void vd_api_distillation_events(const vd_request *r, vd_reply *reply) { run_events(r, KIND_DISTILLATION, reply); }

/* ---- the model registry ---- */

void vd_api_admin_list_models(const vd_request *r, vd_reply *reply)
{
    vd_model_entry *models;
    int count;
    if (vd_api_read_registry(r, reply, &models, &count)) return;
    char serving[128];
    int switching;
    vd_scheduler_model(r->srv->scheduler, serving, &switching);
    json_t *data = json_array();
    pthread_rwlock_rdlock(&r->srv->model_lock);
    for (int i = 0; i < count; i++) {
        const vd_model_entry *m = &models[i];
        json_array_append_new(data, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:b, s:b}", "id", m->id, "object",
                                              "model", "path", m->path, "ae", m->ae, "guide", m->guide, "source",
                                              m->source, "created", (json_int_t)m->created_at, "active",
                                              strcmp(m->id, r->srv->model_id) == 0, "serving", strcmp(m->id, serving) == 0));
    }
    pthread_rwlock_unlock(&r->srv->model_lock);
    free(models);
    vd_api_reply_json(reply, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

void vd_api_activate_model(const vd_request *r, vd_reply *reply)
{
    char err[1024];
    int rc = vd_models_activate(r->srv, r->id, err, sizeof err);
    if (rc == 1) {
        vd_api_error(reply, 404, "model", "model_not_found", "The model '%.100s' is not registered.", r->id);
        return;
    }
    if (rc == 2) {
        vd_api_error(reply, 409, "model", "model_file_missing",
                     "The model '%.100s' is registered but its file is gone (%.400s); copy it back to activate it.",
                     r->id, err);
        return;
    }
    if (rc) {
        VD_LOG(VD_LOG_ERROR, "activating %s: %s", r->id, err);
        vd_api_error(reply, 500, "model", "model_unavailable", "The model '%.100s' cannot be loaded: %.400s", r->id, err);
        return;
    }
    char serving[128];
    int switching;
    vd_scheduler_model(r->srv->scheduler, serving, &switching);
    vd_api_reply_json(reply, 200, json_pack("{s:s, s:s, s:b, s:s, s:b}", "id", r->id, "object", "model", "active", 1,
                                            "serving_model", serving, "switching_model", switching));
}
