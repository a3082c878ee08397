/* metrics.h: the server's counters, gauges and histograms, rendered in the Prometheus text
 * format for GET /metrics. Thread-safe; recording is cheap enough for every request and step. */
#ifndef VD_METRICS_H
#define VD_METRICS_H

#include <stddef.h>

typedef struct vd_metrics vd_metrics;

vd_metrics *vd_metrics_new(void);
void vd_metrics_free(vd_metrics *m);

/* One finished HTTP request: its route pattern (e.g. "/v1/videos/{id}") and status. */
void vd_metrics_request(vd_metrics *m, const char *route, int status);
/* One denoiser step of the scheduler: its duration and how many videos it carried. */
void vd_metrics_step(vd_metrics *m, double seconds, int batch_size);
/* One job from submission to its end: duration and final status name. */
void vd_metrics_job(vd_metrics *m, double seconds, const char *status);
/* Current queue depth and running videos. */
void vd_metrics_queue(vd_metrics *m, int queued, int running);
/* What the engine holds on its device, as the scheduler last read it. */
typedef struct {
    size_t gpu_used, gpu_total; /* GPU memory in use and in all, in bytes (0 and 0 on the CPU) */
    int recordings;             /* recorded UNet forwards (vd_engine_recordings) */
    size_t recording_bytes;     /* the GPU memory their scratch takes, a part of gpu_used */
} vd_engine_gauges;

void vd_metrics_set_engine(vd_metrics *m, const vd_engine_gauges *g);
void vd_metrics_engine(vd_metrics *m, vd_engine_gauges *out);

/* The text exposition (malloc'd). */
char *vd_metrics_render(vd_metrics *m);

#endif
