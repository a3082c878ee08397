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

/* ---- subscriptions, one per listener of one job ----
 * Each subscriber has a bounded queue. One that falls behind loses its oldest "progress" events
 * first; a terminal event ("completed", "failed", "cancelled") is never dropped. */
#define VD_EVENTS_QUEUE_LEN 64
#define VD_EVENT_TYPE_LEN 32

typedef struct vd_event_sub vd_event_sub;
/* Called by the publisher after it queued an event for this subscriber, with the list of
 * subscribers locked (so the subscription is still alive): it must be quick and must not call
 * vd_events functions. */
typedef void (*vd_events_notify_fn)(void *user);

/* notify may be NULL (the listener then waits in vd_events_next). */
vd_event_sub *vd_events_subscribe(vd_events *ev, const char *job_id, vd_events_notify_fn notify,
                                  void *user);
/* Takes the oldest queued event, waiting up to timeout_ms for one (0: no wait). Returns 1 with
 * its type and *json (malloc'd; the caller frees it), or 0 when none came in time. */
int vd_events_next(vd_event_sub *sub, int timeout_ms, char type[VD_EVENT_TYPE_LEN], char **json);
/* After it returns, notify is not called again for sub, and sub is freed. */
void vd_events_unsubscribe(vd_events *ev, vd_event_sub *sub);
/* 1 for "completed", "failed" and "cancelled": the last event of a job. */
int vd_event_is_terminal(const char *type);

#endif
