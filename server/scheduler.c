/* scheduler.c: the queue, the step-level batching loop and the encoder (see scheduler.h).
 *
 * Threads: the denoising thread owns the engine; a few encoding threads turn decoded frames into
 * MP4 and PNG files; any thread may submit, cancel and ask for positions. One mutex guards the
 * queue, the running batch and the encoder's queue. Store writes and events happen outside the
 * lock except where their order matters. */
#include "scheduler.h"
#include "common.h"
#include "video.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_ATTEMPTS 3    /* a job whose runs were cut short by this many restarts fails */
#define ENCODER_THREADS 4 /* videos finishing together are encoded in parallel */

typedef struct {
    vd_job job;
    double submitted; /* vd_now() at submission, for the job latency */
} queued_job;

typedef struct {
    vd_job job;
    double submitted;
    vd_video *video;
    int cancel;
    double last_saved; /* when progress was last written to the store */
} running_job;

typedef struct encode_item {
    vd_job job;
    double submitted;
    float *frames;
    int cancel;
    struct encode_item *next;
} encode_item;

struct vd_scheduler {
    vd_engine *engine;           /* the model videos run on; only the denoising thread uses it */
    char model_id[128];
    vd_engine *next_engine;      /* a model to switch to once the running batch is empty, or NULL */
    char next_model_id[128];
    vd_store *store;
    vd_events *events;
    vd_metrics *metrics;
    vd_scheduler_config cfg;

    pthread_mutex_t lock;
    pthread_cond_t wake;        /* the denoising thread: work arrived or stop */
    pthread_cond_t encode_wake; /* the encoding thread */
    queued_job *queue;
    int queue_len, queue_cap;
    running_job *running;
    int running_len, running_cap;
    encode_item *encode_head, *encode_tail;
    int in_transit;                 /* jobs between the lists: being prepared or being encoded */
    char preparing[VD_JOB_ID_LEN];  /* the job being prepared for the engine, "" when none */
    int preparing_cancel;           /* a cancel arrived for it meanwhile */
    int stopping, finish_running, encoder_stop;
    pthread_t denoiser, encoders[ENCODER_THREADS];
};

static int64_t now_seconds(void) { return (int64_t)time(NULL); }

/* Writes job to the store, logging a failure (the state in memory stays authoritative). */
static void save(vd_scheduler *s, const vd_job *job)
{
    char err[256];
    if (vd_store_update(s->store, job, err, sizeof err) < 0)
        VD_LOG(VD_LOG_ERROR, "store update of %s failed: %s", job->id, err);
}

static void publish_status(vd_scheduler *s, const vd_job *job)
{
    char json[512];
    if (job->status == VD_JOB_FAILED) {
        char *msg = job->error_message ? job->error_message : "";
        char escaped[300];
        size_t j = 0;
        for (size_t i = 0; msg[i] && j + 7 < sizeof escaped; i++) {
            unsigned char c = (unsigned char)msg[i];
            if (c == '"' || c == '\\') escaped[j++] = '\\', escaped[j++] = (char)c;
            else if (c < 0x20) j += (size_t)snprintf(escaped + j, sizeof escaped - j, "\\u%04x", c);
            else escaped[j++] = (char)c;
        }
        escaped[j] = 0;
        snprintf(json, sizeof json, "{\"id\":\"%s\",\"status\":\"failed\",\"progress\":%d,\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}",
                 job->id, job->progress, job->error_code, escaped);
    } else {
        snprintf(json, sizeof json, "{\"id\":\"%s\",\"status\":\"%s\",\"progress\":%d}", job->id,
                 vd_job_status_name(job->status), job->progress);
    }
    vd_events_publish(s->events, job->id, vd_job_status_name(job->status), json);
}

/* Ends a job: final status, times, store, event, metrics. */
static void finish(vd_scheduler *s, vd_job *job, vd_job_status status, const char *code, const char *message,
                   double submitted)
{
    job->status = status;
    job->completed_at = now_seconds();
    job->expires_at = job->completed_at + s->cfg.retention_seconds;
    if (status == VD_JOB_COMPLETED) job->progress = 100;
    if (code) snprintf(job->error_code, sizeof job->error_code, "%s", code);
    if (message) {
        free(job->error_message);
        job->error_message = strdup(message);
    }
    save(s, job);
    publish_status(s, job);
    vd_metrics_job(s->metrics, vd_now() - submitted, vd_job_status_name(status));
}

static void update_queue_metrics_locked(vd_scheduler *s)
{
    vd_metrics_queue(s->metrics, s->queue_len, s->running_len + s->in_transit);
}

/* The engine's GPU memory and recordings into the metrics: at start, after a model switch and
 * after each step. Called where nothing else uses the engine (before the threads start, or on
 * the denoiser thread). */
static void update_engine_metrics(vd_scheduler *s)
{
    vd_engine_gauges g = {0};
    vd_engine_memory(s->engine, &g.gpu_used, &g.gpu_total);
    g.recordings = vd_engine_recordings(s->engine, &g.recording_bytes);
    vd_metrics_set_engine(s->metrics, &g);
}

/* ------------------------------------------------------------------------------------------
 * Encoding thread
 * ------------------------------------------------------------------------------------------ */

static void encode_one(vd_scheduler *s, encode_item *it)
{
    vd_job *job = &it->job;
    size_t pixels = (size_t)job->width * job->height;
    uint8_t *rgb = vd_malloc((size_t)job->frames * pixels * 3);
    vd_frames_to_rgb8(it->frames, job->frames, job->width, job->height, rgb);
    char path[4096], thumb[4096], err[256];
    vd_store_path(s->store, job->id, "mp4", path, sizeof path);
    vd_store_path(s->store, job->id, "png", thumb, sizeof thumb);
    int rc = vd_mp4_write(path, rgb, job->frames, job->width, job->height, job->fps, err, sizeof err);
    if (rc == 0) rc = vd_png_write(thumb, rgb, job->width, job->height, err, sizeof err);
    free(rgb);
    pthread_mutex_lock(&s->lock);
    int cancelled = it->cancel;
    pthread_mutex_unlock(&s->lock);
    if (cancelled) finish(s, job, VD_JOB_CANCELLED, NULL, NULL, it->submitted);
    else if (rc == 0) finish(s, job, VD_JOB_COMPLETED, NULL, NULL, it->submitted);
    else finish(s, job, VD_JOB_FAILED, "encoding_failed", err, it->submitted);
}

static void *encoder_main(void *arg)
{
    vd_scheduler *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->encode_head && !s->encoder_stop) pthread_cond_wait(&s->encode_wake, &s->lock);
        encode_item *it = s->encode_head;
        if (!it) break; /* stopping and nothing left */
        s->encode_head = it->next;
        if (!s->encode_head) s->encode_tail = NULL;
        pthread_mutex_unlock(&s->lock);
        encode_one(s, it);
        pthread_mutex_lock(&s->lock);
        s->in_transit--;
        update_queue_metrics_locked(s);
        vd_job_clear(&it->job);
        free(it->frames);
        free(it);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * Denoising thread
 * ------------------------------------------------------------------------------------------ */

/* Starts a job on the engine (outside the lock). Returns the video, or NULL when it failed
 * (the job is then finished as failed). */
static vd_video *start_video(vd_scheduler *s, vd_job *job, double submitted)
{
    char err[VD_ERR_LEN];
    float *image = NULL;
    if (job->has_image) {
        char path[4096];
        vd_store_path(s->store, job->id, "input.png", path, sizeof path);
        uint8_t *rgb = vd_malloc((size_t)job->width * job->height * 3);
        char ierr[256];
        if (vd_image_read_file(path, NULL, job->width, job->height, rgb, ierr, sizeof ierr) != 0) {
            free(rgb);
            finish(s, job, VD_JOB_FAILED, "input_image_unreadable", ierr, submitted);
            return NULL;
        }
        image = vd_malloc((size_t)3 * job->width * job->height * sizeof(float));
        vd_rgb8_to_chw(rgb, job->width, job->height, image);
        free(rgb);
    }
    if (job->guide_scale > 0 && !vd_engine_has_guide(s->engine)) {
        /* queued for a model with a guide, run by one without (activated since): no guide */
        VD_LOG(VD_LOG_INFO, "job %s: model %s has no guide; it runs without one", job->id, s->model_id);
        job->guide_scale = 0;
    }
    vd_gen_params p = {.prompt = job->prompt, .image = image, .frames = job->frames, .width = job->width,
                       .height = job->height, .steps = job->steps, .guidance = job->guidance,
                       .guide_scale = job->guide_scale, .sampler = (vd_sampler_kind)job->sampler, .eta = job->eta,
                       .seed = job->seed};
    vd_video *v = vd_video_begin(s->engine, &p, err);
    free(image);
    if (!v) {
        finish(s, job, VD_JOB_FAILED, "invalid_request", err, submitted);
        return NULL;
    }
    job->status = VD_JOB_IN_PROGRESS;
    snprintf(job->model, sizeof job->model, "%s", s->model_id); /* the model it really runs on */
    job->started_at = now_seconds();
    job->attempts++;
    save(s, job);
    publish_status(s, job);
    return v;
}

static int same_shape(const vd_job *a, const vd_job *b)
{
    return a->frames == b->frames && a->width == b->width && a->height == b->height;
}

/* Moves compatible queued jobs into the running batch, up to max_batch. Called with the lock
 * held; drops it while the engine prepares each video. */
static void admit(vd_scheduler *s)
{
    /* a model switch waits for the running batch to drain: queued jobs wait for the new model */
    while (!s->stopping && !s->next_engine && s->running_len < s->cfg.max_batch && s->queue_len > 0) {
        const vd_job *shape = s->running_len ? &s->running[0].job : &s->queue[0].job;
        int pick = -1;
        for (int i = 0; i < s->queue_len && pick < 0; i++)
            if (same_shape(&s->queue[i].job, shape)) pick = i;
        if (pick < 0) return;
        queued_job q = s->queue[pick];
        memmove(&s->queue[pick], &s->queue[pick + 1], (size_t)(s->queue_len - pick - 1) * sizeof *s->queue);
        s->queue_len--;
        s->in_transit++;
        snprintf(s->preparing, sizeof s->preparing, "%s", q.job.id);
        s->preparing_cancel = 0;
        pthread_mutex_unlock(&s->lock);
        vd_video *v = start_video(s, &q.job, q.submitted);
        pthread_mutex_lock(&s->lock);
        s->in_transit--;
        s->preparing[0] = 0;
        if (!v) {
            vd_job_clear(&q.job);
            continue;
        }
        if (s->running_len == s->running_cap) {
            s->running_cap = s->running_cap ? 2 * s->running_cap : 8;
            s->running = vd_realloc(s->running, (size_t)s->running_cap * sizeof *s->running);
        }
        s->running[s->running_len++] = (running_job){.job = q.job, .submitted = q.submitted, .video = v,
                                                     .cancel = s->preparing_cancel, .last_saved = vd_now()};
        update_queue_metrics_locked(s);
    }
}

/* Removes running job i (lock held), shifting the rest down. */
static running_job take_running(vd_scheduler *s, int i)
{
    running_job r = s->running[i];
    memmove(&s->running[i], &s->running[i + 1], (size_t)(s->running_len - i - 1) * sizeof *s->running);
    s->running_len--;
    return r;
}

static void *denoiser_main(void *arg)
{
    vd_scheduler *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        if (s->stopping && (!s->finish_running || s->running_len == 0)) break;
        if (s->next_engine && s->running_len == 0) { /* a step boundary with nothing running */
            vd_engine *old = s->engine;
            s->engine = s->next_engine;
            s->next_engine = NULL;
            memcpy(s->model_id, s->next_model_id, sizeof s->model_id);
            pthread_mutex_unlock(&s->lock);
            vd_engine_close(old);
            update_engine_metrics(s);
            VD_LOG(VD_LOG_INFO, "now serving model %s", s->model_id);
            pthread_mutex_lock(&s->lock);
            continue;
        }
        if (s->running_len == 0) {
            if (s->queue_len == 0) {
                pthread_cond_wait(&s->wake, &s->lock);
                continue;
            }
            /* an idle engine gives the oldest job a moment to gather batch-mates */
            double waited = vd_now() - s->queue[0].submitted, limit = s->cfg.max_queue_wait_ms / 1e3;
            if (s->cfg.max_batch > 1 && s->queue_len < s->cfg.max_batch && waited < limit) {
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                double rest = limit - waited;
                until.tv_sec += (time_t)rest;
                until.tv_nsec += (long)((rest - (double)(time_t)rest) * 1e9);
                if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
                pthread_cond_timedwait(&s->wake, &s->lock, &until);
                continue;
            }
        }
        admit(s);
        /* cancelled videos leave before the step */
        for (int i = 0; i < s->running_len;) {
            if (!s->running[i].cancel) { i++; continue; }
            running_job r = take_running(s, i);
            update_queue_metrics_locked(s);
            pthread_mutex_unlock(&s->lock);
            vd_video_free(s->engine, r.video);
            finish(s, &r.job, VD_JOB_CANCELLED, NULL, NULL, r.submitted);
            vd_job_clear(&r.job);
            pthread_mutex_lock(&s->lock);
        }
        int n = s->running_len;
        if (n == 0) continue;
        vd_video **videos = vd_malloc((size_t)n * sizeof *videos);
        for (int i = 0; i < n; i++) videos[i] = s->running[i].video;
        pthread_mutex_unlock(&s->lock);

        double t0 = vd_now();
        vd_step(s->engine, videos, n);
        vd_metrics_step(s->metrics, vd_now() - t0, n);
        update_engine_metrics(s);
        free(videos);

        pthread_mutex_lock(&s->lock);
        for (int i = 0; i < s->running_len;) {
            running_job *r = &s->running[i];
            int step = vd_video_step_index(r->video), total = vd_video_steps(r->video);
            r->job.progress = step * 100 / total;
            char json[160];
            snprintf(json, sizeof json, "{\"id\":\"%s\",\"status\":\"in_progress\",\"progress\":%d,\"step\":%d,\"total\":%d}",
                     r->job.id, r->job.progress, step, total);
            vd_events_publish(s->events, r->job.id, "progress", json);
            if (step < total) {
                if (vd_now() - r->last_saved > 1.0) { /* progress reaches the store about once a second */
                    r->last_saved = vd_now();
                    save(s, &r->job);
                }
                i++;
                continue;
            }
            running_job done = take_running(s, i);
            s->in_transit++;
            pthread_mutex_unlock(&s->lock);
            encode_item *it = vd_calloc(1, sizeof *it);
            it->frames = vd_malloc((size_t)done.job.frames * 3 * done.job.width * done.job.height * sizeof(float));
            vd_video_decode(s->engine, done.video, it->frames);
            vd_video_free(s->engine, done.video);
            it->job = done.job; /* takes over the job's strings */
            it->submitted = done.submitted;
            pthread_mutex_lock(&s->lock);
            if (done.cancel) it->cancel = 1;
            if (s->encode_tail) s->encode_tail->next = it;
            else s->encode_head = it;
            s->encode_tail = it;
            pthread_cond_signal(&s->encode_wake);
        }
        update_queue_metrics_locked(s);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * Public interface
 * ------------------------------------------------------------------------------------------ */

static void push_queue_locked(vd_scheduler *s, const vd_job *job, double submitted)
{
    if (s->queue_len == s->queue_cap) {
        s->queue_cap = s->queue_cap ? 2 * s->queue_cap : 16;
        s->queue = vd_realloc(s->queue, (size_t)s->queue_cap * sizeof *s->queue);
    }
    queued_job *q = &s->queue[s->queue_len++];
    vd_job_copy(&q->job, job);
    q->submitted = submitted;
}

static int by_creation(const void *a, const void *b)
{
    const vd_job *x = a, *y = b;
    return x->created_at < y->created_at ? -1 : x->created_at > y->created_at ? 1 : strcmp(x->id, y->id);
}

/* Queues again what a previous run left queued or running. */
static void recover(vd_scheduler *s)
{
    vd_job *queued = NULL, *running = NULL;
    int nq = 0, nr = 0;
    char err[256];
    if (vd_store_list_status(s->store, VD_JOB_QUEUED, &queued, &nq, err, sizeof err) < 0 ||
        vd_store_list_status(s->store, VD_JOB_IN_PROGRESS, &running, &nr, err, sizeof err) < 0) {
        VD_LOG(VD_LOG_ERROR, "cannot read unfinished jobs from the store: %s", err);
        return;
    }
    vd_job *all = vd_malloc((size_t)(nq + nr + 1) * sizeof *all);
    memcpy(all, queued, (size_t)nq * sizeof *all);
    memcpy(all + nq, running, (size_t)nr * sizeof *all);
    qsort(all, (size_t)(nq + nr), sizeof *all, by_creation);
    int requeued = 0, failed = 0;
    for (int i = 0; i < nq + nr; i++) {
        vd_job *j = &all[i];
        if (j->status == VD_JOB_IN_PROGRESS && j->attempts >= MAX_ATTEMPTS) {
            char msg[160];
            snprintf(msg, sizeof msg, "the server stopped while generating this video %d times; giving up", j->attempts);
            finish(s, j, VD_JOB_FAILED, "interrupted", msg, vd_now());
            failed++;
        } else {
            j->status = VD_JOB_QUEUED;
            j->progress = 0;
            save(s, j);
            push_queue_locked(s, j, vd_now());
            requeued++;
        }
        vd_job_clear(j);
    }
    if (requeued || failed)
        VD_LOG(VD_LOG_INFO, "recovered %d unfinished jobs from the store (%d failed after %d interrupted runs)",
               requeued, failed, MAX_ATTEMPTS);
    free(all);
    free(queued);
    free(running);
}

vd_scheduler *vd_scheduler_start(vd_engine *engine, const char *model_id, vd_store *store, vd_events *events,
                                 vd_metrics *metrics, const vd_scheduler_config *cfg)
{
    vd_scheduler *s = vd_calloc(1, sizeof *s);
    s->engine = engine, s->store = store, s->events = events, s->metrics = metrics, s->cfg = *cfg;
    snprintf(s->model_id, sizeof s->model_id, "%s", model_id);
    if (s->cfg.max_batch < 1) s->cfg.max_batch = 1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_cond_init(&s->encode_wake, NULL);
    recover(s);
    update_queue_metrics_locked(s);
    update_engine_metrics(s);
    int started = pthread_create(&s->denoiser, NULL, denoiser_main, s) == 0;
    for (int i = 0; i < ENCODER_THREADS && started; i++)
        started = pthread_create(&s->encoders[i], NULL, encoder_main, s) == 0;
    if (!started) {
        VD_LOG(VD_LOG_ERROR, "cannot start the scheduler's threads");
        abort();
    }
    return s;
}

int vd_scheduler_submit(vd_scheduler *s, const vd_job *job)
{
    pthread_mutex_lock(&s->lock);
    if (s->stopping || s->queue_len >= s->cfg.max_queue) {
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    push_queue_locked(s, job, vd_now());
    update_queue_metrics_locked(s);
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    publish_status(s, job);
    return 0;
}

int vd_scheduler_cancel(vd_scheduler *s, const char *id)
{
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->queue_len; i++) {
        if (strcmp(s->queue[i].job.id, id) != 0) continue;
        queued_job q = s->queue[i];
        memmove(&s->queue[i], &s->queue[i + 1], (size_t)(s->queue_len - i - 1) * sizeof *s->queue);
        s->queue_len--;
        update_queue_metrics_locked(s);
        pthread_mutex_unlock(&s->lock);
        finish(s, &q.job, VD_JOB_CANCELLED, NULL, NULL, q.submitted);
        vd_job_clear(&q.job);
        return 0;
    }
    int found = 0;
    if (strcmp(s->preparing, id) == 0) s->preparing_cancel = found = 1;
    for (int i = 0; i < s->running_len && !found; i++)
        if (strcmp(s->running[i].job.id, id) == 0) s->running[i].cancel = found = 1;
    for (encode_item *it = s->encode_head; it && !found; it = it->next)
        if (strcmp(it->job.id, id) == 0) it->cancel = found = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    return found ? 0 : 1;
}

int vd_scheduler_queue_position(vd_scheduler *s, const char *id)
{
    pthread_mutex_lock(&s->lock);
    int pos = -1;
    for (int i = 0; i < s->queue_len && pos < 0; i++)
        if (strcmp(s->queue[i].job.id, id) == 0) pos = i;
    pthread_mutex_unlock(&s->lock);
    return pos;
}

void vd_scheduler_counts(vd_scheduler *s, int *queued, int *running)
{
    pthread_mutex_lock(&s->lock);
    *queued = s->queue_len;
    *running = s->running_len + s->in_transit;
    pthread_mutex_unlock(&s->lock);
}

int vd_scheduler_jobs_of_key(vd_scheduler *s, const char *key_id)
{
    pthread_mutex_lock(&s->lock);
    int n = 0;
    for (int i = 0; i < s->queue_len; i++) n += strcmp(s->queue[i].job.key_id, key_id) == 0;
    for (int i = 0; i < s->running_len; i++) n += strcmp(s->running[i].job.key_id, key_id) == 0;
    for (encode_item *it = s->encode_head; it; it = it->next) n += strcmp(it->job.key_id, key_id) == 0;
    pthread_mutex_unlock(&s->lock);
    return n;
}

void vd_scheduler_switch_engine(vd_scheduler *s, vd_engine *engine, const char *model_id)
{
    pthread_mutex_lock(&s->lock);
    vd_engine *unused = s->next_engine; /* an earlier switch that had not happened yet */
    s->next_engine = engine;
    snprintf(s->next_model_id, sizeof s->next_model_id, "%s", model_id);
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    if (unused) vd_engine_close(unused);
}

void vd_scheduler_model(vd_scheduler *s, char model_id[128], int *switching)
{
    pthread_mutex_lock(&s->lock);
    memcpy(model_id, s->model_id, 128);
    *switching = s->next_engine != NULL;
    pthread_mutex_unlock(&s->lock);
}

void vd_scheduler_set_config(vd_scheduler *s, const vd_scheduler_config *cfg)
{
    pthread_mutex_lock(&s->lock);
    s->cfg = *cfg;
    if (s->cfg.max_batch < 1) s->cfg.max_batch = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
}

void vd_scheduler_stop(vd_scheduler *s, int finish_running)
{
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    s->finish_running = finish_running;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->denoiser, NULL);

    pthread_mutex_lock(&s->lock);
    s->encoder_stop = 1;
    pthread_cond_broadcast(&s->encode_wake);
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < ENCODER_THREADS; i++) pthread_join(s->encoders[i], NULL);

    /* what did not finish stays queued or in_progress in the store for the next start */
    for (int i = 0; i < s->running_len; i++) {
        vd_video_free(s->engine, s->running[i].video);
        vd_job_clear(&s->running[i].job);
    }
    for (int i = 0; i < s->queue_len; i++) vd_job_clear(&s->queue[i].job);
    vd_engine_close(s->engine);
    if (s->next_engine) vd_engine_close(s->next_engine);
    free(s->running);
    free(s->queue);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    pthread_cond_destroy(&s->encode_wake);
    free(s);
}
