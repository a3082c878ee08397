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
/* GPU memory in use and in all, in bytes (0 and 0 on the CPU). */
void vd_metrics_gpu_memory(vd_metrics *m, size_t used, size_t total);
/* The recorded UNet forwards the engine holds and the bytes of their scratch (vd_engine_recordings). */
void vd_metrics_recordings(vd_metrics *m, int count, size_t bytes);

/* The text exposition (malloc'd). */
char *vd_metrics_render(vd_metrics *m);

#endif
