/* store.c: the job store of store.h on SQLite. One connection in WAL mode with
 * synchronous=NORMAL: every committed write survives a crash or kill -9 of the server (it is in
 * the operating system's hands at once), and only a power cut or kernel crash can lose the last
 * writes before a checkpoint — the price of not waiting for the disk on every job update, which
 * cost more than a denoiser step. One mutex guards the connection; every statement
 * is prepared once and takes its values as bound parameters. The schema is versioned by
 * PRAGMA user_version and grows by appending to the migrations below. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

/* migrations[i] takes the schema from version i to version i + 1. */
static const char *const migrations[] = {
    "CREATE TABLE jobs ("
    " id TEXT PRIMARY KEY NOT NULL,"
    " model TEXT NOT NULL,"
    " status TEXT NOT NULL,"
    " progress INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " started_at INTEGER NOT NULL,"
    " completed_at INTEGER NOT NULL,"
    " expires_at INTEGER NOT NULL,"
    " prompt TEXT,"
    " width INTEGER NOT NULL,"
    " height INTEGER NOT NULL,"
    " frames INTEGER NOT NULL,"
    " fps INTEGER NOT NULL,"
    " steps INTEGER NOT NULL,"
    " guidance REAL NOT NULL,"
    " sampler INTEGER NOT NULL,"
    " seed INTEGER NOT NULL," /* the uint64 seed's bits as a signed 64-bit integer */
    " has_image INTEGER NOT NULL,"
    " unknown_words TEXT,"
    " error_code TEXT NOT NULL,"
    " error_message TEXT,"
    " idempotency_key TEXT,"
    " key_id TEXT NOT NULL,"
    " remixed_from TEXT NOT NULL,"
    " attempts INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX jobs_idempotency ON jobs (key_id, idempotency_key)"
    " WHERE idempotency_key IS NOT NULL;"
    "CREATE INDEX jobs_created ON jobs (created_at, id);"
    "CREATE INDEX jobs_status ON jobs (status, created_at, id);",
    "CREATE TABLE admin_runs ("
    " id TEXT PRIMARY KEY NOT NULL,"
    " kind TEXT NOT NULL,"
    " status TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " started_at INTEGER NOT NULL,"
    " completed_at INTEGER NOT NULL,"
    " request TEXT NOT NULL,"
    " progress TEXT,"
    " result TEXT,"
    " error_code TEXT NOT NULL,"
    " error_message TEXT,"
    " attempts INTEGER NOT NULL);"
    "CREATE INDEX admin_runs_kind ON admin_runs (kind, created_at);"
    "CREATE TABLE models ("
    " id TEXT PRIMARY KEY NOT NULL,"
    " path TEXT NOT NULL,"
    " ae TEXT NOT NULL,"
    " source TEXT NOT NULL,"
    " created_at INTEGER NOT NULL);"
    "CREATE TABLE settings (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);",
    "ALTER TABLE models ADD COLUMN guide TEXT NOT NULL DEFAULT '';",
    "ALTER TABLE jobs ADD COLUMN guide_scale REAL NOT NULL DEFAULT 0;",
    "ALTER TABLE jobs ADD COLUMN eta REAL NOT NULL DEFAULT 0;",
};

/* The columns in the order bind_job numbers them (?1 to ?27) and read_job reads them. */
#define JOB_COLUMNS                                                                              \
    "id, model, status, progress, created_at, started_at, completed_at, expires_at, prompt, width," \
    " height, frames, fps, steps, guidance, sampler, seed, has_image, unknown_words, error_code,"  \
    " error_message, idempotency_key, key_id, remixed_from, attempts, guide_scale, eta"
#define FINISHED "status IN ('completed', 'failed', 'cancelled')"
/* The columns of admin_runs in the order bind_run numbers them and read_run reads them. */
#define RUN_COLUMNS                                                                                  \
    "id, kind, status, created_at, started_at, completed_at, request, progress, result, error_code," \
    " error_message, attempts"
/* The columns of models in the order vd_store_model_put numbers them and read_model reads them. */
#define MODEL_COLUMNS "id, path, ae, source, created_at, guide"

enum {
    STMT_INSERT,
    STMT_UPDATE,
    STMT_GET,
    STMT_DELETE,
    STMT_FIND_IDEMPOTENT,
    STMT_CREATED_AT,
    STMT_LIST_ASC,
    STMT_LIST_DESC,
    STMT_LIST_STATUS,
    STMT_EXPIRED,
    STMT_RUN_INSERT,
    STMT_RUN_UPDATE,
    STMT_RUN_GET,
    STMT_RUN_LIST,
    STMT_MODEL_PUT,
    STMT_MODEL_GET,
    STMT_MODEL_LIST,
    STMT_SETTING_GET,
    STMT_SETTING_PUT,
    STMT_COUNT
};

static const char *const statement_sql[STMT_COUNT] = {
    [STMT_INSERT] = "INSERT INTO jobs (" JOB_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,"
                    " ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)",
    [STMT_UPDATE] = "UPDATE jobs SET model = ?2, status = ?3, progress = ?4, created_at = ?5,"
                    " started_at = ?6, completed_at = ?7, expires_at = ?8, prompt = ?9, width = ?10,"
                    " height = ?11, frames = ?12, fps = ?13, steps = ?14, guidance = ?15, sampler = ?16,"
                    " seed = ?17, has_image = ?18, unknown_words = ?19, error_code = ?20,"
                    " error_message = ?21, idempotency_key = ?22, key_id = ?23, remixed_from = ?24,"
                    " attempts = ?25, guide_scale = ?26, eta = ?27 WHERE id = ?1",
    [STMT_GET] = "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?1",
    [STMT_DELETE] = "DELETE FROM jobs WHERE id = ?1",
    [STMT_FIND_IDEMPOTENT] = "SELECT id FROM jobs WHERE key_id = ?1 AND idempotency_key = ?2",
    [STMT_CREATED_AT] = "SELECT created_at, rowid FROM jobs WHERE id = ?1",
    /* Jobs are ordered by (created_at, rowid): rowid keeps insertion order within a second.
     * ?1, ?2: the cursor's created_at and rowid, or NULL for the first page; ?3: rows wanted */
    [STMT_LIST_ASC] = "SELECT " JOB_COLUMNS " FROM jobs WHERE ?1 IS NULL OR (created_at, rowid) > (?1, ?2)"
                      " ORDER BY created_at ASC, rowid ASC LIMIT ?3",
    [STMT_LIST_DESC] = "SELECT " JOB_COLUMNS " FROM jobs WHERE ?1 IS NULL OR (created_at, rowid) < (?1, ?2)"
                       " ORDER BY created_at DESC, rowid DESC LIMIT ?3",
    [STMT_LIST_STATUS] = "SELECT " JOB_COLUMNS " FROM jobs WHERE status = ?1 ORDER BY created_at, rowid",
    [STMT_EXPIRED] = "SELECT id FROM jobs WHERE " FINISHED " AND expires_at > 0 AND expires_at <= ?1"
                     " ORDER BY expires_at, id",
    [STMT_RUN_INSERT] = "INSERT INTO admin_runs (" RUN_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,"
                        " ?10, ?11, ?12)",
    [STMT_RUN_UPDATE] = "UPDATE admin_runs SET kind = ?2, status = ?3, created_at = ?4, started_at = ?5,"
                        " completed_at = ?6, request = ?7, progress = ?8, result = ?9, error_code = ?10,"
                        " error_message = ?11, attempts = ?12 WHERE id = ?1",
    [STMT_RUN_GET] = "SELECT " RUN_COLUMNS " FROM admin_runs WHERE id = ?1",
    /* ?1: the kind, or NULL for every kind */
    [STMT_RUN_LIST] = "SELECT " RUN_COLUMNS " FROM admin_runs WHERE ?1 IS NULL OR kind = ?1"
                      " ORDER BY created_at, rowid",
    [STMT_MODEL_PUT] = "INSERT OR REPLACE INTO models (" MODEL_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [STMT_MODEL_GET] = "SELECT " MODEL_COLUMNS " FROM models WHERE id = ?1",
    [STMT_MODEL_LIST] = "SELECT " MODEL_COLUMNS " FROM models ORDER BY created_at, rowid",
    [STMT_SETTING_GET] = "SELECT value FROM settings WHERE name = ?1",
    [STMT_SETTING_PUT] = "INSERT OR REPLACE INTO settings (name, value) VALUES (?1, ?2)",
};

struct vd_store {
    pthread_mutex_t lock;
    sqlite3 *db;
    sqlite3_stmt *stmt[STMT_COUNT];
    char *data_dir;
    char *db_path;
};

static const char *const file_kinds[] = {"mp4", "png", "input.png"};

static int db_fail(vd_store *s, char *err, size_t errlen)
{
    return vd_fail(err, errlen, "%s: %s", s->db_path, sqlite3_errmsg(s->db));
}

/* Makes stmt ready for its next use. */
static void done(sqlite3_stmt *stmt)
{
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
}

/* ---- opening ---- */

/* Creates dir and its missing parents with the given mode. */
/* Binds key to stmt's first parameter and steps it: 0 at a row (read it, then done()), 1 when
 * there is none, -1 with a message. */
static int step_by_key(vd_store *s, sqlite3_stmt *stmt, const char *key, char *err, size_t errlen)
{
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(stmt);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? 1 : db_fail(s, err, errlen);
}

static int make_dirs(const char *dir, mode_t mode, char *err, size_t errlen)
{
    char *path = strdup(dir);
    int status = 0;
    for (char *p = path + 1; status == 0; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(path, mode) != 0 && errno != EEXIST)
            status = vd_fail(err, errlen, "%s: cannot create: %s", path, strerror(errno));
        *p = saved;
        if (saved == '\0') break;
    }
    struct stat st;
    if (status == 0 && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)))
        status = vd_fail(err, errlen, "%s: not a directory", dir);
    free(path);
    return status;
}

static int exec_sql(vd_store *s, const char *sql, char *err, size_t errlen)
{
    char *message = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &message) == SQLITE_OK) return 0;
    vd_fail(err, errlen, "%s: %s", s->db_path, message ? message : sqlite3_errmsg(s->db));
    sqlite3_free(message);
    return -1;
}

/* Runs one statement that returns a single integer (a pragma's value). */
static int query_int(vd_store *s, const char *sql, int *value, char *err, size_t errlen)
{
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(s->db, sql, -1, &stmt, NULL) != SQLITE_OK) return db_fail(s, err, errlen);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) *value = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    return rc == SQLITE_ROW ? 0 : db_fail(s, err, errlen);
}

static int migrate(vd_store *s, char *err, size_t errlen)
{
    int version = 0;
    if (query_int(s, "PRAGMA user_version", &version, err, errlen) != 0) return -1;
    int latest = (int)VD_ARRAY_LEN(migrations);
    if (version > latest)
        return vd_fail(err, errlen, "%s: schema version %d is newer than this vdmini's (%d)", s->db_path,
                    version, latest);
    for (; version < latest; version++) {
        char set_version[64];
        snprintf(set_version, sizeof set_version, "PRAGMA user_version = %d", version + 1);
        if (exec_sql(s, "BEGIN IMMEDIATE", err, errlen) != 0) return -1;
        if (exec_sql(s, migrations[version], err, errlen) != 0 || exec_sql(s, set_version, err, errlen) != 0) {
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
        if (exec_sql(s, "COMMIT", err, errlen) != 0) return -1;
        VD_LOG(VD_LOG_INFO, "%s: schema at version %d", s->db_path, version + 1);
    }
    return 0;
}

static int configure_db(vd_store *s, char *err, size_t errlen)
{
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 5000);
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &stmt, NULL) != SQLITE_OK)
        return db_fail(s, err, errlen);
    int rc = sqlite3_step(stmt);
    int wal = rc == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(stmt, 0), "wal") == 0;
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW) return db_fail(s, err, errlen);
    if (!wal) return vd_fail(err, errlen, "%s: cannot switch to WAL journaling", s->db_path);
    if (exec_sql(s, "PRAGMA synchronous = NORMAL", err, errlen) != 0) return -1;
    if (migrate(s, err, errlen) != 0) return -1;
    for (int i = 0; i < STMT_COUNT; i++)
        if (sqlite3_prepare_v3(s->db, statement_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i], NULL) != SQLITE_OK)
            return db_fail(s, err, errlen);
    return 0;
}

vd_store *vd_store_open(const char *data_dir, char *err, size_t errlen)
{
    vd_store *s = vd_calloc(1, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    s->data_dir = strdup(data_dir);
    size_t len = strlen(data_dir) + 16;
    s->db_path = vd_malloc(len);
    snprintf(s->db_path, len, "%s/jobs.db", data_dir);
    char *subdir = vd_malloc(len);
    snprintf(subdir, len, "%s/videos", data_dir);
    int status = make_dirs(data_dir, 0750, err, errlen);
    if (status == 0) status = make_dirs(subdir, 0750, err, errlen);
    snprintf(subdir, len, "%s/admin", data_dir);
    if (status == 0) status = make_dirs(subdir, 0750, err, errlen);
    free(subdir);
    if (status == 0) {
        /* create the file ourselves so that it (and SQLite's -wal and -shm beside it) is 0640 */
        int fd = open(s->db_path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0) status = vd_fail(err, errlen, "%s: cannot open: %s", s->db_path, strerror(errno));
        else close(fd);
    }
    if (status == 0 && sqlite3_open_v2(s->db_path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        status = s->db ? db_fail(s, err, errlen) : vd_fail(err, errlen, "%s: out of memory", s->db_path);
    if (status == 0) status = configure_db(s, err, errlen);
    if (status != 0) {
        vd_store_close(s);
        return NULL;
    }
    return s;
}

void vd_store_close(vd_store *s)
{
    if (!s) return;
    for (int i = 0; i < STMT_COUNT; i++) sqlite3_finalize(s->stmt[i]);
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->lock);
    free(s->data_dir);
    free(s->db_path);
    free(s);
}

/* ---- rows ---- */

static int bind_text_or_null(sqlite3_stmt *stmt, int index, const char *text)
{
    return text ? sqlite3_bind_text(stmt, index, text, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(stmt, index);
}

static int bind_job(sqlite3_stmt *stmt, const vd_job *j)
{
    int64_t seed;
    memcpy(&seed, &j->seed, sizeof seed);
    int rc = SQLITE_OK;
    rc |= sqlite3_bind_text(stmt, 1, j->id, -1, SQLITE_TRANSIENT);
    rc |= sqlite3_bind_text(stmt, 2, j->model, -1, SQLITE_TRANSIENT);
    rc |= sqlite3_bind_text(stmt, 3, vd_job_status_name(j->status), -1, SQLITE_STATIC);
    rc |= sqlite3_bind_int(stmt, 4, j->progress);
    rc |= sqlite3_bind_int64(stmt, 5, j->created_at);
    rc |= sqlite3_bind_int64(stmt, 6, j->started_at);
    rc |= sqlite3_bind_int64(stmt, 7, j->completed_at);
    rc |= sqlite3_bind_int64(stmt, 8, j->expires_at);
    rc |= bind_text_or_null(stmt, 9, j->prompt);
    rc |= sqlite3_bind_int(stmt, 10, j->width);
    rc |= sqlite3_bind_int(stmt, 11, j->height);
    rc |= sqlite3_bind_int(stmt, 12, j->frames);
    rc |= sqlite3_bind_int(stmt, 13, j->fps);
    rc |= sqlite3_bind_int(stmt, 14, j->steps);
    rc |= sqlite3_bind_double(stmt, 15, j->guidance);
    rc |= sqlite3_bind_int(stmt, 16, j->sampler);
    rc |= sqlite3_bind_int64(stmt, 17, seed);
    rc |= sqlite3_bind_int(stmt, 18, j->has_image);
    rc |= bind_text_or_null(stmt, 19, j->unknown_words);
    rc |= sqlite3_bind_text(stmt, 20, j->error_code, -1, SQLITE_TRANSIENT);
    rc |= bind_text_or_null(stmt, 21, j->error_message);
    rc |= bind_text_or_null(stmt, 22, j->idempotency_key);
    rc |= sqlite3_bind_text(stmt, 23, j->key_id, -1, SQLITE_TRANSIENT);
    rc |= sqlite3_bind_text(stmt, 24, j->remixed_from, -1, SQLITE_TRANSIENT);
    rc |= sqlite3_bind_int(stmt, 25, j->attempts);
    rc |= sqlite3_bind_double(stmt, 26, j->guide_scale);
    rc |= sqlite3_bind_double(stmt, 27, j->eta);
    return rc == SQLITE_OK ? 0 : -1;
}

static char *column_strdup(sqlite3_stmt *stmt, int col)
{
    const char *text = (const char *)sqlite3_column_text(stmt, col);
    return text ? strdup(text) : NULL;
}

static void column_copy(sqlite3_stmt *stmt, int col, char *buf, size_t buflen)
{
    const char *text = (const char *)sqlite3_column_text(stmt, col);
    snprintf(buf, buflen, "%s", text ? text : "");
}

static vd_job_status status_from_name(const char *name)
{
    for (vd_job_status st = VD_JOB_QUEUED; st <= VD_JOB_CANCELLED; st++)
        if (name && strcmp(vd_job_status_name(st), name) == 0) return st;
    return VD_JOB_FAILED; /* not written by this code: treat the job as broken */
}

static void read_job(sqlite3_stmt *stmt, vd_job *j)
{
    memset(j, 0, sizeof *j);
    column_copy(stmt, 0, j->id, sizeof j->id);
    column_copy(stmt, 1, j->model, sizeof j->model);
    j->status = status_from_name((const char *)sqlite3_column_text(stmt, 2));
    j->progress = sqlite3_column_int(stmt, 3);
    j->created_at = sqlite3_column_int64(stmt, 4);
    j->started_at = sqlite3_column_int64(stmt, 5);
    j->completed_at = sqlite3_column_int64(stmt, 6);
    j->expires_at = sqlite3_column_int64(stmt, 7);
    j->prompt = column_strdup(stmt, 8);
    j->width = sqlite3_column_int(stmt, 9);
    j->height = sqlite3_column_int(stmt, 10);
    j->frames = sqlite3_column_int(stmt, 11);
    j->fps = sqlite3_column_int(stmt, 12);
    j->steps = sqlite3_column_int(stmt, 13);
    j->guidance = (float)sqlite3_column_double(stmt, 14);
    j->sampler = sqlite3_column_int(stmt, 15);
    int64_t seed = sqlite3_column_int64(stmt, 16);
    memcpy(&j->seed, &seed, sizeof seed);
    j->has_image = sqlite3_column_int(stmt, 17);
    j->unknown_words = column_strdup(stmt, 18);
    column_copy(stmt, 19, j->error_code, sizeof j->error_code);
    j->error_message = column_strdup(stmt, 20);
    j->idempotency_key = column_strdup(stmt, 21);
    column_copy(stmt, 22, j->key_id, sizeof j->key_id);
    column_copy(stmt, 23, j->remixed_from, sizeof j->remixed_from);
    j->attempts = sqlite3_column_int(stmt, 24);
    j->guide_scale = (float)sqlite3_column_double(stmt, 25);
    j->eta = (float)sqlite3_column_double(stmt, 26);
}

/* Steps a statement whose rows are jobs to the end; *jobs is malloc'd (NULL when none). */
static int read_jobs(vd_store *s, sqlite3_stmt *stmt, vd_job **jobs, int *count, char *err, size_t errlen)
{
    vd_job *list = NULL;
    int n = 0, rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        list = vd_realloc(list, (size_t)(n + 1) * sizeof *list);
        read_job(stmt, &list[n++]);
    }
    if (rc != SQLITE_DONE) {
        for (int i = 0; i < n; i++) vd_job_clear(&list[i]);
        free(list);
        return db_fail(s, err, errlen);
    }
    *jobs = list;
    *count = n;
    return 0;
}

/* ---- operations ---- */

int vd_store_insert(vd_store *s, const vd_job *job, char existing_id[VD_JOB_ID_LEN], char *err,
                    size_t errlen)
{
    pthread_mutex_lock(&s->lock);
    int status = 0;
    if (job->idempotency_key) {
        sqlite3_stmt *find = s->stmt[STMT_FIND_IDEMPOTENT];
        sqlite3_bind_text(find, 1, job->key_id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(find, 2, job->idempotency_key, -1, SQLITE_TRANSIENT);
        int rc = sqlite3_step(find);
        if (rc == SQLITE_ROW) {
            column_copy(find, 0, existing_id, VD_JOB_ID_LEN);
            status = 2;
        } else if (rc != SQLITE_DONE) {
            status = db_fail(s, err, errlen);
        }
        done(find);
    }
    if (status == 0) {
        sqlite3_stmt *insert = s->stmt[STMT_INSERT];
        if (bind_job(insert, job) != 0 || sqlite3_step(insert) != SQLITE_DONE) status = db_fail(s, err, errlen);
        done(insert);
    }
    pthread_mutex_unlock(&s->lock);
    return status;
}

int vd_store_get(vd_store *s, const char *id, vd_job *out, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *get = s->stmt[STMT_GET];
    int status = step_by_key(s, get, id, err, errlen);
    if (status == 0) read_job(get, out);
    done(get);
    pthread_mutex_unlock(&s->lock);
    return status;
}

int vd_store_update(vd_store *s, const vd_job *job, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *update = s->stmt[STMT_UPDATE];
    int status = 0;
    if (bind_job(update, job) != 0 || sqlite3_step(update) != SQLITE_DONE) status = db_fail(s, err, errlen);
    else if (sqlite3_changes(s->db) == 0) status = 1;
    done(update);
    pthread_mutex_unlock(&s->lock);
    return status;
}

/* Removes a job's files (those that exist); -1 when one cannot be removed. */
static int remove_files(vd_store *s, const char *id, char *err, size_t errlen)
{
    char path[4096];
    for (size_t i = 0; i < VD_ARRAY_LEN(file_kinds); i++) {
        vd_store_path(s, id, file_kinds[i], path, sizeof path);
        if (unlink(path) != 0 && errno != ENOENT)
            return vd_fail(err, errlen, "%s: cannot remove: %s", path, strerror(errno));
    }
    return 0;
}

/* Files first, then the row: a crash in between leaves a row whose removal is simply retried. */
static int delete_locked(vd_store *s, const char *id, char *err, size_t errlen)
{
    if (remove_files(s, id, err, errlen) != 0) return -1;
    sqlite3_stmt *del = s->stmt[STMT_DELETE];
    sqlite3_bind_text(del, 1, id, -1, SQLITE_TRANSIENT);
    int status = sqlite3_step(del) == SQLITE_DONE ? 0 : db_fail(s, err, errlen);
    done(del);
    return status;
}

/* The created_at and rowid of job id: 0 found, 1 no such job, -1 error. */
static int created_at_locked(vd_store *s, const char *id, int64_t *created_at, int64_t *rowid, char *err,
                             size_t errlen)
{
    sqlite3_stmt *stmt = s->stmt[STMT_CREATED_AT];
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(stmt), status = 0;
    if (rc == SQLITE_ROW) *created_at = sqlite3_column_int64(stmt, 0), *rowid = sqlite3_column_int64(stmt, 1);
    else if (rc == SQLITE_DONE) status = 1;
    else status = db_fail(s, err, errlen);
    done(stmt);
    return status;
}

int vd_store_delete(vd_store *s, const char *id, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->lock);
    int64_t created_at, rowid;
    int status = created_at_locked(s, id, &created_at, &rowid, err, errlen);
    if (status == 0) status = delete_locked(s, id, err, errlen);
    pthread_mutex_unlock(&s->lock);
    return status;
}

int vd_store_list(vd_store *s, int limit, const char *after, int ascending, vd_job **jobs, int *count,
                  int *has_more, char *err, size_t errlen)
{
    *jobs = NULL;
    *count = *has_more = 0;
    if (limit < 1) return vd_fail(err, errlen, "list limit %d is not positive", limit);
    pthread_mutex_lock(&s->lock);
    int64_t created_at = 0, rowid = 0;
    int status = after ? created_at_locked(s, after, &created_at, &rowid, err, errlen) : 0;
    if (status == 0) {
        sqlite3_stmt *list = s->stmt[ascending ? STMT_LIST_ASC : STMT_LIST_DESC];
        if (after) {
            sqlite3_bind_int64(list, 1, created_at);
            sqlite3_bind_int64(list, 2, rowid);
        }
        sqlite3_bind_int64(list, 3, (int64_t)limit + 1); /* one more tells whether more follow */
        status = read_jobs(s, list, jobs, count, err, errlen);
        done(list);
    }
    pthread_mutex_unlock(&s->lock);
    if (status == 0 && *count > limit) {
        vd_job_clear(&(*jobs)[limit]);
        *count = limit;
        *has_more = 1;
    }
    return status;
}

int vd_store_list_status(vd_store *s, vd_job_status status, vd_job **jobs, int *count, char *err,
                         size_t errlen)
{
    *jobs = NULL;
    *count = 0;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *list = s->stmt[STMT_LIST_STATUS];
    sqlite3_bind_text(list, 1, vd_job_status_name(status), -1, SQLITE_STATIC);
    int result = read_jobs(s, list, jobs, count, err, errlen);
    done(list);
    pthread_mutex_unlock(&s->lock);
    return result;
}

int vd_store_remove_expired(vd_store *s, int64_t now, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *expired = s->stmt[STMT_EXPIRED];
    sqlite3_bind_int64(expired, 1, now);
    char (*ids)[VD_JOB_ID_LEN] = NULL;
    int n = 0, rc;
    while ((rc = sqlite3_step(expired)) == SQLITE_ROW) {
        ids = vd_realloc(ids, (size_t)(n + 1) * sizeof *ids);
        column_copy(expired, 0, ids[n++], VD_JOB_ID_LEN);
    }
    int removed = rc == SQLITE_DONE ? 0 : db_fail(s, err, errlen);
    done(expired);
    for (int i = 0; i < n && removed >= 0; i++) {
        char why[512];
        if (delete_locked(s, ids[i], why, sizeof why) == 0) removed++;
        else VD_LOG(VD_LOG_WARN, "removing expired job %s: %s", ids[i], why); /* retried next time */
    }
    free(ids);
    pthread_mutex_unlock(&s->lock);
    return removed;
}

void vd_store_path(const vd_store *s, const char *id, const char *kind, char *buf, size_t buflen)
{
    /* ids come from clients' URLs: one that could leave the videos folder names no file */
    if (id[0] == '\0' || id[0] == '.' || strchr(id, '/')) {
        snprintf(buf, buflen, "%s", "");
        return;
    }
    snprintf(buf, buflen, "%s/videos/%s.%s", s->data_dir, id, kind);
}

/* ---- admin runs ---- */

void vd_admin_run_clear(vd_admin_run *r)
{
    free(r->request);
    free(r->progress);
    free(r->result);
    free(r->error_message);
    r->request = r->progress = r->result = r->error_message = NULL;
}

static int bind_run(sqlite3_stmt *stmt, const vd_admin_run *r)
{
    int rc = SQLITE_OK;
    rc |= sqlite3_bind_text(stmt, 1, r->id, -1, SQLITE_TRANSIENT);
    rc |= sqlite3_bind_text(stmt, 2, r->kind, -1, SQLITE_TRANSIENT);
    rc |= sqlite3_bind_text(stmt, 3, vd_job_status_name(r->status), -1, SQLITE_STATIC);
    rc |= sqlite3_bind_int64(stmt, 4, r->created_at);
    rc |= sqlite3_bind_int64(stmt, 5, r->started_at);
    rc |= sqlite3_bind_int64(stmt, 6, r->completed_at);
    rc |= sqlite3_bind_text(stmt, 7, r->request ? r->request : "{}", -1, SQLITE_TRANSIENT);
    rc |= bind_text_or_null(stmt, 8, r->progress);
    rc |= bind_text_or_null(stmt, 9, r->result);
    rc |= sqlite3_bind_text(stmt, 10, r->error_code, -1, SQLITE_TRANSIENT);
    rc |= bind_text_or_null(stmt, 11, r->error_message);
    rc |= sqlite3_bind_int(stmt, 12, r->attempts);
    return rc == SQLITE_OK ? 0 : -1;
}

static void read_run(sqlite3_stmt *stmt, vd_admin_run *r)
{
    memset(r, 0, sizeof *r);
    column_copy(stmt, 0, r->id, sizeof r->id);
    column_copy(stmt, 1, r->kind, sizeof r->kind);
    r->status = status_from_name((const char *)sqlite3_column_text(stmt, 2));
    r->created_at = sqlite3_column_int64(stmt, 3);
    r->started_at = sqlite3_column_int64(stmt, 4);
    r->completed_at = sqlite3_column_int64(stmt, 5);
    r->request = column_strdup(stmt, 6);
    r->progress = column_strdup(stmt, 7);
    r->result = column_strdup(stmt, 8);
    column_copy(stmt, 9, r->error_code, sizeof r->error_code);
    r->error_message = column_strdup(stmt, 10);
    r->attempts = sqlite3_column_int(stmt, 11);
}

/* Runs a statement that writes one row (bound by the caller): 0, 1 when it changed none, -1. */
static int write_row_locked(vd_store *s, sqlite3_stmt *stmt, int bound, char *err, size_t errlen)
{
    int status = 0;
    if (bound != 0 || sqlite3_step(stmt) != SQLITE_DONE) status = db_fail(s, err, errlen);
    else if (sqlite3_changes(s->db) == 0) status = 1;
    done(stmt);
    return status;
}

int vd_store_run_insert(vd_store *s, const vd_admin_run *run, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *stmt = s->stmt[STMT_RUN_INSERT];
    int status = write_row_locked(s, stmt, bind_run(stmt, run), err, errlen);
    pthread_mutex_unlock(&s->lock);
    return status;
}

int vd_store_run_update(vd_store *s, const vd_admin_run *run, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *stmt = s->stmt[STMT_RUN_UPDATE];
    int status = write_row_locked(s, stmt, bind_run(stmt, run), err, errlen);
    pthread_mutex_unlock(&s->lock);
    return status;
}

int vd_store_run_get(vd_store *s, const char *id, vd_admin_run *out, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *get = s->stmt[STMT_RUN_GET];
    int status = step_by_key(s, get, id, err, errlen);
    if (status == 0) read_run(get, out);
    done(get);
    pthread_mutex_unlock(&s->lock);
    return status;
}

int vd_store_run_list(vd_store *s, const char *kind, vd_admin_run **runs, int *count, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *list = s->stmt[STMT_RUN_LIST];
    bind_text_or_null(list, 1, kind);
    vd_admin_run *found = NULL;
    int n = 0, rc;
    while ((rc = sqlite3_step(list)) == SQLITE_ROW) {
        found = vd_realloc(found, (size_t)(n + 1) * sizeof *found);
        read_run(list, &found[n++]);
    }
    int status = 0;
    if (rc != SQLITE_DONE) {
        status = db_fail(s, err, errlen);
        for (int i = 0; i < n; i++) vd_admin_run_clear(&found[i]);
        free(found);
        found = NULL;
        n = 0;
    }
    done(list);
    pthread_mutex_unlock(&s->lock);
    *runs = found;
    *count = n;
    return status;
}

void vd_store_run_dir(const vd_store *s, const char *id, char *buf, size_t buflen)
{
    snprintf(buf, buflen, "%s/admin/%s", s->data_dir, id);
}

/* ---- the model registry ---- */

static void read_model(sqlite3_stmt *stmt, vd_model_entry *m)
{
    memset(m, 0, sizeof *m);
    column_copy(stmt, 0, m->id, sizeof m->id);
    column_copy(stmt, 1, m->path, sizeof m->path);
    column_copy(stmt, 2, m->ae, sizeof m->ae);
    column_copy(stmt, 3, m->source, sizeof m->source);
    m->created_at = sqlite3_column_int64(stmt, 4);
    column_copy(stmt, 5, m->guide, sizeof m->guide);
}

int vd_store_model_put(vd_store *s, const vd_model_entry *m, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *put = s->stmt[STMT_MODEL_PUT];
    int rc = SQLITE_OK;
    rc |= sqlite3_bind_text(put, 1, m->id, -1, SQLITE_TRANSIENT);
    rc |= sqlite3_bind_text(put, 2, m->path, -1, SQLITE_TRANSIENT);
    rc |= sqlite3_bind_text(put, 3, m->ae, -1, SQLITE_TRANSIENT);
    rc |= sqlite3_bind_text(put, 4, m->source, -1, SQLITE_TRANSIENT);
    rc |= sqlite3_bind_int64(put, 5, m->created_at);
    rc |= sqlite3_bind_text(put, 6, m->guide, -1, SQLITE_TRANSIENT);
    int status = write_row_locked(s, put, rc == SQLITE_OK ? 0 : -1, err, errlen);
    pthread_mutex_unlock(&s->lock);
    return status < 0 ? -1 : 0;
}

int vd_store_model_get(vd_store *s, const char *id, vd_model_entry *out, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *get = s->stmt[STMT_MODEL_GET];
    int status = step_by_key(s, get, id, err, errlen);
    if (status == 0) read_model(get, out);
    done(get);
    pthread_mutex_unlock(&s->lock);
    return status;
}

int vd_store_model_list(vd_store *s, vd_model_entry **models, int *count, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *list = s->stmt[STMT_MODEL_LIST];
    vd_model_entry *found = NULL;
    int n = 0, rc;
    while ((rc = sqlite3_step(list)) == SQLITE_ROW) {
        found = vd_realloc(found, (size_t)(n + 1) * sizeof *found);
        read_model(list, &found[n++]);
    }
    int status = 0;
    if (rc != SQLITE_DONE) {
        status = db_fail(s, err, errlen);
        free(found);
        found = NULL;
        n = 0;
    }
    done(list);
    pthread_mutex_unlock(&s->lock);
    *models = found;
    *count = n;
    return status;
}

/* ---- named settings ---- */

int vd_store_setting_get(vd_store *s, const char *name, char *value, size_t valuelen, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *get = s->stmt[STMT_SETTING_GET];
    value[0] = 0;
    int status = step_by_key(s, get, name, err, errlen);
    if (status == 0) column_copy(get, 0, value, valuelen);
    done(get);
    pthread_mutex_unlock(&s->lock);
    return status;
}

int vd_store_setting_put(vd_store *s, const char *name, const char *value, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *put = s->stmt[STMT_SETTING_PUT];
    int rc = sqlite3_bind_text(put, 1, name, -1, SQLITE_TRANSIENT) | sqlite3_bind_text(put, 2, value, -1, SQLITE_TRANSIENT);
    int status = write_row_locked(s, put, rc == SQLITE_OK ? 0 : -1, err, errlen);
    pthread_mutex_unlock(&s->lock);
    return status < 0 ? -1 : 0;
}
