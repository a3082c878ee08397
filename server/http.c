/* http.c: the HTTP front end (http.h) on libmicrohttpd, with its epoll event loop on a fixed
 * pool of threads — never a thread per connection. It resolves each request against the route
 * table, authenticates Bearer keys in constant time, collects the body up to max_body_bytes
 * (413 as soon as the Content-Length or the streamed size is over), calls the handler of
 * api.c and sends its reply: a buffer, a file with single-range support, or a server-sent
 * event stream. Other paths are static files of web_dir. Every answer is counted in metrics.
 *
 * Event streams never block a pool thread: when a stream has nothing to send, its connection
 * is suspended; a published event or the heartbeat timer resumes it. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "common.h"

#define CONNECTION_LIMIT 1024
#define CONNECTION_TIMEOUT_SECONDS 60
#define HEARTBEAT_SECONDS 15.0
#define SSE_BLOCK_SIZE 4096
#define STOP_WAIT_SECONDS 3.0

typedef enum { ACCESS_PUBLIC, ACCESS_API, ACCESS_ADMIN } route_access;

typedef struct {
    const char *method;
    const char *pattern; /* segments; "{id}" matches any one segment; also the metrics label */
    vd_api_handler handler;
    route_access access;
    int takes_body;
} route;

static const route routes[] = {
    {"POST", "/v1/videos", vd_api_create_video, ACCESS_API, 1},
    {"GET", "/v1/videos", vd_api_list_videos, ACCESS_API, 0},
    {"GET", "/v1/videos/{id}", vd_api_get_video, ACCESS_API, 0},
    {"DELETE", "/v1/videos/{id}", vd_api_delete_video, ACCESS_API, 0},
    {"GET", "/v1/videos/{id}/content", vd_api_video_content, ACCESS_API, 0},
    {"POST", "/v1/videos/{id}/remix", vd_api_remix_video, ACCESS_API, 1},
    {"GET", "/v1/videos/{id}/events", vd_api_video_events, ACCESS_API, 0},
    {"GET", "/v1/models", vd_api_list_models, ACCESS_API, 0},
    {"GET", "/v1/models/{id}", vd_api_get_model, ACCESS_API, 0},
    {"GET", "/healthz", vd_api_healthz, ACCESS_PUBLIC, 0},
    {"GET", "/readyz", vd_api_readyz, ACCESS_PUBLIC, 0},
    {"GET", "/metrics", vd_api_metrics, ACCESS_PUBLIC, 0},
    {"GET", "/admin/status", vd_api_admin_status, ACCESS_ADMIN, 0},
    {"POST", "/admin/v1/analyses", vd_api_create_analysis, ACCESS_ADMIN, 1},
    {"GET", "/admin/v1/analyses", vd_api_list_analyses, ACCESS_ADMIN, 0},
    {"GET", "/admin/v1/analyses/{id}", vd_api_get_analysis, ACCESS_ADMIN, 0},
    {"POST", "/admin/v1/analyses/{id}/cancel", vd_api_cancel_analysis, ACCESS_ADMIN, 0},
    {"GET", "/admin/v1/analyses/{id}/events", vd_api_analysis_events, ACCESS_ADMIN, 0},
    {"POST", "/admin/v1/distillations", vd_api_create_distillation, ACCESS_ADMIN, 1},
    {"GET", "/admin/v1/distillations", vd_api_list_distillations, ACCESS_ADMIN, 0},
    {"GET", "/admin/v1/distillations/{id}", vd_api_get_distillation, ACCESS_ADMIN, 0},
    {"POST", "/admin/v1/distillations/{id}/cancel", vd_api_cancel_distillation, ACCESS_ADMIN, 0},
    {"GET", "/admin/v1/distillations/{id}/events", vd_api_distillation_events, ACCESS_ADMIN, 0},
    {"GET", "/admin/v1/models", vd_api_admin_list_models, ACCESS_ADMIN, 0},
    {"POST", "/admin/v1/models/{id}/activate", vd_api_activate_model, ACCESS_ADMIN, 0},
};

typedef struct sse_stream sse_stream;

struct vd_http {
    vd_server *srv;
    struct MHD_Daemon *daemon;
    int listen_fd;
    int port;
    int quiesced;
    pthread_mutex_t streams_lock; /* guards streams and stopping */
    sse_stream *streams;
    int stopping;
    pthread_cond_t heartbeat_wake;
    pthread_t heartbeat;
};

/* One event stream: its subscription and the text not yet handed to libmicrohttpd. */
struct sse_stream {
    vd_http *http;
    struct MHD_Connection *connection;
    vd_event_sub *sub;
    pthread_mutex_t lock; /* guards everything below */
    int suspended, finished, closing;
    char *pending;
    size_t pending_len, pending_sent;
    double last_write;
    sse_stream *next;
};

/* What one request carries between the calls libmicrohttpd makes for it. */
typedef struct {
    const route *route;     /* NULL for a static file or an unknown path */
    const char *label;      /* route label for metrics */
    char id[VD_API_ID_LEN];
    char key_id[32];
    int replied;            /* an answer was queued before the body was read */
    int too_large;
    char *body;
    size_t body_len, body_cap, discarded;
} request_ctx;

/* ---- helpers ---- */

const char *vd_request_header(const vd_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND, name);
}

const char *vd_request_query(const vd_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->connection, MHD_GET_ARGUMENT_KIND, name);
}

static void log_from_mhd(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char message[512];
    vsnprintf(message, sizeof message, fmt, ap);
    size_t n = strlen(message);
    while (n && message[n - 1] == '\n') message[--n] = 0;
    VD_LOG(VD_LOG_WARN, "libmicrohttpd: %s", message);
}

/* Matches path against a pattern, capturing the {id} segment. */
static int match_pattern(const char *pattern, const char *path, char id[VD_API_ID_LEN])
{
    while (*pattern && *path) {
        if (*pattern != '/' || *path != '/') return 0;
        pattern++, path++;
        size_t plen = strcspn(pattern, "/"), slen = strcspn(path, "/");
        if (plen == 4 && strncmp(pattern, "{id}", 4) == 0) {
            if (slen == 0 || slen >= VD_API_ID_LEN) return 0;
            memcpy(id, path, slen);
            id[slen] = 0;
        } else if (plen != slen || strncmp(pattern, path, plen) != 0) {
            return 0;
        }
        pattern += plen, path += slen;
    }
    return *pattern == 0 && *path == 0;
}

/* The route of (method, path). NULL with *path_known set when the path exists under another
 * method (the caller answers 405 with allow listing them). */
static const route *find_route(const char *method, const char *path, char id[VD_API_ID_LEN], int *path_known,
                               char *allow, size_t allow_len)
{
    *path_known = 0;
    allow[0] = 0;
    const char *m = strcmp(method, "HEAD") == 0 ? "GET" : method;
    char scratch[VD_API_ID_LEN];
    for (size_t i = 0; i < VD_ARRAY_LEN(routes); i++) {
        if (!match_pattern(routes[i].pattern, path, scratch)) continue;
        if (strcmp(routes[i].method, m) == 0) {
            memcpy(id, scratch, VD_API_ID_LEN);
            return &routes[i];
        }
        *path_known = 1;
        size_t used = strlen(allow);
        snprintf(allow + used, allow_len - used, "%s%s", used ? ", " : "", routes[i].method);
    }
    return NULL;
}

/* ---- authentication ---- */

/* Equal in time that depends only on the length of `given`, never on where they differ. */
static int equal_constant_time(const char *given, const char *key)
{
    size_t given_len = strlen(given), key_len = strlen(key);
    unsigned char diff = given_len != key_len;
    for (size_t i = 0; i < given_len; i++) diff |= (unsigned char)(given[i] ^ key[key_len ? i % key_len : 0]);
    return diff == 0;
}

/* 1 when token equals one of keys; every key is compared, whatever matched. */
static int key_listed(const char *token, char *const *keys, int count)
{
    int found = 0;
    for (int i = 0; i < count; i++) found |= equal_constant_time(token, keys[i]);
    return found;
}

/* A non-secret name for a key (its FNV-1a hash), for per-key limits and logs. */
static void key_name(const char *token, char out[32])
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)token; *p; p++) h = (h ^ *p) * 1099511628211ull;
    snprintf(out, 32, "key_%016llx", (unsigned long long)h);
}

/* 0 when the request may use the route (key_id filled), else the reply is the 401 or 403. */
static int authenticate(const vd_server_config *c, struct MHD_Connection *connection, route_access access,
                        char key_id[32], vd_reply *reply)
{
    key_id[0] = 0;
    if (access == ACCESS_PUBLIC || (access == ACCESS_API && c->api_key_count == 0)) return 0;
    if (access == ACCESS_ADMIN && c->admin_key_count == 0) {
        vd_api_error(reply, 403, NULL, "admin_disabled", "The admin routes are closed: no admin_keys are configured.");
        return -1;
    }
    const char *auth = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0 || !auth[7 + strspn(auth + 7, " ")]) {
        vd_api_error(reply, 401, NULL, "missing_api_key",
                     "You didn't provide an API key. Send it in an Authorization header: \"Bearer YOUR_KEY\".");
        return -1;
    }
    const char *token = auth + 7 + strspn(auth + 7, " ");
    int is_admin = key_listed(token, c->admin_keys, c->admin_key_count);
    int is_api = key_listed(token, c->api_keys, c->api_key_count);
    if (access == ACCESS_ADMIN && !is_admin) {
        if (is_api) vd_api_error(reply, 403, NULL, "admin_key_required", "This route needs an admin key.");
        else vd_api_error(reply, 401, NULL, "invalid_api_key", "Incorrect API key provided.");
        return -1;
    }
    if (!is_admin && !is_api) {
        vd_api_error(reply, 401, NULL, "invalid_api_key", "Incorrect API key provided.");
        return -1;
    }
    key_name(token, key_id);
    return 0;
}

/* ---- static files ---- */

static const char *content_type_of(const char *path)
{
    static const struct { const char *ext, *type; } types[] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
        {".json", "application/json"}, {".webmanifest", "application/manifest+json"},
        {".svg", "image/svg+xml"}, {".png", "image/png"}, {".jpg", "image/jpeg"}, {".jpeg", "image/jpeg"},
        {".gif", "image/gif"}, {".ico", "image/x-icon"}, {".webp", "image/webp"}, {".mp4", "video/mp4"},
        {".txt", "text/plain; charset=utf-8"}, {".map", "application/json"}, {".wasm", "application/wasm"},
        {".woff2", "font/woff2"},
    };
    const char *dot = strrchr(path, '.');
    if (dot && !strchr(dot, '/'))
        for (size_t i = 0; i < VD_ARRAY_LEN(types); i++)
            if (strcasecmp(dot, types[i].ext) == 0) return types[i].type;
    return "application/octet-stream";
}

/* Resolves a URL path to a regular file inside web_dir (symbolic links included, nothing may
 * resolve outside it). 0 with the real path, -1 when there is no such file. */
static int resolve_static(const char *web_dir, const char *url, char out[PATH_MAX])
{
    char root[PATH_MAX], joined[PATH_MAX * 2];
    if (!realpath(web_dir, root)) return -1;
    if (url[0] != '/' || strstr(url, "/../") || strstr(url, "/./") || strstr(url, "//") ||
        (strlen(url) >= 3 && strcmp(url + strlen(url) - 3, "/..") == 0))
        return -1;
    snprintf(joined, sizeof joined, "%s%s", root, url);
    size_t n = strlen(joined);
    if (joined[n - 1] == '/') snprintf(joined + n, sizeof joined - n, "index.html");
    if (!realpath(joined, out)) return -1;
    size_t root_len = strlen(root);
    if (strncmp(out, root, root_len) != 0 || (out[root_len] != '/' && out[root_len] != 0)) return -1;
    struct stat st;
    if (stat(out, &st) != 0) return -1;
    if (S_ISDIR(st.st_mode)) {
        char index[PATH_MAX + 16];
        snprintf(index, sizeof index, "%s/index.html", out);
        if (strlen(index) >= PATH_MAX || stat(index, &st) != 0 || !S_ISREG(st.st_mode)) return -1;
        memcpy(out, index, strlen(index) + 1);
        return 0;
    }
    return S_ISREG(st.st_mode) ? 0 : -1;
}

/* ---- sending replies ---- */

static void add_common_headers(struct MHD_Response *response, const vd_reply *reply)
{
    if (reply->content_type) MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, reply->content_type);
    MHD_add_response_header(response, "X-Content-Type-Options", "nosniff");
    if (reply->retry_after > 0) {
        char seconds[16];
        snprintf(seconds, sizeof seconds, "%d", reply->retry_after);
        MHD_add_response_header(response, MHD_HTTP_HEADER_RETRY_AFTER, seconds);
    }
    if (reply->status == 401) MHD_add_response_header(response, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"vdmini\"");
}

static enum MHD_Result queue_buffer(vd_http *h, struct MHD_Connection *connection, const char *label, vd_reply *reply)
{
    if (!reply->body) vd_api_error(reply, 500, NULL, "internal_error", "The reply could not be built.");
    struct MHD_Response *response =
        MHD_create_response_from_buffer(reply->body_len, reply->body, MHD_RESPMEM_MUST_FREE);
    if (!response) return MHD_NO;
    reply->body = NULL; /* the response owns it now */
    add_common_headers(response, reply);
    if (strncmp(label, "/v1/", 4) == 0 || strncmp(label, "/admin/", 7) == 0)
        MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result rc = MHD_queue_response(connection, (unsigned)reply->status, response);
    MHD_destroy_response(response);
    vd_metrics_request(h->srv->metrics, label, reply->status);
    return rc;
}

/* A Range header against a file of `size` bytes: 0 ignore it (serve the whole file), 1 the
 * range [*first, *last], -1 unsatisfiable. Several ranges are served as the whole file. */
static int parse_range(const char *header, uint64_t size, uint64_t *first, uint64_t *last)
{
    if (!header || strncasecmp(header, "bytes=", 6) != 0 || strchr(header, ',')) return 0;
    const char *s = header + 6;
    while (*s == ' ') s++;
    char *end;
    if (*s == '-') { /* the last N bytes */
        if (s[1] < '0' || s[1] > '9') return 0;
        unsigned long long n = strtoull(s + 1, &end, 10);
        if (*end && *end != ' ') return 0;
        if (n == 0 || size == 0) return -1;
        *first = n >= size ? 0 : size - n;
        *last = size - 1;
        return 1;
    }
    if (*s < '0' || *s > '9') return 0;
    unsigned long long a = strtoull(s, &end, 10), b = UINT64_MAX;
    if (*end != '-') return 0;
    s = end + 1;
    if (*s >= '0' && *s <= '9') {
        b = strtoull(s, &end, 10);
        s = end;
    }
    if (*s && *s != ' ') return 0;
    if (b < a) return 0;
    if (a >= size) return -1;
    *first = a;
    *last = b >= size ? size - 1 : b;
    return 1;
}

static enum MHD_Result queue_file(vd_http *h, struct MHD_Connection *connection, const char *label, vd_reply *reply)
{
    int fd = open(reply->path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        vd_api_error(reply, 404, NULL, "not_found", "The file is not available.");
        return queue_buffer(h, connection, label, reply);
    }
    uint64_t size = (uint64_t)st.st_size, first = 0, last = size ? size - 1 : 0;
    const char *range = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
    int ranged = parse_range(range, size, &first, &last);
    char content_range[96];
    if (ranged < 0) {
        close(fd);
        vd_api_error(reply, 416, NULL, "range_not_satisfiable", "The range %.60s is outside the file's %llu bytes.",
                     range, (unsigned long long)size);
        reply->content_type = "application/json";
        struct MHD_Response *response =
            MHD_create_response_from_buffer(reply->body_len, reply->body, MHD_RESPMEM_MUST_FREE);
        if (!response) return MHD_NO;
        reply->body = NULL;
        snprintf(content_range, sizeof content_range, "bytes */%llu", (unsigned long long)size);
        MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_RANGE, content_range);
        add_common_headers(response, reply);
        enum MHD_Result rc = MHD_queue_response(connection, MHD_HTTP_RANGE_NOT_SATISFIABLE, response);
        MHD_destroy_response(response);
        vd_metrics_request(h->srv->metrics, label, 416);
        return rc;
    }
    uint64_t length = size ? last - first + 1 : 0;
    struct MHD_Response *response = MHD_create_response_from_fd_at_offset64(length, fd, first);
    if (!response) {
        close(fd);
        return MHD_NO;
    }
    reply->status = ranged ? MHD_HTTP_PARTIAL_CONTENT : MHD_HTTP_OK;
    add_common_headers(response, reply);
    MHD_add_response_header(response, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    if (ranged) {
        snprintf(content_range, sizeof content_range, "bytes %llu-%llu/%llu", (unsigned long long)first,
                 (unsigned long long)last, (unsigned long long)size);
        MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_RANGE, content_range);
    }
    enum MHD_Result rc = MHD_queue_response(connection, (unsigned)reply->status, response);
    MHD_destroy_response(response);
    vd_metrics_request(h->srv->metrics, label, reply->status);
    return rc;
}

/* ---- server-sent events ---- */

/* Called by the publisher: wakes a stream that waits for events. */
static void stream_notify(void *user)
{
    sse_stream *s = user;
    pthread_mutex_lock(&s->lock);
    if (s->suspended) {
        s->suspended = 0;
        MHD_resume_connection(s->connection);
    }
    pthread_mutex_unlock(&s->lock);
}

static void stream_set_pending(sse_stream *s, char *text)
{
    free(s->pending);
    s->pending = text;
    s->pending_len = text ? strlen(text) : 0;
    s->pending_sent = 0;
}

/* libmicrohttpd asks for more of the stream: the rest of the pending text, the next event, a
 * heartbeat comment when the stream was quiet, or nothing for now (the connection is
 * suspended until an event or the heartbeat timer resumes it). Ends after a terminal event. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    sse_stream *s = cls;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        if (s->pending_sent < s->pending_len) {
            size_t n = s->pending_len - s->pending_sent;
            if (n > max) n = max;
            memcpy(buf, s->pending + s->pending_sent, n);
            s->pending_sent += n;
            s->last_write = vd_now();
            pthread_mutex_unlock(&s->lock);
            return (ssize_t)n;
        }
        if (s->finished || s->closing) {
            pthread_mutex_unlock(&s->lock);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        char type[VD_EVENT_TYPE_LEN], *json, *text;
        if (vd_events_next(s->sub, 0, type, &json)) {
            if (asprintf(&text, "event: %s\ndata: %s\n\n", type, json) < 0) text = NULL;
            free(json);
            stream_set_pending(s, text);
            if (vd_event_is_terminal(type)) s->finished = 1;
            continue;
        }
        if (vd_now() - s->last_write >= HEARTBEAT_SECONDS) {
            stream_set_pending(s, strdup(": keep-alive\n\n"));
            continue;
        }
        s->suspended = 1;
        MHD_suspend_connection(s->connection);
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
}

static void stream_free(void *cls)
{
    sse_stream *s = cls;
    vd_http *h = s->http;
    pthread_mutex_lock(&h->streams_lock);
    for (sse_stream **p = &h->streams; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            break;
        }
    pthread_mutex_unlock(&h->streams_lock);
    vd_events_unsubscribe(h->srv->events, s->sub);
    free(s->pending);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static enum MHD_Result queue_events(vd_http *h, struct MHD_Connection *connection, const char *label, vd_reply *reply)
{
    sse_stream *s = vd_calloc(1, sizeof *s);
    s->http = h;
    s->connection = connection;
    pthread_mutex_init(&s->lock, NULL);
    /* subscribe first, then read the state: no event can fall between the two */
    s->sub = vd_events_subscribe(h->srv->events, reply->job_id, stream_notify, s);
    char *first = vd_api_state_event(h->srv, reply->job_id, &s->finished);
    if (!first) {
        vd_events_unsubscribe(h->srv->events, s->sub);
        pthread_mutex_destroy(&s->lock);
        free(s);
        vd_api_error(reply, 404, "video_id", "not_found", "No video with id '%.60s'.", reply->job_id);
        return queue_buffer(h, connection, label, reply);
    }
    stream_set_pending(s, first);
    s->last_write = vd_now();

    pthread_mutex_lock(&h->streams_lock);
    int stopping = h->stopping;
    if (!stopping) {
        s->next = h->streams;
        h->streams = s;
    }
    pthread_mutex_unlock(&h->streams_lock);
    if (stopping) {
        vd_events_unsubscribe(h->srv->events, s->sub);
        free(s->pending);
        pthread_mutex_destroy(&s->lock);
        free(s);
        vd_api_error(reply, 503, NULL, "shutting_down", "The server is shutting down.");
        return queue_buffer(h, connection, label, reply);
    }
    struct MHD_Response *response =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SSE_BLOCK_SIZE, stream_read, s, stream_free);
    if (!response) {
        stream_free(s);
        return MHD_NO;
    }
    add_common_headers(response, reply);
    MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(response, "X-Accel-Buffering", "no");
    enum MHD_Result rc = MHD_queue_response(connection, MHD_HTTP_OK, response);
    MHD_destroy_response(response);
    vd_metrics_request(h->srv->metrics, label, 200);
    return rc;
}

/* Resumes quiet streams once a heartbeat is due, about once a second. */
static void *heartbeat_main(void *arg)
{
    vd_http *h = arg;
    pthread_mutex_lock(&h->streams_lock);
    while (!h->stopping) {
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += 1;
        pthread_cond_timedwait(&h->heartbeat_wake, &h->streams_lock, &deadline);
        double now = vd_now();
        for (sse_stream *s = h->streams; s; s = s->next) {
            pthread_mutex_lock(&s->lock);
            if (s->suspended && now - s->last_write >= HEARTBEAT_SECONDS) {
                s->suspended = 0;
                MHD_resume_connection(s->connection);
            }
            pthread_mutex_unlock(&s->lock);
        }
    }
    pthread_mutex_unlock(&h->streams_lock);
    return NULL;
}

/* ---- requests ---- */

static enum MHD_Result send_reply(vd_http *h, struct MHD_Connection *connection, const char *label, vd_reply *reply)
{
    switch (reply->kind) {
    case VD_REPLY_FILE: return queue_file(h, connection, label, reply);
    case VD_REPLY_EVENTS: return queue_events(h, connection, label, reply);
    default: return queue_buffer(h, connection, label, reply);
    }
}

static int header_content_length(struct MHD_Connection *connection, uint64_t *length)
{
    const char *v = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!v) return 0;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end || end == v) return 0;
    *length = n;
    return 1;
}

/* First call of a request: route, authenticate, check the announced size. Replies at once
 * when the request cannot go on (then the body is never read). */
static enum MHD_Result begin_request(vd_http *h, struct MHD_Connection *connection, const char *url,
                                     const char *method, request_ctx *ctx)
{
    vd_server *srv = h->srv;
    vd_reply reply = {0};
    char allow[64];
    int path_known;
    ctx->route = find_route(method, url, ctx->id, &path_known, allow, sizeof allow);
    ctx->label = ctx->route ? ctx->route->pattern : "static";
    if (!ctx->route && path_known) {
        ctx->label = "unmatched";
        vd_api_error(&reply, 405, NULL, "method_not_allowed", "Method %.16s is not allowed here (allowed: %s).", method, allow);
        struct MHD_Response *response =
            MHD_create_response_from_buffer(reply.body_len, reply.body, MHD_RESPMEM_MUST_FREE);
        if (!response) return MHD_NO;
        add_common_headers(response, &reply);
        MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, allow);
        ctx->replied = 1;
        enum MHD_Result rc = MHD_queue_response(connection, 405, response);
        MHD_destroy_response(response);
        vd_metrics_request(srv->metrics, ctx->label, 405);
        return rc;
    }
    if (!ctx->route && (strncmp(url, "/v1/", 4) == 0 || strcmp(url, "/v1") == 0 ||
                        strncmp(url, "/admin/", 7) == 0 || strcmp(url, "/admin") == 0)) {
        ctx->label = "unmatched";
        vd_api_error(&reply, 404, NULL, "not_found", "Unknown route %.16s %.200s.", method, url);
    } else if (!ctx->route && strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        ctx->label = "unmatched";
        vd_api_error(&reply, 405, NULL, "method_not_allowed", "Method %.16s is not allowed here.", method);
    } else if (ctx->route) {
        pthread_rwlock_rdlock(&srv->config_lock);
        uint64_t length;
        if (authenticate(&srv->config, connection, ctx->route->access, ctx->key_id, &reply) == 0 &&
            ctx->route->takes_body && header_content_length(connection, &length) && length > srv->config.max_body_bytes)
            vd_api_error(&reply, 413, NULL, "request_too_large", "The request body is larger than %zu bytes.",
                         srv->config.max_body_bytes);
        pthread_rwlock_unlock(&srv->config_lock);
    }
    if (!reply.body) return MHD_YES; /* read on */
    ctx->replied = 1;
    return queue_buffer(h, connection, ctx->label, &reply);
}

static enum MHD_Result serve_static(vd_http *h, struct MHD_Connection *connection, const char *url, request_ctx *ctx)
{
    vd_reply reply = {0};
    char path[PATH_MAX];
    pthread_rwlock_rdlock(&h->srv->config_lock);
    int found = resolve_static(h->srv->config.web_dir, url, path) == 0;
    pthread_rwlock_unlock(&h->srv->config_lock);
    if (!found) {
        ctx->label = "unmatched";
        vd_api_error(&reply, 404, NULL, "not_found", "Nothing at %.200s.", url);
        return queue_buffer(h, connection, ctx->label, &reply);
    }
    reply.kind = VD_REPLY_FILE;
    reply.status = 200;
    reply.content_type = content_type_of(path);
    snprintf(reply.path, sizeof reply.path, "%s", path);
    return queue_file(h, connection, ctx->label, &reply);
}

static enum MHD_Result handle_request(void *cls, struct MHD_Connection *connection, const char *url,
                                      const char *method, const char *version, const char *upload_data,
                                      size_t *upload_data_size, void **con_cls)
{
    (void)version;
    vd_http *h = cls;
    request_ctx *ctx = *con_cls;
    if (!ctx) {
        ctx = vd_calloc(1, sizeof *ctx);
        *con_cls = ctx;
        return begin_request(h, connection, url, method, ctx);
    }
    if (*upload_data_size) { /* a piece of the body */
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (ctx->replied || !ctx->route || !ctx->route->takes_body) return MHD_YES;
        pthread_rwlock_rdlock(&h->srv->config_lock);
        size_t limit = h->srv->config.max_body_bytes;
        pthread_rwlock_unlock(&h->srv->config_lock);
        if (ctx->too_large || ctx->body_len + n > limit) {
            /* a streamed body over the limit: drop it, answer 413 at its end, but close the
             * connection rather than read on without bound */
            ctx->too_large = 1;
            free(ctx->body);
            ctx->body = NULL;
            ctx->body_len = ctx->body_cap = 0;
            ctx->discarded += n;
            return ctx->discarded > limit ? MHD_NO : MHD_YES;
        }
        if (ctx->body_len + n + 1 > ctx->body_cap) {
            size_t cap = ctx->body_cap ? ctx->body_cap : 16384;
            while (cap < ctx->body_len + n + 1) cap *= 2;
            if (cap > limit + 1) cap = limit + 1;
            ctx->body = vd_realloc(ctx->body, cap);
            ctx->body_cap = cap;
        }
        memcpy(ctx->body + ctx->body_len, upload_data, n);
        ctx->body_len += n;
        return MHD_YES;
    }
    if (ctx->replied) return MHD_YES;
    ctx->replied = 1;
    if (!ctx->route) return serve_static(h, connection, url, ctx);

    vd_server *srv = h->srv;
    vd_reply reply = {0};
    if (ctx->too_large) {
        pthread_rwlock_rdlock(&srv->config_lock);
        vd_api_error(&reply, 413, NULL, "request_too_large", "The request body is larger than %zu bytes.",
                     srv->config.max_body_bytes);
        pthread_rwlock_unlock(&srv->config_lock);
        return queue_buffer(h, connection, ctx->label, &reply);
    }
    vd_request request = {.srv = srv, .method = method, .path = url, .body = ctx->body ? ctx->body : "",
                          .body_len = ctx->body_len, .key_id = ctx->key_id, .connection = connection};
    if (ctx->body) ctx->body[ctx->body_len] = 0;
    memcpy(request.id, ctx->id, sizeof request.id);
    pthread_rwlock_rdlock(&srv->config_lock);
    request.config = &srv->config;
    ctx->route->handler(&request, &reply);
    pthread_rwlock_unlock(&srv->config_lock);
    enum MHD_Result rc = send_reply(h, connection, ctx->label, &reply);
    free(reply.body);
    return rc;
}

static void request_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                              enum MHD_RequestTerminationCode code)
{
    (void)cls, (void)connection, (void)code;
    request_ctx *ctx = *con_cls;
    if (!ctx) return;
    free(ctx->body);
    free(ctx);
    *con_cls = NULL;
}

/* ---- starting and stopping ---- */

/* Binds and listens on "HOST:PORT" ("[ADDR]:PORT" for IPv6). The socket, or -1 with a message. */
static int open_listener(const char *listen_spec, int *port, char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(listen_spec, ':');
    if (!colon || colon == listen_spec || !colon[1]) {
        snprintf(err, errlen, "listen address %s is not HOST:PORT", listen_spec);
        return -1;
    }
    size_t host_len = (size_t)(colon - listen_spec);
    const char *host_start = listen_spec;
    if (listen_spec[0] == '[' && colon[-1] == ']') host_start++, host_len -= 2;
    if (host_len >= sizeof host) {
        snprintf(err, errlen, "listen host of %s is too long", listen_spec);
        return -1;
    }
    memcpy(host, host_start, host_len);
    host[host_len] = 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *found;
    int gai = getaddrinfo(host_len ? host : NULL, colon + 1, &hints, &found);
    if (gai) {
        snprintf(err, errlen, "cannot resolve listen address %s: %s", listen_spec, gai_strerror(gai));
        return -1;
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *a = found; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
            saved = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(found);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", listen_spec, strerror(saved));
        return -1;
    }
    struct sockaddr_storage bound;
    socklen_t len = sizeof bound;
    getsockname(fd, (struct sockaddr *)&bound, &len);
    *port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                        : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    return fd;
}

vd_http *vd_http_start(vd_server *srv, char *err, size_t errlen)
{
    vd_http *h = vd_calloc(1, sizeof *h);
    h->srv = srv;
    pthread_rwlock_rdlock(&srv->config_lock);
    h->listen_fd = open_listener(srv->config.listen, &h->port, err, errlen);
    unsigned threads = (unsigned)srv->config.http_threads;
    pthread_rwlock_unlock(&srv->config_lock);
    if (h->listen_fd < 0) {
        free(h);
        return NULL;
    }
    pthread_mutex_init(&h->streams_lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&h->heartbeat_wake, &attr);
    pthread_condattr_destroy(&attr);

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    h->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, handle_request, h, MHD_OPTION_EXTERNAL_LOGGER, log_from_mhd, h,
        MHD_OPTION_LISTEN_SOCKET, h->listen_fd,
        MHD_OPTION_THREAD_POOL_SIZE, threads > 1 ? threads : 0, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONNECTION_TIMEOUT_SECONDS,
        MHD_OPTION_NOTIFY_COMPLETED, request_completed, h, MHD_OPTION_END);
    if (!h->daemon) {
        snprintf(err, errlen, "libmicrohttpd could not start on %d threads", threads);
        close(h->listen_fd);
        pthread_mutex_destroy(&h->streams_lock);
        pthread_cond_destroy(&h->heartbeat_wake);
        free(h);
        return NULL;
    }
    pthread_create(&h->heartbeat, NULL, heartbeat_main, h);
    return h;
}

int vd_http_port(const vd_http *h) { return h->port; }

void vd_http_quiesce(vd_http *h)
{
    if (h->quiesced) return;
    if (MHD_quiesce_daemon(h->daemon) != MHD_INVALID_SOCKET) h->quiesced = 1;
}

void vd_http_stop(vd_http *h)
{
    if (!h) return;
    /* end every event stream (a suspended connection must not outlive the daemon) */
    pthread_mutex_lock(&h->streams_lock);
    h->stopping = 1;
    pthread_cond_signal(&h->heartbeat_wake);
    for (sse_stream *s = h->streams; s; s = s->next) {
        pthread_mutex_lock(&s->lock);
        s->closing = 1;
        if (s->suspended) {
            s->suspended = 0;
            MHD_resume_connection(s->connection);
        }
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&h->streams_lock);
    pthread_join(h->heartbeat, NULL);
    double deadline = vd_now() + STOP_WAIT_SECONDS;
    for (;;) {
        pthread_mutex_lock(&h->streams_lock);
        int left = h->streams != NULL;
        pthread_mutex_unlock(&h->streams_lock);
        if (!left || vd_now() > deadline) break;
        usleep(10000);
    }
    MHD_stop_daemon(h->daemon);
    if (h->quiesced) close(h->listen_fd); /* otherwise the daemon closed it */
    pthread_mutex_destroy(&h->streams_lock);
    pthread_cond_destroy(&h->heartbeat_wake);
    free(h);
}
