/* api.h: the handlers of vdminid's HTTP API — the OpenAI-compatible Videos API (/v1/videos...),
 * the models list, health, readiness, metrics and the admin routes. http.c routes a request,
 * authenticates it, collects its body and calls one handler, which fills a reply that http.c
 * sends (a buffer, a file with Range support, or a server-sent event stream). Handlers run with
 * the configuration read-locked. */
#ifndef VD_API_H
#define VD_API_H

#include <jansson.h>
#include <stddef.h>

#include "job.h"
#include "server.h"

#define VD_API_ID_LEN 128

typedef struct {
    vd_server *srv;
    const vd_server_config *config; /* srv->config, read-locked while the handler runs */
    const char *method;
    const char *path;
    char id[VD_API_ID_LEN];  /* the {id} segment of the route, "" when the route has none */
    const char *body;        /* NUL-terminated; body_len bytes */
    size_t body_len;
    const char *key_id;      /* which API key made the request ("" when keys are off) */
    void *connection;        /* the transport's connection, for vd_request_header/_query */
} vd_request;

typedef enum {
    VD_REPLY_BUFFER, /* body of body_len bytes */
    VD_REPLY_FILE,   /* the file at path, whole or the range the request asks for */
    VD_REPLY_EVENTS  /* server-sent events of job_id */
} vd_reply_kind;

typedef struct {
    vd_reply_kind kind;
    int status;
    const char *content_type;
    char *body;                 /* malloc'd */
    size_t body_len;
    char path[4096];
    char job_id[VD_JOB_ID_LEN];
    int retry_after;            /* seconds for a Retry-After header; 0 for none */
} vd_reply;

/* Request headers and query arguments (implemented by the transport, http.c). NULL if absent. */
const char *vd_request_header(const vd_request *r, const char *name);
const char *vd_request_query(const vd_request *r, const char *name);

/* An OpenAI-shaped error: {"error": {"message", "type", "param", "code"}}. param may be NULL.
 * The type follows from the status. */
void vd_api_error(vd_reply *reply, int status, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* The reply is value (taken over) as JSON with that status. */
void vd_api_reply_json(vd_reply *reply, int status, json_t *value);
/* The request's body as a JSON object (*out, the caller's reference): 0, else the reply is the
 * 415 or 400. */
int vd_api_json_body(const vd_request *r, json_t **out, vd_reply *reply);

/* Field checks of a request's JSON object; each error reply names the field (param). */
/* Rejects fields outside allowed (NULL-terminated): 0, or -1 (replied). */
int vd_api_check_known(const json_t *fields, const char *const *allowed, vd_reply *reply);
/* A string field: 1 set, 0 absent or null, -1 wrong type (replied). */
int vd_api_get_string(const json_t *fields, const char *name, const char **out, vd_reply *reply);
/* A whole number (JSON integer or decimal text) within [lo, hi]: 1 set, 0 absent, -1 (replied). */
int vd_api_get_integer(const json_t *fields, const char *name, long long lo, long long hi, long long *out,
                       vd_reply *reply);
/* A finite number within [lo, hi]: 1 set, 0 absent, -1 (replied). */
int vd_api_get_number(const json_t *fields, const char *name, double lo, double hi, double *out, vd_reply *reply);

/* A 500 reply for a failure of the server's own (what failed; err goes to the log only). */
void vd_api_internal_error(vd_reply *reply, const char *what, const char *err);

/* The model registry (vd_store_model_list), or -1 with the reply made a 500. */
int vd_api_read_registry(const vd_request *r, vd_reply *reply, vd_model_entry **models, int *count);

/* Makes the reply the server-sent event stream of id (a video job or an admin run). */
void vd_api_reply_events(vd_reply *reply, const char *id);

typedef void (*vd_api_handler)(const vd_request *r, vd_reply *reply);

void vd_api_create_video(const vd_request *r, vd_reply *reply);  /* POST /v1/videos */
void vd_api_list_videos(const vd_request *r, vd_reply *reply);   /* GET /v1/videos */
void vd_api_get_video(const vd_request *r, vd_reply *reply);     /* GET /v1/videos/{id} */
void vd_api_delete_video(const vd_request *r, vd_reply *reply);  /* DELETE /v1/videos/{id} */
void vd_api_video_content(const vd_request *r, vd_reply *reply); /* GET /v1/videos/{id}/content */
void vd_api_remix_video(const vd_request *r, vd_reply *reply);   /* POST /v1/videos/{id}/remix */
void vd_api_video_events(const vd_request *r, vd_reply *reply);  /* GET /v1/videos/{id}/events */
void vd_api_list_models(const vd_request *r, vd_reply *reply);   /* GET /v1/models */
void vd_api_get_model(const vd_request *r, vd_reply *reply);     /* GET /v1/models/{id} */
void vd_api_healthz(const vd_request *r, vd_reply *reply);       /* GET /healthz */
void vd_api_readyz(const vd_request *r, vd_reply *reply);        /* GET /readyz */
void vd_api_metrics(const vd_request *r, vd_reply *reply);       /* GET /metrics */
void vd_api_admin_status(const vd_request *r, vd_reply *reply);  /* GET /admin/status */

/* The admin API (admin_api.c) */
void vd_api_create_analysis(const vd_request *r, vd_reply *reply);      /* POST /admin/v1/analyses */
void vd_api_list_analyses(const vd_request *r, vd_reply *reply);       /* GET /admin/v1/analyses */
void vd_api_get_analysis(const vd_request *r, vd_reply *reply);        /* GET /admin/v1/analyses/{id} */
void vd_api_cancel_analysis(const vd_request *r, vd_reply *reply);     /* POST .../analyses/{id}/cancel */
void vd_api_analysis_events(const vd_request *r, vd_reply *reply);     /* GET .../analyses/{id}/events */
void vd_api_create_distillation(const vd_request *r, vd_reply *reply); /* POST /admin/v1/distillations */
void vd_api_list_distillations(const vd_request *r, vd_reply *reply);  /* GET /admin/v1/distillations */
void vd_api_get_distillation(const vd_request *r, vd_reply *reply);    /* GET .../distillations/{id} */
void vd_api_cancel_distillation(const vd_request *r, vd_reply *reply); /* POST .../distillations/{id}/cancel */
void vd_api_distillation_events(const vd_request *r, vd_reply *reply); /* GET .../distillations/{id}/events */
void vd_api_admin_list_models(const vd_request *r, vd_reply *reply);   /* GET /admin/v1/models */
void vd_api_activate_model(const vd_request *r, vd_reply *reply);      /* POST /admin/v1/models/{id}/activate */

/* The first event of an admin run's event stream, as vd_api_state_event for a video. */
char *vd_api_run_state_event(vd_server *srv, const char *id, int *finished);

/* The first event of an event stream: the job's current state as "event: STATUS" with the
 * video object as data (malloc'd text). *finished is set when that state is terminal. NULL
 * when the job no longer exists. Ids of admin runs go to vd_api_run_state_event. */
char *vd_api_state_event(vd_server *srv, const char *id, int *finished);

#endif
