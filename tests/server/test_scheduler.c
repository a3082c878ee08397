/* test_scheduler.c: the scheduler on a tiny random model on the CPU with a real store —
 * batched jobs all complete with their files, a queued job cancels, a full queue refuses,
 * jobs a crashed run left behind run again (or fail after too many interrupted runs), a stop
 * that does not finish leaves running jobs for the next start, a model switch lets the
 * running batch finish on the old model while a queued job waits for the new one, and a job's
 * guide scale reaches the engine (a model without a guide runs the job without one and records
 * that, a model with one runs it guided), and so does its eta (the same job with eta 1 makes
 * another video, with eta 0 the same one again). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "scheduler.h"

static char dir[] = "/tmp/vdmini-sched-XXXXXX";
static char model_path[4096];
static char guide_path[4096]; /* another tiny model (another seed): enough of a guide for the sampler */

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir)) return -1;
    snprintf(model_path, sizeof model_path, "%s/tiny.safetensors", dir);
    snprintf(guide_path, sizeof guide_path, "%s/tiny-guide.safetensors", dir);
    char err[VD_ERR_LEN];
    return vd_init_preset("tiny", NULL, 0, 3, model_path, err) || vd_init_preset("tiny", NULL, 0, 4, guide_path, err)
               ? -1
               : 0;
}

/* A fresh engine on the model: each scheduler owns (and closes) its own. */
static vd_engine *open_engine(void)
{
    char err[VD_ERR_LEN];
    vd_engine *engine = vd_engine_open(model_path, NULL, VD_DEVICE_CPU, 0, err);
    assert_non_null(engine);
    return engine;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static void make_job(vd_job *j, const char *prompt, int steps)
{
    memset(j, 0, sizeof *j);
    vd_job_new_id(j->id);
    snprintf(j->model, sizeof j->model, "tiny");
    j->status = VD_JOB_QUEUED;
    j->created_at = (int64_t)time(NULL);
    j->prompt = strdup(prompt);
    j->width = 64, j->height = 64, j->frames = 2, j->fps = 8, j->steps = steps;
    j->guidance = 3.0f;
    j->seed = 42;
    j->unknown_words = strdup("");
}

static vd_store *open_store(const char *name)
{
    char path[4200], err[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    vd_store *s = vd_store_open(path, err, sizeof err);
    if (!s) fail_msg("store: %s", err);
    return s;
}

/* Polls the store until the job reaches status, for at most 120 s. */
static int wait_status(vd_store *st, const char *id, vd_job_status status)
{
    double until = vd_now() + 120;
    while (vd_now() < until) {
        vd_job j;
        char err[256];
        if (vd_store_get(st, id, &j, err, sizeof err) == 0) {
            vd_job_status now = j.status;
            vd_job_clear(&j);
            if (now == status) return 1;
            if (now == VD_JOB_COMPLETED || now == VD_JOB_FAILED || now == VD_JOB_CANCELLED) return 0;
        }
        struct timespec pause = {0, 20 * 1000000L};
        nanosleep(&pause, NULL);
    }
    return 0;
}

static void insert(vd_store *st, const vd_job *j)
{
    char err[256], existing[VD_JOB_ID_LEN];
    assert_int_equal(vd_store_insert(st, j, existing, err, sizeof err), 0);
}

/* A scheduler on a fresh tiny engine over the store, with events and metrics of its own. */
typedef struct {
    vd_store *st;
    vd_events *ev;
    vd_metrics *me;
    vd_scheduler *s;
} harness;

static harness start_harness(vd_store *st, int max_batch, int max_queue, int max_queue_wait_ms)
{
    harness h = {.st = st, .ev = vd_events_new(), .me = vd_metrics_new()};
    vd_scheduler_config cfg = {.max_batch = max_batch, .max_queue = max_queue, .max_queue_wait_ms = max_queue_wait_ms,
                               .retention_seconds = 60};
    h.s = vd_scheduler_start(open_engine(), "tiny", st, h.ev, h.me, &cfg);
    return h;
}

/* What start_harness made, once the test has stopped the scheduler. */
static void close_harness(harness *h)
{
    vd_events_free(h->ev), vd_metrics_free(h->me);
    vd_store_close(h->st);
}

/* The job id as the store has it now (the caller clears it). */
static vd_job stored_job(vd_store *st, const char *id)
{
    vd_job back;
    char err[256];
    if (vd_store_get(st, id, &back, err, sizeof err)) fail_msg("job %s: %s", id, err);
    return back;
}

static void test_batch_completes(void **state)
{
    (void)state;
    vd_store *st = open_store("batch");
    harness h = start_harness(st, 4, 16, 200);
    vd_scheduler *s = h.s;
    vd_job jobs[3];
    const char *prompts[3] = {"a red circle", "a blue square", "a green star"};
    for (int i = 0; i < 3; i++) {
        make_job(&jobs[i], prompts[i], 2 + i);
        insert(st, &jobs[i]);
        assert_int_equal(vd_scheduler_submit(s, &jobs[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        assert_true(wait_status(st, jobs[i].id, VD_JOB_COMPLETED));
        char path[4200];
        struct stat sb;
        vd_store_path(st, jobs[i].id, "mp4", path, sizeof path);
        assert_int_equal(stat(path, &sb), 0);
        assert_true(sb.st_size > 0);
        vd_store_path(st, jobs[i].id, "png", path, sizeof path);
        assert_int_equal(stat(path, &sb), 0);
        vd_job back = stored_job(st, jobs[i].id);
        assert_int_equal(back.progress, 100);
        assert_true(back.expires_at == back.completed_at + 60);
        assert_int_equal(back.attempts, 1);
        vd_job_clear(&back);
        vd_job_clear(&jobs[i]);
    }
    int queued, running;
    vd_scheduler_counts(s, &queued, &running);
    assert_int_equal(queued, 0);
    assert_int_equal(running, 0);
    vd_scheduler_stop(s, 1);
    close_harness(&h);
}

/* The model a stored job ran on. */
static void assert_model(vd_store *st, const char *id, const char *model)
{
    vd_job back = stored_job(st, id);
    assert_string_equal(back.model, model);
    vd_job_clear(&back);
}

static void test_model_switch_waits_for_the_batch(void **state)
{
    (void)state;
    vd_store *st = open_store("switch");
    harness h = start_harness(st, 4, 16, 0);
    vd_scheduler *s = h.s;
    vd_job running, queued;
    make_job(&running, "a red circle", 60); /* long enough to be running when the switch comes */
    insert(st, &running);
    assert_int_equal(vd_scheduler_submit(s, &running), 0);
    assert_true(wait_status(st, running.id, VD_JOB_IN_PROGRESS));
    make_job(&queued, "a blue square", 2);
    queued.width = 32; /* another shape: it cannot join the running batch */
    insert(st, &queued);
    assert_int_equal(vd_scheduler_submit(s, &queued), 0);
    vd_scheduler_switch_engine(s, open_engine(), "other");
    char model[128];
    int switching;
    vd_scheduler_model(s, model, &switching);
    assert_true(wait_status(st, running.id, VD_JOB_COMPLETED));
    assert_true(wait_status(st, queued.id, VD_JOB_COMPLETED));
    assert_model(st, running.id, "tiny");  /* finished on the model it started on */
    assert_model(st, queued.id, "other");  /* waited for the switch */
    if (switching) assert_string_equal(model, "tiny");
    vd_scheduler_model(s, model, &switching);
    assert_string_equal(model, "other");
    assert_false(switching);
    vd_job_clear(&running), vd_job_clear(&queued);
    vd_scheduler_stop(s, 1);
    close_harness(&h);
}

static void test_cancel_and_full_queue(void **state)
{
    (void)state;
    vd_store *st = open_store("cancel");
    harness h = start_harness(st, 1, 2, 0);
    vd_scheduler *s = h.s;
    vd_job a, b, c, d;
    make_job(&a, "first", 40);
    make_job(&b, "second", 2);
    make_job(&c, "third", 2);
    make_job(&d, "fourth", 2);
    insert(st, &a), insert(st, &b), insert(st, &c), insert(st, &d);
    assert_int_equal(vd_scheduler_submit(s, &a), 0);
    assert_true(wait_status(st, a.id, VD_JOB_IN_PROGRESS));
    assert_int_equal(vd_scheduler_submit(s, &b), 0);
    assert_int_equal(vd_scheduler_submit(s, &c), 0);
    assert_int_equal(vd_scheduler_submit(s, &d), -1); /* the queue holds two */
    assert_int_equal(vd_scheduler_queue_position(s, b.id), 0);
    assert_int_equal(vd_scheduler_queue_position(s, c.id), 1);
    assert_int_equal(vd_scheduler_cancel(s, b.id), 0);
    assert_true(wait_status(st, b.id, VD_JOB_CANCELLED));
    assert_int_equal(vd_scheduler_queue_position(s, c.id), 0);
    assert_int_equal(vd_scheduler_cancel(s, a.id), 0); /* running: leaves at the next step */
    assert_true(wait_status(st, a.id, VD_JOB_CANCELLED));
    assert_true(wait_status(st, c.id, VD_JOB_COMPLETED));
    assert_int_equal(vd_scheduler_cancel(s, c.id), 1); /* finished: nothing to cancel */
    assert_int_equal(vd_scheduler_cancel(s, "video_nonesuch"), 1);
    vd_scheduler_stop(s, 1);
    vd_job_clear(&a), vd_job_clear(&b), vd_job_clear(&c), vd_job_clear(&d);
    close_harness(&h);
}

static void test_recovery(void **state)
{
    (void)state;
    vd_store *st = open_store("recover");
    vd_job interrupted, hopeless, waiting;
    make_job(&interrupted, "was running", 2);
    interrupted.status = VD_JOB_IN_PROGRESS, interrupted.attempts = 1;
    make_job(&hopeless, "crashed thrice", 2);
    hopeless.status = VD_JOB_IN_PROGRESS, hopeless.attempts = 3;
    make_job(&waiting, "was queued", 2);
    insert(st, &interrupted), insert(st, &hopeless), insert(st, &waiting);
    harness h = start_harness(st, 2, 8, 0);
    vd_scheduler *s = h.s;
    assert_true(wait_status(st, interrupted.id, VD_JOB_COMPLETED));
    assert_true(wait_status(st, waiting.id, VD_JOB_COMPLETED));
    assert_true(wait_status(st, hopeless.id, VD_JOB_FAILED));
    vd_job back = stored_job(st, hopeless.id);
    assert_string_equal(back.error_code, "interrupted");
    assert_non_null(back.error_message);
    vd_job_clear(&back);
    back = stored_job(st, interrupted.id);
    assert_int_equal(back.attempts, 2);
    vd_job_clear(&back);

    /* a stop that does not finish leaves the running job in progress for the next start */
    vd_job slow;
    make_job(&slow, "slow", 400);
    insert(st, &slow);
    assert_int_equal(vd_scheduler_submit(s, &slow), 0);
    assert_true(wait_status(st, slow.id, VD_JOB_IN_PROGRESS));
    vd_scheduler_stop(s, 0);
    back = stored_job(st, slow.id);
    assert_int_equal(back.status, VD_JOB_IN_PROGRESS);
    vd_job_clear(&back);
    vd_job_clear(&interrupted), vd_job_clear(&hopeless), vd_job_clear(&waiting), vd_job_clear(&slow);
    close_harness(&h);
}

static void test_guide_scale_reaches_the_engine(void **state)
{
    (void)state;
    vd_store *st = open_store("guide");
    harness h = start_harness(st, 2, 8, 0);
    vd_scheduler *s = h.s;
    vd_job guided, plain;
    make_job(&guided, "a red circle", 2);
    guided.guide_scale = 2.0f;
    make_job(&plain, "a red circle", 2);
    insert(st, &guided), insert(st, &plain);
    assert_int_equal(vd_scheduler_submit(s, &guided), 0);
    assert_int_equal(vd_scheduler_submit(s, &plain), 0);
    assert_true(wait_status(st, guided.id, VD_JOB_COMPLETED)); /* this engine has no guide: run without */
    assert_true(wait_status(st, plain.id, VD_JOB_COMPLETED));
    vd_job back = stored_job(st, guided.id);
    assert_true(back.guide_scale == 0.0f);
    vd_job_clear(&back);

    /* the same job on a model with a guide runs */
    char engine_err[VD_ERR_LEN];
    vd_engine *with_guide = open_engine();
    if (vd_engine_set_guide(with_guide, guide_path, NULL, engine_err)) fail_msg("%s", engine_err);
    vd_scheduler_switch_engine(s, with_guide, "tiny-guided");
    vd_job again;
    make_job(&again, "a red circle", 2);
    again.guide_scale = 2.0f;
    insert(st, &again);
    assert_int_equal(vd_scheduler_submit(s, &again), 0);
    assert_true(wait_status(st, again.id, VD_JOB_COMPLETED));
    back = stored_job(st, again.id);
    assert_string_equal(back.model, "tiny-guided");
    assert_true(back.guide_scale == 2.0f);
    vd_job_clear(&back);
    vd_scheduler_stop(s, 1);
    vd_job_clear(&guided), vd_job_clear(&plain), vd_job_clear(&again);
    close_harness(&h);
}

/* The bytes of a job's file of this kind, malloc'd, with their count. */
static unsigned char *job_file(vd_store *st, const char *id, const char *kind, size_t *size)
{
    char path[4200];
    vd_store_path(st, id, kind, path, sizeof path);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    unsigned char *data = NULL;
    size_t n = 0, got;
    unsigned char chunk[65536];
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        data = vd_realloc(data, n + got);
        memcpy(data + n, chunk, got);
        n += got;
    }
    fclose(f);
    *size = n;
    return data;
}

static void test_eta_reaches_the_engine(void **state)
{
    (void)state;
    vd_store *st = open_store("eta");
    harness h = start_harness(st, 1, 8, 0);
    vd_job jobs[3]; /* eta 0, 1, 0: one at a time, the same seed and prompt */
    const float etas[3] = {0.0f, 1.0f, 0.0f};
    for (int i = 0; i < 3; i++) {
        make_job(&jobs[i], "a red circle", 3);
        jobs[i].eta = etas[i];
        insert(st, &jobs[i]);
        assert_int_equal(vd_scheduler_submit(h.s, &jobs[i]), 0);
        assert_true(wait_status(st, jobs[i].id, VD_JOB_COMPLETED));
    }
    vd_job back = stored_job(st, jobs[1].id);
    assert_true(back.eta == 1.0f);
    vd_job_clear(&back);
    size_t size[3];
    unsigned char *frame[3];
    for (int i = 0; i < 3; i++) frame[i] = job_file(st, jobs[i].id, "png", &size[i]);
    assert_true(size[0] == size[2] && memcmp(frame[0], frame[2], size[0]) == 0);
    assert_true(size[0] != size[1] || memcmp(frame[0], frame[1], size[0]) != 0);
    for (int i = 0; i < 3; i++) free(frame[i]), vd_job_clear(&jobs[i]);
    vd_scheduler_stop(h.s, 1);
    close_harness(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_completes),
        cmocka_unit_test(test_model_switch_waits_for_the_batch),
        cmocka_unit_test(test_cancel_and_full_queue),
        cmocka_unit_test(test_recovery),
        cmocka_unit_test(test_guide_scale_reaches_the_engine),
        cmocka_unit_test(test_eta_reaches_the_engine),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
