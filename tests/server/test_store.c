/* test_store.c: tests of server/store.c: every job field survives insert, get and update
 * (NULL and empty strings, the largest seed, floats); idempotency keys; list pagination both
 * ways with the `after` cursor; listing by status; removal of expired jobs and of files; paths;
 * persistence across close and reopen; a corrupt or too new database refused with a message;
 * a database of an earlier schema migrated with its rows kept; inserts from several threads at
 * once; and the admin runs, the model registry and the settings, through a reopen. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"

/* ---- fixtures and helpers ---- */

typedef struct {
    char dir[256];      /* scratch directory, removed afterwards */
    char data_dir[300]; /* the store's data directory inside it (created by the store) */
    vd_store *store;
} fixture;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/vdmini-store-XXXXXX", tmp && strlen(tmp) < 200 ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->data_dir, sizeof f->data_dir, "%s/state/data", f->dir);
    char err[512];
    f->store = vd_store_open(f->data_dir, err, sizeof err);
    if (!f->store) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    vd_store_close(f->store);
    nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* A job with every field set, distinct for each n. */
static void make_job(vd_job *j, int n, int64_t created_at)
{
    memset(j, 0, sizeof *j);
    vd_job_new_id(j->id);
    snprintf(j->model, sizeof j->model, "teacher-%d", n);
    j->status = VD_JOB_QUEUED;
    j->progress = n % 101;
    j->created_at = created_at;
    j->started_at = created_at + 1;
    j->completed_at = created_at + 2;
    j->expires_at = created_at + 3;
    char prompt[64];
    snprintf(prompt, sizeof prompt, "a red ball bouncing, take %d \xc3\xa9t\xc3\xa9 'quoted'", n);
    j->prompt = strdup(prompt);
    j->width = 128 + n;
    j->height = 96 + n;
    j->frames = 16;
    j->fps = 8;
    j->steps = 25;
    j->guidance = 7.5f + (float)n / 3.0f;
    j->guide_scale = 1.25f + (float)n / 7.0f;
    j->sampler = n % 2;
    j->eta = j->sampler ? 0.0f : 0.5f + (float)n / 11.0f;
    j->seed = 0xFEDCBA9876543210ull + (uint64_t)n;
    j->has_image = n % 2;
    j->unknown_words = strdup("zorp blarg");
    snprintf(j->key_id, sizeof j->key_id, "key%d", n % 3);
    j->attempts = n;
}

static void assert_jobs_equal(const vd_job *a, const vd_job *b)
{
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->model, b->model);
    assert_int_equal(a->status, b->status);
    assert_int_equal(a->progress, b->progress);
    assert_int_equal(a->created_at, b->created_at);
    assert_int_equal(a->started_at, b->started_at);
    assert_int_equal(a->completed_at, b->completed_at);
    assert_int_equal(a->expires_at, b->expires_at);
    if (a->prompt || b->prompt) assert_string_equal(a->prompt, b->prompt);
    assert_int_equal(a->width, b->width);
    assert_int_equal(a->height, b->height);
    assert_int_equal(a->frames, b->frames);
    assert_int_equal(a->fps, b->fps);
    assert_int_equal(a->steps, b->steps);
    assert_true(a->guidance == b->guidance);
    assert_true(a->guide_scale == b->guide_scale);
    assert_int_equal(a->sampler, b->sampler);
    assert_true(a->eta == b->eta);
    assert_true(a->seed == b->seed);
    assert_int_equal(a->has_image, b->has_image);
    assert_true((a->unknown_words == NULL) == (b->unknown_words == NULL));
    if (a->unknown_words) assert_string_equal(a->unknown_words, b->unknown_words);
    assert_string_equal(a->error_code, b->error_code);
    assert_true((a->error_message == NULL) == (b->error_message == NULL));
    if (a->error_message) assert_string_equal(a->error_message, b->error_message);
    assert_true((a->idempotency_key == NULL) == (b->idempotency_key == NULL));
    if (a->idempotency_key) assert_string_equal(a->idempotency_key, b->idempotency_key);
    assert_string_equal(a->key_id, b->key_id);
    assert_string_equal(a->remixed_from, b->remixed_from);
    assert_int_equal(a->attempts, b->attempts);
}

static void insert_ok(vd_store *s, const vd_job *j)
{
    char err[512], existing[VD_JOB_ID_LEN];
    int rc = vd_store_insert(s, j, existing, err, sizeof err);
    if (rc != 0) fail_msg("insert: %d %s", rc, err);
}

static void assert_stored_equal(vd_store *s, const vd_job *expected)
{
    vd_job got;
    char err[512];
    assert_int_equal(vd_store_get(s, expected->id, &got, err, sizeof err), 0);
    assert_jobs_equal(&got, expected);
    vd_job_clear(&got);
}

static void free_jobs(vd_job *jobs, int count)
{
    for (int i = 0; i < count; i++) vd_job_clear(&jobs[i]);
    free(jobs);
}

static void touch(const char *path)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("x", f);
    fclose(f);
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

/* Makes each of the job's three files. */
static void touch_files(vd_store *s, const char *id)
{
    static const char *const kinds[] = {"mp4", "png", "input.png"};
    char path[1024];
    for (int i = 0; i < 3; i++) {
        vd_store_path(s, id, kinds[i], path, sizeof path);
        touch(path);
    }
}

static int any_file(vd_store *s, const char *id)
{
    static const char *const kinds[] = {"mp4", "png", "input.png"};
    char path[1024];
    int found = 0;
    for (int i = 0; i < 3; i++) {
        vd_store_path(s, id, kinds[i], path, sizeof path);
        found += exists(path);
    }
    return found;
}

/* ---- tests ---- */

static void test_open_creates_directories(void **state)
{
    fixture *f = *state;
    struct stat st;
    char path[512];
    assert_int_equal(stat(f->data_dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777 & ~0750, 0);
    snprintf(path, sizeof path, "%s/videos", f->data_dir);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777 & ~0750, 0);
    snprintf(path, sizeof path, "%s/jobs.db", f->data_dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777 & ~0640, 0);
}

static void test_round_trip(void **state)
{
    fixture *f = *state;
    char err[512];
    vd_job job;
    make_job(&job, 7, 1700000000);
    job.idempotency_key = strdup("retry-1");
    insert_ok(f->store, &job);
    assert_stored_equal(f->store, &job);

    /* every field changed: strings to NULL, to empty, to set; extreme numbers */
    job.status = VD_JOB_FAILED;
    snprintf(job.model, sizeof job.model, "student");
    job.progress = 100;
    job.started_at = INT64_C(1) << 40;
    job.completed_at = INT64_MAX;
    job.expires_at = -1;
    free(job.prompt);
    job.prompt = strdup("");
    free(job.unknown_words);
    job.unknown_words = NULL;
    job.error_message = strdup("out of memory: \"quoted\"; DROP TABLE jobs; --");
    snprintf(job.error_code, sizeof job.error_code, "engine_error");
    free(job.idempotency_key);
    job.idempotency_key = NULL;
    job.width = 512;
    job.height = 8;
    job.frames = 1;
    job.fps = 120;
    job.steps = 1000;
    job.guidance = 0.1f;
    job.guide_scale = 100.0f;
    job.sampler = 0;
    job.eta = 1.0f;
    job.seed = UINT64_MAX;
    job.has_image = 0;
    snprintf(job.key_id, sizeof job.key_id, "%s", "");
    vd_job_new_id(job.remixed_from);
    job.attempts = 3;
    assert_int_equal(vd_store_update(f->store, &job, err, sizeof err), 0);
    assert_stored_equal(f->store, &job);

    job.seed = 0;
    job.guidance = -0.0f;
    job.guide_scale = 0.0f;
    free(job.prompt);
    job.prompt = NULL;
    job.unknown_words = strdup("");
    assert_int_equal(vd_store_update(f->store, &job, err, sizeof err), 0);
    assert_stored_equal(f->store, &job);

    /* not found */
    vd_job other;
    make_job(&other, 8, 1);
    assert_int_equal(vd_store_update(f->store, &other, err, sizeof err), 1);
    assert_int_equal(vd_store_get(f->store, other.id, &other, err, sizeof err), 1);
    assert_int_equal(vd_store_delete(f->store, other.id, err, sizeof err), 1);
    vd_job_clear(&other);

    /* the same id twice is an error */
    char existing[VD_JOB_ID_LEN];
    assert_int_equal(vd_store_insert(f->store, &job, existing, err, sizeof err), -1);
    assert_non_null(strstr(err, "jobs.db"));

    assert_int_equal(vd_store_delete(f->store, job.id, err, sizeof err), 0);
    assert_int_equal(vd_store_get(f->store, job.id, &other, err, sizeof err), 1);
    vd_job_clear(&job);
}

static void test_idempotency(void **state)
{
    fixture *f = *state;
    char err[512], existing[VD_JOB_ID_LEN];
    vd_job first, again, other_key, no_key1, no_key2;
    make_job(&first, 1, 100);
    snprintf(first.key_id, sizeof first.key_id, "alice");
    first.idempotency_key = strdup("order-42");
    insert_ok(f->store, &first);

    make_job(&again, 2, 101);
    snprintf(again.key_id, sizeof again.key_id, "alice");
    again.idempotency_key = strdup("order-42");
    memset(existing, 0, sizeof existing);
    assert_int_equal(vd_store_insert(f->store, &again, existing, err, sizeof err), 2);
    assert_string_equal(existing, first.id);
    vd_job got;
    assert_int_equal(vd_store_get(f->store, again.id, &got, err, sizeof err), 1);

    /* the same key from another API key is a different request */
    make_job(&other_key, 3, 102);
    snprintf(other_key.key_id, sizeof other_key.key_id, "bob");
    other_key.idempotency_key = strdup("order-42");
    insert_ok(f->store, &other_key);

    /* jobs without a key never collide */
    make_job(&no_key1, 4, 103);
    make_job(&no_key2, 5, 104);
    snprintf(no_key1.key_id, sizeof no_key1.key_id, "alice");
    snprintf(no_key2.key_id, sizeof no_key2.key_id, "alice");
    insert_ok(f->store, &no_key1);
    insert_ok(f->store, &no_key2);

    vd_job *jobs;
    int count;
    assert_int_equal(vd_store_list_status(f->store, VD_JOB_QUEUED, &jobs, &count, err, sizeof err), 0);
    assert_int_equal(count, 4);
    free_jobs(jobs, count);
    vd_job_clear(&first);
    vd_job_clear(&again);
    vd_job_clear(&other_key);
    vd_job_clear(&no_key1);
    vd_job_clear(&no_key2);
}

/* The store's order: created_at, then insertion order (make_job numbers jobs in its model). */
static int by_created_then_inserted(const void *pa, const void *pb)
{
    const vd_job *a = pa, *b = pb;
    if (a->created_at != b->created_at) return a->created_at < b->created_at ? -1 : 1;
    return atoi(a->model + strlen("teacher-")) - atoi(b->model + strlen("teacher-"));
}

/* Pages through the whole store `limit` at a time and checks the order against expected. */
static void check_pages(vd_store *s, int limit, int ascending, const vd_job *expected, int n)
{
    char err[512], after[VD_JOB_ID_LEN] = "";
    int seen = 0, has_more = 1;
    while (has_more) {
        vd_job *jobs;
        int count;
        assert_int_equal(vd_store_list(s, limit, seen ? after : NULL, ascending, &jobs, &count, &has_more,
                                       err, sizeof err), 0);
        assert_true(count <= limit);
        assert_int_equal(has_more, seen + count < n);
        for (int i = 0; i < count; i++) {
            const vd_job *want = &expected[ascending ? seen + i : n - 1 - seen - i];
            assert_jobs_equal(&jobs[i], want);
        }
        seen += count;
        if (count) snprintf(after, sizeof after, "%s", jobs[count - 1].id);
        free_jobs(jobs, count);
        if (count == 0) break;
    }
    assert_int_equal(seen, n);
}

static void test_list_pagination(void **state)
{
    fixture *f = *state;
    enum { N = 11 };
    vd_job jobs[N];
    /* several jobs share a created_at: insertion order breaks the tie */
    static const int64_t created[N] = {50, 10, 30, 30, 30, 20, 40, 10, 60, 30, 5};
    for (int i = 0; i < N; i++) {
        make_job(&jobs[i], i, created[i]);
        insert_ok(f->store, &jobs[i]);
    }
    qsort(jobs, N, sizeof jobs[0], by_created_then_inserted);
    for (int limit = 1; limit <= N + 1; limit++) {
        check_pages(f->store, limit, 1, jobs, N);
        check_pages(f->store, limit, 0, jobs, N);
    }

    char err[512];
    vd_job *page;
    int count, has_more;
    /* after the last one: an empty page */
    assert_int_equal(vd_store_list(f->store, 5, jobs[N - 1].id, 1, &page, &count, &has_more, err, sizeof err), 0);
    assert_int_equal(count, 0);
    assert_int_equal(has_more, 0);
    free(page);
    /* descending from the middle */
    assert_int_equal(vd_store_list(f->store, 3, jobs[5].id, 0, &page, &count, &has_more, err, sizeof err), 0);
    assert_int_equal(count, 3);
    assert_int_equal(has_more, 1);
    assert_string_equal(page[0].id, jobs[4].id);
    assert_string_equal(page[2].id, jobs[2].id);
    free_jobs(page, count);
    /* an unknown cursor, and a bad limit */
    assert_int_equal(vd_store_list(f->store, 5, "video_nosuch", 1, &page, &count, &has_more, err, sizeof err), 1);
    assert_int_equal(vd_store_list(f->store, 0, NULL, 1, &page, &count, &has_more, err, sizeof err), -1);
    for (int i = 0; i < N; i++) vd_job_clear(&jobs[i]);
}

static void test_list_status(void **state)
{
    fixture *f = *state;
    static const vd_job_status statuses[] = {VD_JOB_QUEUED, VD_JOB_COMPLETED, VD_JOB_QUEUED, VD_JOB_IN_PROGRESS,
                                             VD_JOB_QUEUED, VD_JOB_FAILED, VD_JOB_CANCELLED};
    static const int64_t created[] = {30, 10, 20, 15, 10, 5, 1};
    enum { N = 7 };
    vd_job jobs[N];
    for (int i = 0; i < N; i++) {
        make_job(&jobs[i], i, created[i]);
        jobs[i].status = statuses[i];
        insert_ok(f->store, &jobs[i]);
    }
    char err[512];
    vd_job *list;
    int count;
    assert_int_equal(vd_store_list_status(f->store, VD_JOB_QUEUED, &list, &count, err, sizeof err), 0);
    assert_int_equal(count, 3);
    assert_jobs_equal(&list[0], &jobs[4]); /* oldest first */
    assert_jobs_equal(&list[1], &jobs[2]);
    assert_jobs_equal(&list[2], &jobs[0]);
    free_jobs(list, count);
    assert_int_equal(vd_store_list_status(f->store, VD_JOB_IN_PROGRESS, &list, &count, err, sizeof err), 0);
    assert_int_equal(count, 1);
    assert_jobs_equal(&list[0], &jobs[3]);
    free_jobs(list, count);
    for (int i = 0; i < N; i++) vd_job_clear(&jobs[i]);
}

static void test_remove_expired(void **state)
{
    fixture *f = *state;
    static const struct { vd_job_status status; int64_t expires_at; int removed; } cases[] = {
        {VD_JOB_COMPLETED, 100, 1},   {VD_JOB_FAILED, 150, 1},     {VD_JOB_CANCELLED, 149, 1},
        {VD_JOB_COMPLETED, 151, 0},   {VD_JOB_IN_PROGRESS, 50, 0}, {VD_JOB_QUEUED, 50, 0},
        {VD_JOB_COMPLETED, 0, 0}, /* no expiry set */
    };
    enum { N = sizeof cases / sizeof cases[0] };
    vd_job jobs[N];
    for (int i = 0; i < N; i++) {
        make_job(&jobs[i], i, 10 + i);
        jobs[i].status = cases[i].status;
        jobs[i].expires_at = cases[i].expires_at;
        insert_ok(f->store, &jobs[i]);
        touch_files(f->store, jobs[i].id);
    }
    char err[512];
    assert_int_equal(vd_store_remove_expired(f->store, 150, err, sizeof err), 3);
    for (int i = 0; i < N; i++) {
        vd_job got;
        int rc = vd_store_get(f->store, jobs[i].id, &got, err, sizeof err);
        assert_int_equal(rc, cases[i].removed ? 1 : 0);
        if (rc == 0) vd_job_clear(&got);
        assert_int_equal(any_file(f->store, jobs[i].id), cases[i].removed ? 0 : 3);
    }
    assert_int_equal(vd_store_remove_expired(f->store, 150, err, sizeof err), 0);
    assert_int_equal(vd_store_remove_expired(f->store, 1000, err, sizeof err), 1);
    for (int i = 0; i < N; i++) vd_job_clear(&jobs[i]);
}

static void test_delete_removes_files(void **state)
{
    fixture *f = *state;
    vd_job job;
    make_job(&job, 1, 10);
    insert_ok(f->store, &job);
    touch_files(f->store, job.id);
    char err[512];
    assert_int_equal(vd_store_delete(f->store, job.id, err, sizeof err), 0);
    assert_int_equal(any_file(f->store, job.id), 0);

    /* a job without files (still queued) deletes too */
    vd_job_clear(&job);
    make_job(&job, 2, 10);
    insert_ok(f->store, &job);
    assert_int_equal(vd_store_delete(f->store, job.id, err, sizeof err), 0);
    vd_job_clear(&job);
}

static void test_paths(void **state)
{
    fixture *f = *state;
    char path[1024], expected[1024];
    static const char *const kinds[] = {"mp4", "png", "input.png"};
    for (int i = 0; i < 3; i++) {
        vd_store_path(f->store, "video_0123abcd", kinds[i], path, sizeof path);
        snprintf(expected, sizeof expected, "%s/videos/video_0123abcd.%s", f->data_dir, kinds[i]);
        assert_string_equal(path, expected);
    }
    /* an id that could leave the videos folder names no file */
    vd_store_path(f->store, "../jobs", "mp4", path, sizeof path);
    assert_string_equal(path, "");
    vd_store_path(f->store, "a/b", "mp4", path, sizeof path);
    assert_string_equal(path, "");
}

static void test_persistence(void **state)
{
    fixture *f = *state;
    enum { N = 5 };
    vd_job jobs[N];
    for (int i = 0; i < N; i++) {
        make_job(&jobs[i], i, 1000 + i);
        jobs[i].status = (vd_job_status)i;
        if (i == 1) jobs[i].idempotency_key = strdup("persisted");
        insert_ok(f->store, &jobs[i]);
    }
    /* the write-ahead log is in use */
    char path[512];
    snprintf(path, sizeof path, "%s/jobs.db-wal", f->data_dir);
    assert_true(exists(path));

    vd_store_close(f->store);
    char err[512];
    f->store = vd_store_open(f->data_dir, err, sizeof err);
    if (!f->store) fail_msg("%s", err);
    for (int i = 0; i < N; i++) assert_stored_equal(f->store, &jobs[i]);

    /* a job that was running when the process died is still in_progress: the scheduler decides */
    vd_job *list;
    int count;
    assert_int_equal(vd_store_list_status(f->store, VD_JOB_IN_PROGRESS, &list, &count, err, sizeof err), 0);
    assert_int_equal(count, 1);
    assert_string_equal(list[0].id, jobs[VD_JOB_IN_PROGRESS].id);
    free_jobs(list, count);

    /* the idempotency index survived too */
    vd_job again;
    char existing[VD_JOB_ID_LEN];
    make_job(&again, 9, 2000);
    snprintf(again.key_id, sizeof again.key_id, "%s", jobs[1].key_id);
    again.idempotency_key = strdup("persisted");
    assert_int_equal(vd_store_insert(f->store, &again, existing, err, sizeof err), 2);
    assert_string_equal(existing, jobs[1].id);
    vd_job_clear(&again);
    for (int i = 0; i < N; i++) vd_job_clear(&jobs[i]);
}

static void test_admin_runs_models_and_settings(void **state)
{
    fixture *f = *state;
    char err[512];
    vd_admin_run a = {.id = "analysis_1", .kind = "analysis", .status = VD_JOB_QUEUED, .created_at = 10},
                 d = {.id = "distill_1", .kind = "distillation", .status = VD_JOB_IN_PROGRESS, .created_at = 11};
    a.request = strdup("{\"prompts\":1}");
    d.request = strdup("{\"remove\":[\"mid\"]}");
    assert_int_equal(vd_store_run_insert(f->store, &a, err, sizeof err), 0);
    assert_int_equal(vd_store_run_insert(f->store, &d, err, sizeof err), 0);
    assert_int_equal(vd_store_run_insert(f->store, &a, err, sizeof err), -1); /* the id is taken */
    a.status = VD_JOB_FAILED;
    a.started_at = 12, a.completed_at = 13, a.attempts = 2;
    a.progress = strdup("{\"done\":3}");
    a.result = strdup("{\"blocks\":7}");
    snprintf(a.error_code, sizeof a.error_code, "analysis_failed");
    a.error_message = strdup("out of memory");
    assert_int_equal(vd_store_run_update(f->store, &a, err, sizeof err), 0);
    vd_admin_run missing = {.id = "analysis_none", .kind = "analysis"};
    assert_int_equal(vd_store_run_update(f->store, &missing, err, sizeof err), 1);

    vd_model_entry m = {.id = "teacher", .path = "/models/teacher.safetensors", .guide = "/models/teacher-guide.safetensors",
                        .source = "config", .created_at = 5};
    vd_model_entry s = {.id = "teacher-vdmini-1", .path = "/data/student.safetensors", .ae = "/models/ae.safetensors",
                        .source = "distill_1", .created_at = 6};
    assert_int_equal(vd_store_model_put(f->store, &m, err, sizeof err), 0);
    assert_int_equal(vd_store_model_put(f->store, &s, err, sizeof err), 0);
    snprintf(m.path, sizeof m.path, "/models/teacher-v2.safetensors"); /* a put replaces */
    assert_int_equal(vd_store_model_put(f->store, &m, err, sizeof err), 0);
    char value[64];
    assert_int_equal(vd_store_setting_get(f->store, "active_model", value, sizeof value, err, sizeof err), 1);
    assert_string_equal(value, "");
    assert_int_equal(vd_store_setting_put(f->store, "active_model", "teacher", err, sizeof err), 0);
    assert_int_equal(vd_store_setting_put(f->store, "active_model", "teacher-vdmini-1", err, sizeof err), 0);

    vd_store_close(f->store);
    f->store = vd_store_open(f->data_dir, err, sizeof err);
    if (!f->store) fail_msg("%s", err);

    vd_admin_run got;
    assert_int_equal(vd_store_run_get(f->store, "analysis_1", &got, err, sizeof err), 0);
    assert_string_equal(got.kind, "analysis");
    assert_int_equal(got.status, VD_JOB_FAILED);
    assert_int_equal(got.created_at, 10);
    assert_int_equal(got.started_at, 12);
    assert_int_equal(got.completed_at, 13);
    assert_int_equal(got.attempts, 2);
    assert_string_equal(got.request, a.request);
    assert_string_equal(got.progress, a.progress);
    assert_string_equal(got.result, a.result);
    assert_string_equal(got.error_code, "analysis_failed");
    assert_string_equal(got.error_message, "out of memory");
    vd_admin_run_clear(&got);
    assert_int_equal(vd_store_run_get(f->store, "distill_1", &got, err, sizeof err), 0);
    assert_null(got.progress);
    assert_null(got.result);
    assert_null(got.error_message);
    vd_admin_run_clear(&got);
    assert_int_equal(vd_store_run_get(f->store, "analysis_none", &got, err, sizeof err), 1);

    vd_admin_run *runs;
    int count;
    assert_int_equal(vd_store_run_list(f->store, NULL, &runs, &count, err, sizeof err), 0);
    assert_int_equal(count, 2);
    assert_string_equal(runs[0].id, "analysis_1"); /* oldest first */
    assert_string_equal(runs[1].id, "distill_1");
    for (int i = 0; i < count; i++) vd_admin_run_clear(&runs[i]);
    free(runs);
    assert_int_equal(vd_store_run_list(f->store, "distillation", &runs, &count, err, sizeof err), 0);
    assert_int_equal(count, 1);
    assert_string_equal(runs[0].id, "distill_1");
    vd_admin_run_clear(&runs[0]);
    free(runs);

    vd_model_entry *models;
    assert_int_equal(vd_store_model_list(f->store, &models, &count, err, sizeof err), 0);
    assert_int_equal(count, 2);
    assert_string_equal(models[0].id, "teacher");
    assert_string_equal(models[0].path, "/models/teacher-v2.safetensors");
    assert_string_equal(models[0].ae, "");
    assert_string_equal(models[0].guide, "/models/teacher-guide.safetensors");
    assert_string_equal(models[1].ae, "/models/ae.safetensors");
    assert_string_equal(models[1].guide, "");
    assert_string_equal(models[1].source, "distill_1");
    assert_int_equal(models[1].created_at, 6);
    free(models);
    vd_model_entry one;
    assert_int_equal(vd_store_model_get(f->store, "teacher-vdmini-1", &one, err, sizeof err), 0);
    assert_string_equal(one.path, "/data/student.safetensors");
    assert_int_equal(vd_store_model_get(f->store, "sora-2", &one, err, sizeof err), 1);
    assert_int_equal(vd_store_setting_get(f->store, "active_model", value, sizeof value, err, sizeof err), 0);
    assert_string_equal(value, "teacher-vdmini-1");

    char dir[512];
    vd_store_run_dir(f->store, "distill_1", dir, sizeof dir);
    char want[512];
    snprintf(want, sizeof want, "%s/admin/distill_1", f->data_dir);
    assert_string_equal(dir, want);
    snprintf(want, sizeof want, "%s/admin", f->data_dir);
    assert_true(exists(want));
    vd_admin_run_clear(&a);
    vd_admin_run_clear(&d);
}

/* A new data directory NAME under the fixture's: dir (512 bytes) and its database's path (600). */
static void new_data_dir(const fixture *f, const char *name, char *dir, char *path)
{
    snprintf(dir, 512, "%s/%s", f->dir, name);
    assert_int_equal(mkdir(dir, 0750), 0);
    snprintf(path, 600, "%s/jobs.db", dir);
}

static void test_corrupt_database(void **state)
{
    fixture *f = *state;
    char dir[512], path[600], err[512];
    new_data_dir(f, "corrupt", dir, path);
    FILE *db = fopen(path, "wb");
    assert_non_null(db);
    for (int i = 0; i < 4096; i++) fputc((i * 7919) & 0xff, db);
    fclose(db);
    err[0] = '\0';
    assert_null(vd_store_open(dir, err, sizeof err));
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "not a database"));

    /* a database from a newer vdmini */
    snprintf(dir, sizeof dir, "%s/newer", f->dir);
    vd_store *s = vd_store_open(dir, err, sizeof err);
    assert_non_null(s);
    vd_store_close(s);
    snprintf(path, sizeof path, "%s/jobs.db", dir);
    sqlite3 *raw;
    assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
    assert_int_equal(sqlite3_exec(raw, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
    assert_null(vd_store_open(dir, err, sizeof err));
    assert_non_null(strstr(err, "schema version 99 is newer"));

    /* a data directory that is a file */
    snprintf(path, sizeof path, "%s/plain-file", f->dir);
    touch(path);
    assert_null(vd_store_open(path, err, sizeof err));
    assert_non_null(strstr(err, "plain-file"));
}

/* The database as vdmini wrote it at schema version 2, before guides: jobs without guide_scale
 * (and eta), models without guide. One job and one model in it. */
static const char *const version_2_database =
    "CREATE TABLE jobs (id TEXT PRIMARY KEY NOT NULL, model TEXT NOT NULL, status TEXT NOT NULL,"
    " progress INTEGER NOT NULL, created_at INTEGER NOT NULL, started_at INTEGER NOT NULL,"
    " completed_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, prompt TEXT, width INTEGER NOT NULL,"
    " height INTEGER NOT NULL, frames INTEGER NOT NULL, fps INTEGER NOT NULL, steps INTEGER NOT NULL,"
    " guidance REAL NOT NULL, sampler INTEGER NOT NULL, seed INTEGER NOT NULL, has_image INTEGER NOT NULL,"
    " unknown_words TEXT, error_code TEXT NOT NULL, error_message TEXT, idempotency_key TEXT,"
    " key_id TEXT NOT NULL, remixed_from TEXT NOT NULL, attempts INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX jobs_idempotency ON jobs (key_id, idempotency_key) WHERE idempotency_key IS NOT NULL;"
    "CREATE INDEX jobs_created ON jobs (created_at, id);"
    "CREATE INDEX jobs_status ON jobs (status, created_at, id);"
    "CREATE TABLE admin_runs (id TEXT PRIMARY KEY NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,"
    " created_at INTEGER NOT NULL, started_at INTEGER NOT NULL, completed_at INTEGER NOT NULL,"
    " request TEXT NOT NULL, progress TEXT, result TEXT, error_code TEXT NOT NULL, error_message TEXT,"
    " attempts INTEGER NOT NULL);"
    "CREATE INDEX admin_runs_kind ON admin_runs (kind, created_at);"
    "CREATE TABLE models (id TEXT PRIMARY KEY NOT NULL, path TEXT NOT NULL, ae TEXT NOT NULL,"
    " source TEXT NOT NULL, created_at INTEGER NOT NULL);"
    "CREATE TABLE settings (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);"
    "INSERT INTO jobs VALUES ('video_old', 'teacher', 'completed', 100, 1700000000, 1700000001, 1700000002,"
    " 1700086402, 'a red circle moves left', 128, 96, 16, 8, 25, 4.5, 1, -1, 0, 'zorp', '', NULL, 'retry-7',"
    " 'key1', '', 1);"
    "INSERT INTO models VALUES ('teacher', '/models/teacher.safetensors', '', 'config', 5);"
    "INSERT INTO settings VALUES ('active_model', 'teacher');"
    "PRAGMA user_version = 2;";

static int user_version(const char *db_path)
{
    sqlite3 *raw;
    sqlite3_stmt *stmt;
    assert_int_equal(sqlite3_open(db_path, &raw), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(raw, "PRAGMA user_version", -1, &stmt, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    int version = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(raw);
    return version;
}

static void test_migration_keeps_old_rows(void **state)
{
    fixture *f = *state;
    char dir[512], path[600], err[512];
    new_data_dir(f, "old", dir, path);
    sqlite3 *raw;
    char *message = NULL;
    assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
    if (sqlite3_exec(raw, version_2_database, NULL, NULL, &message) != SQLITE_OK) fail_msg("%s", message);
    sqlite3_close(raw);

    vd_store *s = vd_store_open(dir, err, sizeof err);
    if (!s) fail_msg("%s", err);
    char fresh[600];
    snprintf(fresh, sizeof fresh, "%s/jobs.db", f->data_dir);
    assert_true(user_version(path) > 2);
    assert_int_equal(user_version(path), user_version(fresh));

    /* the old job, every field as it was, with no guide and no fresh noise */
    vd_job old = {.id = "video_old", .model = "teacher", .status = VD_JOB_COMPLETED, .progress = 100,
                  .created_at = 1700000000, .started_at = 1700000001, .completed_at = 1700000002,
                  .expires_at = 1700086402, .prompt = "a red circle moves left", .width = 128, .height = 96,
                  .frames = 16, .fps = 8, .steps = 25, .guidance = 4.5f, .guide_scale = 0.0f, .sampler = 1,
                  .seed = UINT64_MAX, .unknown_words = "zorp", .idempotency_key = "retry-7", .key_id = "key1",
                  .attempts = 1};
    assert_stored_equal(s, &old);
    /* its idempotency key still finds it */
    vd_job again;
    char existing[VD_JOB_ID_LEN];
    make_job(&again, 1, 1700000003);
    snprintf(again.key_id, sizeof again.key_id, "key1");
    again.idempotency_key = strdup("retry-7");
    assert_int_equal(vd_store_insert(s, &again, existing, err, sizeof err), 2);
    assert_string_equal(existing, "video_old");
    vd_job_clear(&again);
    /* and it takes a guide scale and an eta like a new one */
    old.guide_scale = 2.5f;
    old.sampler = 0;
    old.eta = 0.75f;
    assert_int_equal(vd_store_update(s, &old, err, sizeof err), 0);
    assert_stored_equal(s, &old);

    vd_model_entry m;
    assert_int_equal(vd_store_model_get(s, "teacher", &m, err, sizeof err), 0);
    assert_string_equal(m.path, "/models/teacher.safetensors");
    assert_string_equal(m.source, "config");
    assert_int_equal(m.created_at, 5);
    assert_string_equal(m.guide, "");
    char value[64];
    assert_int_equal(vd_store_setting_get(s, "active_model", value, sizeof value, err, sizeof err), 0);
    assert_string_equal(value, "teacher");
    vd_store_close(s);

    /* opening it again migrates nothing more and keeps the update */
    s = vd_store_open(dir, err, sizeof err);
    if (!s) fail_msg("%s", err);
    assert_stored_equal(s, &old);
    vd_store_close(s);
}

typedef struct {
    vd_store *store;
    int thread;
    int failures;
} inserter;

enum { THREADS = 4, PER_THREAD = 50 };

static void *insert_many(void *arg)
{
    inserter *in = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        vd_job job;
        make_job(&job, in->thread * PER_THREAD + i, 500 + i);
        char err[512], existing[VD_JOB_ID_LEN], key[32];
        snprintf(key, sizeof key, "t%d-%d", in->thread, i);
        job.idempotency_key = strdup(key);
        if (vd_store_insert(in->store, &job, existing, err, sizeof err) != 0) in->failures++;
        vd_job_clear(&job);
    }
    return NULL;
}

static void test_concurrent_inserts(void **state)
{
    fixture *f = *state;
    pthread_t threads[THREADS];
    inserter args[THREADS];
    for (int t = 0; t < THREADS; t++) {
        args[t] = (inserter){f->store, t, 0};
        assert_int_equal(pthread_create(&threads[t], NULL, insert_many, &args[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        assert_int_equal(args[t].failures, 0);
    }
    char err[512];
    vd_job *list;
    int count, has_more;
    assert_int_equal(vd_store_list(f->store, 1000, NULL, 1, &list, &count, &has_more, err, sizeof err), 0);
    assert_int_equal(count, THREADS * PER_THREAD);
    assert_int_equal(has_more, 0);
    free_jobs(list, count);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_directories, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_pagination, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_removes_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persistence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_runs_models_and_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_keeps_old_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_inserts, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
