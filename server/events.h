/* events.h: job events for the server-sent events stream (GET /v1/videos/{id}/events) and any
 * other listener. The scheduler publishes; the HTTP layer subscribes per job and relays. An
 * event is a type ("queued", "in_progress", "progress", "completed", "failed", "cancelled") and
 * a JSON object as text. Thread-safe. */
#ifndef VD_EVENTS_H
#define VD_EVENTS_H

typedef struct vd_events vd_events;

vd_events *vd_events_new(void);
void vd_events_free(vd_events *ev);
/* Delivers to every current subscriber of job_id; never blocks on a slow subscriber. */
void vd_events_publish(vd_events *ev, const char *job_id, const char *type, const char *json);

#endif
