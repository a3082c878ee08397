/* events.c: job events (events.h). Subscribers sit in one list under one mutex; each has its
 * own bounded queue, mutex and condition variable, so a publisher never waits for a reader. */
#include "events.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "job.h"

typedef struct {
    char type[VD_EVENT_TYPE_LEN];
    char *json;
} queued_event;

struct vd_event_sub {
    char job_id[VD_JOB_ID_LEN];
    vd_events_notify_fn notify;
    void *notify_user;
    pthread_mutex_t lock;
    pthread_cond_t arrived;
    queued_event queue[VD_EVENTS_QUEUE_LEN];
    int len;
    vd_event_sub *next;
};

struct vd_events {
    pthread_mutex_t lock;
    vd_event_sub *subs;
};

int vd_event_is_terminal(const char *type)
{
    return strcmp(type, "completed") == 0 || strcmp(type, "failed") == 0 || strcmp(type, "cancelled") == 0;
}

vd_events *vd_events_new(void)
{
    vd_events *ev = vd_calloc(1, sizeof *ev);
    pthread_mutex_init(&ev->lock, NULL);
    return ev;
}

static void free_sub(vd_event_sub *sub)
{
    for (int i = 0; i < sub->len; i++) free(sub->queue[i].json);
    pthread_mutex_destroy(&sub->lock);
    pthread_cond_destroy(&sub->arrived);
    free(sub);
}

void vd_events_free(vd_events *ev)
{
    if (!ev) return;
    while (ev->subs) {
        vd_event_sub *next = ev->subs->next;
        free_sub(ev->subs);
        ev->subs = next;
    }
    pthread_mutex_destroy(&ev->lock);
    free(ev);
}

/* Makes room in a full queue: the oldest progress event goes, else the oldest that is not
 * terminal. 0 when every queued event is terminal (cannot happen: a job has one). */
static int drop_one(vd_event_sub *sub)
{
    int victim = -1;
    for (int i = 0; i < sub->len && victim < 0; i++)
        if (strcmp(sub->queue[i].type, "progress") == 0) victim = i;
    for (int i = 0; i < sub->len && victim < 0; i++)
        if (!vd_event_is_terminal(sub->queue[i].type)) victim = i;
    if (victim < 0) return 0;
    free(sub->queue[victim].json);
    memmove(&sub->queue[victim], &sub->queue[victim + 1], (size_t)(sub->len - victim - 1) * sizeof sub->queue[0]);
    sub->len--;
    return 1;
}

void vd_events_publish(vd_events *ev, const char *job_id, const char *type, const char *json)
{
    pthread_mutex_lock(&ev->lock);
    for (vd_event_sub *sub = ev->subs; sub; sub = sub->next) {
        if (strcmp(sub->job_id, job_id) != 0) continue;
        pthread_mutex_lock(&sub->lock);
        int room = sub->len < VD_EVENTS_QUEUE_LEN || drop_one(sub);
        if (room) {
            queued_event *e = &sub->queue[sub->len++];
            snprintf(e->type, sizeof e->type, "%s", type);
            e->json = strdup(json);
            pthread_cond_signal(&sub->arrived);
        }
        pthread_mutex_unlock(&sub->lock);
        if (room && sub->notify) sub->notify(sub->notify_user);
    }
    pthread_mutex_unlock(&ev->lock);
}

vd_event_sub *vd_events_subscribe(vd_events *ev, const char *job_id, vd_events_notify_fn notify, void *user)
{
    vd_event_sub *sub = vd_calloc(1, sizeof *sub);
    snprintf(sub->job_id, sizeof sub->job_id, "%s", job_id);
    sub->notify = notify;
    sub->notify_user = user;
    pthread_mutex_init(&sub->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&sub->arrived, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_lock(&ev->lock);
    sub->next = ev->subs;
    ev->subs = sub;
    pthread_mutex_unlock(&ev->lock);
    return sub;
}

int vd_events_next(vd_event_sub *sub, int timeout_ms, char type[VD_EVENT_TYPE_LEN], char **json)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) deadline.tv_sec++, deadline.tv_nsec -= 1000000000L;

    pthread_mutex_lock(&sub->lock);
    while (sub->len == 0 && timeout_ms > 0)
        if (pthread_cond_timedwait(&sub->arrived, &sub->lock, &deadline) == ETIMEDOUT) break;
    int got = sub->len > 0;
    if (got) {
        memcpy(type, sub->queue[0].type, VD_EVENT_TYPE_LEN);
        *json = sub->queue[0].json;
        memmove(&sub->queue[0], &sub->queue[1], (size_t)(sub->len - 1) * sizeof sub->queue[0]);
        sub->len--;
    }
    pthread_mutex_unlock(&sub->lock);
    return got;
}

void vd_events_unsubscribe(vd_events *ev, vd_event_sub *sub)
{
    pthread_mutex_lock(&ev->lock);
    for (vd_event_sub **p = &ev->subs; *p; p = &(*p)->next)
        if (*p == sub) {
            *p = sub->next;
            break;
        }
    pthread_mutex_unlock(&ev->lock);
    free_sub(sub);
}
