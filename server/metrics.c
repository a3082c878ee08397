/* metrics.c: the server's metrics (metrics.h) under one mutex: request counters by route and
 * status, job counters by final status, gauges, and histograms with fixed buckets, rendered in
 * the Prometheus text exposition format (version 0.0.4) with HELP and TYPE lines. */
#include "metrics.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define MAX_BUCKETS 16

typedef struct {
    const double *bounds; /* upper bounds, ascending; +Inf is implicit */
    int n;
    uint64_t counts[MAX_BUCKETS]; /* per bucket, not cumulative */
    uint64_t total;
    double sum;
} histogram;

typedef struct {
    char label[64]; /* a route pattern or a job status */
    int status;     /* HTTP status; unused for jobs */
    uint64_t count;
} series;

typedef struct {
    series *items;
    int len, cap;
} series_list;

struct vd_metrics {
    pthread_mutex_t lock;
    series_list requests, jobs;
    histogram step_seconds, job_seconds, batch_size;
    int queued, running, last_batch;
    vd_engine_gauges engine;
};

static const double step_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
static const double job_bounds[] = {0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};
static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};

static void histogram_init(histogram *h, const double *bounds, int n)
{
    memset(h, 0, sizeof *h);
    h->bounds = bounds;
    h->n = n;
}

static void histogram_observe(histogram *h, double value)
{
    int b = 0;
    while (b < h->n && value > h->bounds[b]) b++;
    if (b < h->n) h->counts[b]++;
    h->total++;
    h->sum += value;
}

vd_metrics *vd_metrics_new(void)
{
    vd_metrics *m = vd_calloc(1, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
    histogram_init(&m->step_seconds, step_bounds, (int)VD_ARRAY_LEN(step_bounds));
    histogram_init(&m->job_seconds, job_bounds, (int)VD_ARRAY_LEN(job_bounds));
    histogram_init(&m->batch_size, batch_bounds, (int)VD_ARRAY_LEN(batch_bounds));
    return m;
}

void vd_metrics_free(vd_metrics *m)
{
    if (!m) return;
    free(m->requests.items);
    free(m->jobs.items);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static void series_add(series_list *list, const char *label, int status)
{
    for (int i = 0; i < list->len; i++)
        if (list->items[i].status == status && strcmp(list->items[i].label, label) == 0) {
            list->items[i].count++;
            return;
        }
    if (list->len == list->cap) {
        list->cap = list->cap ? 2 * list->cap : 32;
        list->items = vd_realloc(list->items, (size_t)list->cap * sizeof *list->items);
    }
    series *s = &list->items[list->len++];
    snprintf(s->label, sizeof s->label, "%s", label);
    s->status = status;
    s->count = 1;
}

void vd_metrics_request(vd_metrics *m, const char *route, int status)
{
    pthread_mutex_lock(&m->lock);
    series_add(&m->requests, route, status);
    pthread_mutex_unlock(&m->lock);
}

void vd_metrics_step(vd_metrics *m, double seconds, int batch_size)
{
    pthread_mutex_lock(&m->lock);
    histogram_observe(&m->step_seconds, seconds);
    histogram_observe(&m->batch_size, batch_size);
    m->last_batch = batch_size;
    pthread_mutex_unlock(&m->lock);
}

void vd_metrics_job(vd_metrics *m, double seconds, const char *status)
{
    pthread_mutex_lock(&m->lock);
    histogram_observe(&m->job_seconds, seconds);
    series_add(&m->jobs, status, 0);
    pthread_mutex_unlock(&m->lock);
}

void vd_metrics_queue(vd_metrics *m, int queued, int running)
{
    pthread_mutex_lock(&m->lock);
    m->queued = queued;
    m->running = running;
    if (running == 0) m->last_batch = 0;
    pthread_mutex_unlock(&m->lock);
}

void vd_metrics_set_engine(vd_metrics *m, const vd_engine_gauges *g)
{
    pthread_mutex_lock(&m->lock);
    m->engine = *g;
    pthread_mutex_unlock(&m->lock);
}

void vd_metrics_engine(vd_metrics *m, vd_engine_gauges *out)
{
    pthread_mutex_lock(&m->lock);
    *out = m->engine;
    pthread_mutex_unlock(&m->lock);
}

/* A label value with backslash, quote and newline escaped as the format requires. */
static void write_label(FILE *out, const char *value)
{
    for (const char *c = value; *c; c++) {
        if (*c == '\\' || *c == '"') fputc('\\', out), fputc(*c, out);
        else if (*c == '\n') fputs("\\n", out);
        else fputc(*c, out);
    }
}

static void write_header(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void write_histogram(FILE *out, const char *name, const char *help, const histogram *h)
{
    write_header(out, name, "histogram", help);
    uint64_t cumulative = 0;
    for (int b = 0; b < h->n; b++) {
        cumulative += h->counts[b];
        fprintf(out, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[b], (unsigned long long)cumulative);
    }
    fprintf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->total);
    fprintf(out, "%s_sum %.9g\n%s_count %llu\n", name, h->sum, name, (unsigned long long)h->total);
}

static void write_gauge(FILE *out, const char *name, const char *help, double value)
{
    write_header(out, name, "gauge", help);
    fprintf(out, "%s %.17g\n", name, value);
}

char *vd_metrics_render(vd_metrics *m)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out) return NULL;
    pthread_mutex_lock(&m->lock);

    write_header(out, "vdmini_http_requests_total", "counter", "HTTP requests answered, by route and status.");
    for (int i = 0; i < m->requests.len; i++) {
        fputs("vdmini_http_requests_total{route=\"", out);
        write_label(out, m->requests.items[i].label);
        fprintf(out, "\",code=\"%d\"} %llu\n", m->requests.items[i].status,
                (unsigned long long)m->requests.items[i].count);
    }
    write_header(out, "vdmini_jobs_total", "counter", "Jobs that ended, by final status.");
    for (int i = 0; i < m->jobs.len; i++) {
        fputs("vdmini_jobs_total{status=\"", out);
        write_label(out, m->jobs.items[i].label);
        fprintf(out, "\"} %llu\n", (unsigned long long)m->jobs.items[i].count);
    }
    write_gauge(out, "vdmini_queue_depth", "Jobs waiting in the queue.", m->queued);
    write_gauge(out, "vdmini_running_jobs", "Jobs being denoised or encoded.", m->running);
    write_gauge(out, "vdmini_batch_size", "Videos in the denoiser batch of the latest step (0 when idle).",
                m->last_batch);
    write_histogram(out, "vdmini_step_batch_size", "Videos carried by each denoiser step.", &m->batch_size);
    write_histogram(out, "vdmini_step_duration_seconds", "Duration of one denoiser step.", &m->step_seconds);
    write_histogram(out, "vdmini_job_duration_seconds", "Time from submission to the end of a job.",
                    &m->job_seconds);
    write_gauge(out, "vdmini_gpu_memory_used_bytes", "GPU memory in use (0 on the CPU).", (double)m->engine.gpu_used);
    write_gauge(out, "vdmini_gpu_memory_total_bytes", "GPU memory in all (0 on the CPU).", (double)m->engine.gpu_total);
    write_gauge(out, "vdmini_recorded_forwards", "UNet forwards kept recorded for replay (0 on the CPU).",
                m->engine.recordings);
    write_gauge(out, "vdmini_recorded_forwards_bytes",
                "GPU memory the recorded forwards' scratch takes, a part of vdmini_gpu_memory_used_bytes.",
                (double)m->engine.recording_bytes);

    pthread_mutex_unlock(&m->lock);
    fclose(out);
    return text;
}
