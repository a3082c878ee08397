/* api.c: the handlers of api.h. Creating a video parses a JSON or multipart/form-data body into
 * a job, validating every field against the configuration's limits and the model's (errors
 * name the offending param as OpenAI's do), stores it (an Idempotency-Key returns the job it
 * already made), and queues it on the scheduler. The other handlers read the store and the
 * scheduler and answer in the shapes of OpenAI's Videos and Models APIs. */
#include "api.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "models.h"
#include "multipart.h"
#include "video.h"

#define MAX_FORM_PARTS 32
#define MAX_IDEMPOTENCY_KEY 255
#define RETRY_AFTER_SECONDS 5
#define LIST_DEFAULT_LIMIT 20
#define LIST_MAX_LIMIT 100
#define UNKNOWN_WORDS_LEN 4096
#define DRAWN_SEED_LIMIT (1ull << 53) /* drawn seeds stay exact in JavaScript numbers */

/* Job creation checks the per-key limit and submits as one step, so that two requests of the
 * same key cannot both pass the check. */
static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- replies ---- */

void vd_api_reply_json(vd_reply *reply, int status, json_t *value)
{
    reply->kind = VD_REPLY_BUFFER;
    reply->status = status;
    reply->content_type = "application/json";
    free(reply->body);
    reply->body = json_dumps(value, JSON_COMPACT | JSON_REAL_PRECISION(10));
    reply->body_len = reply->body ? strlen(reply->body) : 0;
    json_decref(value);
}

static const char *error_type(int status)
{
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 429: return "rate_limit_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

void vd_api_error(vd_reply *reply, int status, const char *param, const char *code, const char *fmt, ...)
{
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    json_t *error = json_pack("{s:s, s:s, s:o, s:s}", "message", message, "type", error_type(status), "param",
                              param ? json_string(param) : json_null(), "code", code);
    if (!error) /* a message that is not UTF-8 (it quotes the request): keep the rest */
        error = json_pack("{s:s, s:s, s:o, s:s}", "message", "invalid request", "type", error_type(status),
                          "param", param ? json_string(param) : json_null(), "code", code);
    vd_api_reply_json(reply, status, json_pack("{s:o}", "error", error));
}

void vd_api_internal_error(vd_reply *reply, const char *what, const char *err)
{
    VD_LOG(VD_LOG_ERROR, "%s: %s", what, err);
    vd_api_error(reply, 500, NULL, "internal_error", "The server could not complete the request (%s).", what);
}

/* ---- the video object ---- */

static json_t *optional_time(int64_t t) { return t ? json_integer(t) : json_null(); }

static void format_seconds(const vd_job *j, char *buf, size_t len)
{
    if (j->fps > 0 && j->frames % j->fps == 0) snprintf(buf, len, "%d", j->frames / j->fps);
    else snprintf(buf, len, "%.6g", j->fps > 0 ? (double)j->frames / j->fps : 0.0);
}

static json_t *unknown_words_array(const char *words)
{
    json_t *array = json_array();
    const char *p = words ? words : "";
    while (*p) {
        while (*p == ' ') p++;
        const char *start = p;
        while (*p && *p != ' ') p++;
        if (p > start) json_array_append_new(array, json_stringn(start, (size_t)(p - start)));
    }
    return array;
}

static json_t *video_object(vd_server *srv, const vd_job *j)
{
    char size[32], seconds[32];
    snprintf(size, sizeof size, "%dx%d", j->width, j->height);
    format_seconds(j, seconds, sizeof seconds);
    int position = j->status == VD_JOB_QUEUED ? vd_scheduler_queue_position(srv->scheduler, j->id) : -1;
    json_t *error = json_null();
    if (j->status == VD_JOB_FAILED || j->error_code[0])
        error = json_pack("{s:s, s:s}", "code", j->error_code[0] ? j->error_code : "generation_failed", "message",
                          j->error_message ? j->error_message : "");
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(j->id));
    json_object_set_new(o, "object", json_string("video"));
    json_object_set_new(o, "model", json_string(j->model));
    json_object_set_new(o, "status", json_string(vd_job_status_name(j->status)));
    json_object_set_new(o, "progress", json_integer(j->progress));
    json_object_set_new(o, "created_at", json_integer(j->created_at));
    json_object_set_new(o, "completed_at", optional_time(j->completed_at));
    json_object_set_new(o, "expires_at", optional_time(j->expires_at));
    json_object_set_new(o, "prompt", json_string(j->prompt ? j->prompt : ""));
    json_object_set_new(o, "size", json_string(size));
    json_object_set_new(o, "seconds", json_string(seconds));
    json_object_set_new(o, "seed", json_integer((json_int_t)j->seed));
    json_object_set_new(o, "queue_position", position >= 0 ? json_integer(position) : json_null());
    json_object_set_new(o, "error", error ? error : json_null());
    json_object_set_new(o, "unknown_words", unknown_words_array(j->unknown_words));
    json_object_set_new(o, "remixed_from_video_id", j->remixed_from[0] ? json_string(j->remixed_from) : json_null());
    json_object_set_new(o, "frames", json_integer(j->frames));
    json_object_set_new(o, "fps", json_integer(j->fps));
    json_object_set_new(o, "num_inference_steps", json_integer(j->steps));
    json_object_set_new(o, "guidance_scale", json_real(round((double)j->guidance * 1e6) / 1e6));
    json_object_set_new(o, "guide_scale", json_real(round((double)j->guide_scale * 1e6) / 1e6));
    json_object_set_new(o, "sampler", json_string(j->sampler == VD_SAMPLER_EULER ? "euler" : "ddim"));
    json_object_set_new(o, "eta", json_real(round((double)j->eta * 1e6) / 1e6));
    json_object_set_new(o, "input_reference", json_boolean(j->has_image));
    return o;
}

/* Looks a job up for a handler: 0 found, else the reply is already the 404 or 500. */
static int find_job(const vd_request *r, vd_job *job, vd_reply *reply)
{
    char err[256];
    int rc = vd_store_get(r->srv->store, r->id, job, err, sizeof err);
    if (rc == 0) return 0;
    if (rc == 1) vd_api_error(reply, 404, "video_id", "not_found", "No video with id '%.80s'.", r->id);
    else vd_api_internal_error(reply, "reading the job store", err);
    return -1;
}

/* ---- request fields ---- */

/* The create and remix bodies as one JSON object: a JSON body as it is, a multipart body with
 * each text part as a string. A file part of input_reference is kept aside as bytes. */
typedef struct {
    json_t *fields;
    const unsigned char *file; /* an uploaded input_reference, pointing into the body */
    size_t file_size;
} request_fields;

static int media_type_is(const char *content_type, const char *media)
{
    size_t n = strlen(media);
    while (*content_type == ' ') content_type++;
    return strncasecmp(content_type, media, n) == 0 &&
           (content_type[n] == 0 || content_type[n] == ';' || content_type[n] == ' ');
}

static int parse_body(const vd_request *r, request_fields *f, vd_reply *reply)
{
    memset(f, 0, sizeof *f);
    const char *content_type = vd_request_header(r, "Content-Type");
    if (!content_type) {
        vd_api_error(reply, 415, NULL, "unsupported_media_type",
                     "Send the request as application/json or multipart/form-data (no Content-Type was given).");
        return -1;
    }
    if (media_type_is(content_type, "application/json")) {
        json_error_t jerr;
        f->fields = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &jerr);
        if (!f->fields) {
            vd_api_error(reply, 400, NULL, "invalid_json",
                         "We could not parse the JSON body of your request: %s (line %d, column %d).", jerr.text,
                         jerr.line, jerr.column);
            return -1;
        }
        if (!json_is_object(f->fields)) {
            json_decref(f->fields);
            vd_api_error(reply, 400, NULL, "invalid_json", "The JSON body must be an object.");
            return -1;
        }
        return 0;
    }
    if (media_type_is(content_type, "multipart/form-data")) {
        const char *boundary;
        size_t boundary_len;
        char err[256];
        vd_multipart_part parts[MAX_FORM_PARTS];
        int count;
        if (vd_multipart_boundary(content_type, &boundary, &boundary_len, err, sizeof err) ||
            vd_multipart_parse(r->body, r->body_len, boundary, boundary_len, parts, MAX_FORM_PARTS, &count, err,
                               sizeof err)) {
            vd_api_error(reply, 400, NULL, "invalid_multipart", "Malformed multipart/form-data body: %s.", err);
            return -1;
        }
        f->fields = json_object();
        for (int i = 0; i < count; i++) {
            const vd_multipart_part *p = &parts[i];
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)(p->name_len < 63 ? p->name_len : 63), p->name);
            int is_file = p->filename || (p->content_type && p->content_type_len >= 6 &&
                                          strncasecmp(p->content_type, "image/", 6) == 0);
            int duplicate = json_object_get(f->fields, name) != NULL || (is_file && f->file);
            if (vd_multipart_name_is(p, "input_reference") && is_file && !duplicate) {
                f->file = p->data;
                f->file_size = p->size;
                json_object_set_new(f->fields, name, json_true()); /* marks it present */
                continue;
            }
            json_t *value = duplicate ? NULL : json_stringn((const char *)p->data, p->size);
            if (!value) {
                json_decref(f->fields);
                if (duplicate) vd_api_error(reply, 400, name, "duplicate_parameter", "Parameter '%s' is given twice.", name);
                else vd_api_error(reply, 400, name, "invalid_value", "Parameter '%s' is not valid UTF-8 text.", name);
                return -1;
            }
            json_object_set_new(f->fields, name, value);
        }
        return 0;
    }
    vd_api_error(reply, 415, NULL, "unsupported_media_type",
                 "Content-Type %.100s is not supported: send application/json or multipart/form-data.", content_type);
    return -1;
}

int vd_api_json_body(const vd_request *r, json_t **out, vd_reply *reply)
{
    const char *content_type = vd_request_header(r, "Content-Type");
    if (!content_type || !media_type_is(content_type, "application/json")) {
        vd_api_error(reply, 415, NULL, "unsupported_media_type", "Send the request as application/json.");
        return -1;
    }
    json_error_t jerr;
    *out = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!*out) {
        vd_api_error(reply, 400, NULL, "invalid_json", "We could not parse the JSON body of your request: %s (line %d, column %d).",
                     jerr.text, jerr.line, jerr.column);
        return -1;
    }
    if (!json_is_object(*out)) {
        json_decref(*out);
        vd_api_error(reply, 400, NULL, "invalid_json", "The JSON body must be an object.");
        return -1;
    }
    return 0;
}

/* Rejects parameters outside `allowed` (NULL-terminated). */
int vd_api_check_known(const json_t *fields, const char *const *allowed, vd_reply *reply)
{
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)fields, key, value) {
        int known = 0;
        for (const char *const *a = allowed; *a && !known; a++) known = strcmp(key, *a) == 0;
        if (!known) {
            vd_api_error(reply, 400, key, "unknown_parameter", "Unknown parameter: '%.64s'.", key);
            return -1;
        }
    }
    return 0;
}

/* The field's value, or NULL when absent or JSON null. */
static json_t *field(const json_t *fields, const char *name)
{
    json_t *v = json_object_get(fields, name);
    return v && !json_is_null(v) ? v : NULL;
}

/* A string field: 1 set, 0 absent, -1 wrong type (replied). */
int vd_api_get_string(const json_t *fields, const char *name, const char **out, vd_reply *reply)
{
    json_t *v = field(fields, name);
    if (!v) return 0;
    if (!json_is_string(v)) {
        vd_api_error(reply, 400, name, "invalid_type", "Invalid type for '%s': expected a string.", name);
        return -1;
    }
    *out = json_string_value(v);
    return 1;
}

/* A whole-number field given as a JSON integer or as decimal text (multipart sends text).
 * 1 set, 0 absent, -1 wrong type or out of [lo, hi] (replied). */
int vd_api_get_integer(const json_t *fields, const char *name, long long lo, long long hi, long long *out,
                       vd_reply *reply)
{
    json_t *v = field(fields, name);
    if (!v) return 0;
    long long value = 0;
    int ok = 0;
    if (json_is_integer(v)) {
        value = json_integer_value(v);
        ok = 1;
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        ok = d == floor(d) && fabs(d) < 9e15;
        value = (long long)d;
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        value = strtoll(s, &end, 10);
        ok = *s && !isspace((unsigned char)*s) && *end == 0 && errno == 0;
    }
    if (!ok) {
        vd_api_error(reply, 400, name, "invalid_type", "Invalid type for '%s': expected an integer.", name);
        return -1;
    }
    if (value < lo || value > hi) {
        vd_api_error(reply, 400, name, "invalid_value", "Invalid '%s': must be between %lld and %lld (got %lld).",
                     name, lo, hi, value);
        return -1;
    }
    *out = value;
    return 1;
}

/* A number field (JSON number or decimal text), finite and within [lo, hi]. */
int vd_api_get_number(const json_t *fields, const char *name, double lo, double hi, double *out, vd_reply *reply)
{
    json_t *v = field(fields, name);
    if (!v) return 0;
    double value = 0;
    int ok = 0;
    if (json_is_number(v)) {
        value = json_number_value(v);
        ok = 1;
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        value = strtod(s, &end);
        ok = *s && !isspace((unsigned char)*s) && *end == 0;
    }
    if (!ok || !isfinite(value)) {
        vd_api_error(reply, 400, name, "invalid_type", "Invalid type for '%s': expected a number.", name);
        return -1;
    }
    if (value < lo || value > hi) {
        vd_api_error(reply, 400, name, "invalid_value", "Invalid '%s': must be between %g and %g (got %g).", name, lo,
                     hi, value);
        return -1;
    }
    *out = value;
    return 1;
}

/* Characters (UTF-8 code points) of a valid UTF-8 string. */
static size_t utf8_length(const char *s)
{
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static int base64_value(int c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

/* Decodes base64 (standard or URL-safe alphabet, padding optional) into a malloc'd buffer. -1
 * for a character outside the alphabet or a bad length. */
static int base64_decode(const char *s, size_t len, unsigned char **out, size_t *out_len)
{
    while (len > 0 && s[len - 1] == '=') len--;
    if (len % 4 == 1) return -1;
    unsigned char *buf = vd_malloc(len / 4 * 3 + 3);
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = base64_value((unsigned char)s[i]);
        if (v < 0) {
            free(buf);
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[n++] = (unsigned char)(acc >> bits);
        }
    }
    *out = buf;
    *out_len = n;
    return 0;
}

/* The first image of an image-to-video request, decoded to width x height RGB and written as
 * the job's input.png. The bytes come from an uploaded file or a data URL. 0, or -1 replied. */
static int store_input_image(const vd_request *r, const request_fields *f, const char *job_id, int width,
                             int height, vd_reply *reply)
{
    const vd_server_config *c = r->config;
    const unsigned char *bytes = f->file;
    size_t size = f->file_size;
    unsigned char *decoded = NULL;
    if (!bytes) {
        json_t *v = field(f->fields, "input_reference");
        if (json_is_object(v)) v = json_object_get(v, "image_url");
        if (!json_is_string(v)) {
            vd_api_error(reply, 400, "input_reference", "invalid_type",
                         "Invalid type for 'input_reference': expected an image file, a data URL or "
                         "{\"image_url\": data URL}.");
            return -1;
        }
        const char *url = json_string_value(v), *comma = strchr(url, ',');
        if (strncmp(url, "data:", 5) != 0 || !comma) {
            vd_api_error(reply, 400, "input_reference", "invalid_value",
                         "'input_reference' must be an uploaded image or a data: URL (other URLs are not fetched).");
            return -1;
        }
        if ((size_t)(comma - url) < 7 || strncmp(comma - 7, ";base64", 7) != 0) {
            vd_api_error(reply, 400, "input_reference", "invalid_value", "The 'input_reference' data URL must be base64.");
            return -1;
        }
        size_t encoded = strlen(comma + 1);
        if (encoded / 4 * 3 > c->max_image_bytes + 3) {
            vd_api_error(reply, 413, "input_reference", "image_too_large",
                         "The input image is larger than %zu bytes.", c->max_image_bytes);
            return -1;
        }
        if (base64_decode(comma + 1, encoded, &decoded, &size)) {
            vd_api_error(reply, 400, "input_reference", "invalid_value", "The 'input_reference' data URL is not valid base64.");
            return -1;
        }
        bytes = decoded;
    }
    int rc = -1;
    if (size > c->max_image_bytes) {
        vd_api_error(reply, 413, "input_reference", "image_too_large", "The input image is larger than %zu bytes.",
                     c->max_image_bytes);
        goto done;
    }
    vd_image_limits limits = {.max_bytes = c->max_image_bytes, .max_side = c->max_image_side,
                              .max_pixels = c->max_image_pixels};
    uint8_t *rgb = vd_malloc((size_t)width * height * 3);
    char err[256], path[4096];
    if (vd_image_decode(bytes, size, &limits, width, height, rgb, err, sizeof err)) {
        vd_api_error(reply, 400, "input_reference", "invalid_image", "The input image could not be used: %s.", err);
    } else {
        vd_store_path(r->srv->store, job_id, "input.png", path, sizeof path);
        if (vd_png_write(path, rgb, width, height, err, sizeof err)) vd_api_internal_error(reply, "storing the input image", err);
        else rc = 0;
    }
    free(rgb);
done:
    free(decoded);
    return rc;
}

/* Fills job from the create fields (every field checked) and stores its input image. */
static int job_from_fields(const vd_request *r, const request_fields *f, vd_job *job, vd_reply *reply)
{
    static const char *const allowed[] = {"model", "prompt", "seconds", "size", "input_reference", "seed",
                                          "num_inference_steps", "guidance_scale", "guide_scale", "fps", "sampler",
                                          "eta", NULL};
    const vd_server_config *c = r->config;
    vd_server *srv = r->srv;
    if (vd_api_check_known(f->fields, allowed, reply)) return -1;

    const char *model = NULL, *prompt = NULL, *size = NULL, *sampler = NULL;
    if (vd_api_get_string(f->fields, "model", &model, reply) < 0) return -1;
    if (model && strcmp(model, srv->model_id) != 0) {
        vd_api_error(reply, 400, "model", "model_not_found", "The model '%.100s' does not exist; this server serves '%s'.",
                     model, srv->model_id);
        return -1;
    }
    int has_prompt = vd_api_get_string(f->fields, "prompt", &prompt, reply);
    if (has_prompt < 0) return -1;
    if (!has_prompt || !prompt[strspn(prompt, " \t\r\n")]) {
        vd_api_error(reply, 400, "prompt", "missing_required_parameter", "Missing required parameter: 'prompt'.");
        return -1;
    }
    size_t prompt_chars = utf8_length(prompt);
    if (strlen(prompt) != json_string_length(json_object_get(f->fields, "prompt"))) {
        vd_api_error(reply, 400, "prompt", "invalid_value", "'prompt' must not contain NUL characters.");
        return -1;
    }
    if (prompt_chars > (size_t)c->max_prompt_chars) {
        vd_api_error(reply, 400, "prompt", "string_above_max_length",
                     "Invalid 'prompt': at most %d characters (got %zu).", c->max_prompt_chars, prompt_chars);
        return -1;
    }

    long long fps = c->default_fps, steps = c->default_steps, seed = 0;
    double guidance, guide_scale, eta = c->default_eta;
    vd_models_default_scales(srv, c, &guidance, &guide_scale);
    if (vd_api_get_integer(f->fields, "fps", 1, VD_MP4_MAX_FPS, &fps, reply) < 0) return -1;
    if (vd_api_get_integer(f->fields, "num_inference_steps", 1, c->max_steps, &steps, reply) < 0) return -1;
    if (vd_api_get_number(f->fields, "guidance_scale", 0, 100, &guidance, reply) < 0) return -1;
    if (vd_api_get_number(f->fields, "guide_scale", 0, 100, &guide_scale, reply) < 0) return -1;
    if (guide_scale > 0 && !srv->has_guide) {
        vd_api_error(reply, 400, "guide_scale", "invalid_value", "The model '%s' has no guide; guide_scale must be 0.",
                     srv->model_id);
        return -1;
    }
    int has_eta = vd_api_get_number(f->fields, "eta", 0, 1, &eta, reply);
    if (has_eta < 0) return -1;
    int has_seed = vd_api_get_integer(f->fields, "seed", 0, INT64_MAX, &seed, reply);
    if (has_seed < 0) return -1;

    int frames = c->default_frames;
    if (field(f->fields, "seconds") && !json_is_string(field(f->fields, "seconds")) &&
        !json_is_number(field(f->fields, "seconds"))) {
        vd_api_error(reply, 400, "seconds", "invalid_type", "Invalid type for 'seconds': expected a string such as \"4\".");
        return -1;
    }
    double secs = 0;
    if (vd_api_get_number(f->fields, "seconds", 1e-9, 1e6, &secs, reply) < 0) return -1;
    if (field(f->fields, "seconds")) {
        double exact = secs * (double)fps;
        long long whole = llround(exact);
        if (fabs(exact - (double)whole) > 1e-6 || whole < 1 || whole > c->max_frames) {
            vd_api_error(reply, 400, "seconds", "invalid_value",
                         "Invalid 'seconds': seconds times fps (%lld) must be a whole number of frames from 1 to %d.",
                         fps, c->max_frames);
            return -1;
        }
        frames = (int)whole;
    }

    int width = c->default_width, height = c->default_height;
    if (vd_api_get_string(f->fields, "size", &size, reply) < 0) return -1;
    if (size) {
        char extra;
        int n = sscanf(size, "%d%*[xX]%d%c", &width, &height, &extra);
        int div = srv->limits.latent_div;
        if (n != 2 || !isdigit((unsigned char)size[0]) || strchr(size, ' ') || strchr(size, '+') || strchr(size, '-')) {
            vd_api_error(reply, 400, "size", "invalid_value", "Invalid 'size': expected WIDTHxHEIGHT such as \"%dx%d\".",
                         c->default_width, c->default_height);
            return -1;
        }
        if (width < div || height < div || width % div || height % div || width > c->max_width ||
            height > c->max_height) {
            vd_api_error(reply, 400, "size", "invalid_value",
                         "Invalid 'size' %dx%d: width and height must be multiples of %d, at most %dx%d.", width,
                         height, div, c->max_width, c->max_height);
            return -1;
        }
    }

    int sampler_kind = strcmp(c->default_sampler, "euler") == 0 ? VD_SAMPLER_EULER : VD_SAMPLER_DDIM;
    if (vd_api_get_string(f->fields, "sampler", &sampler, reply) < 0) return -1;
    if (sampler) {
        if (strcmp(sampler, "ddim") == 0) sampler_kind = VD_SAMPLER_DDIM;
        else if (strcmp(sampler, "euler") == 0) sampler_kind = VD_SAMPLER_EULER;
        else {
            vd_api_error(reply, 400, "sampler", "invalid_value", "Invalid 'sampler': expected \"ddim\" or \"euler\".");
            return -1;
        }
    }
    if (sampler_kind == VD_SAMPLER_EULER) { /* Euler adds no fresh noise */
        if (has_eta && eta > 0) {
            vd_api_error(reply, 400, "eta", "invalid_value", "'eta' applies to the \"ddim\" sampler; with \"euler\" it must be 0.");
            return -1;
        }
        eta = 0;
    }

    if (!has_seed) {
        uint64_t drawn;
        if (getrandom(&drawn, sizeof drawn, 0) != (ssize_t)sizeof drawn) drawn = (uint64_t)time(NULL) * 2654435761u;
        seed = (long long)(drawn % DRAWN_SEED_LIMIT);
    }

    memset(job, 0, sizeof *job);
    vd_job_new_id(job->id);
    snprintf(job->model, sizeof job->model, "%s", srv->model_id);
    job->status = VD_JOB_QUEUED;
    job->created_at = (int64_t)time(NULL);
    job->prompt = strdup(prompt);
    job->width = width;
    job->height = height;
    job->frames = frames;
    job->fps = (int)fps;
    job->steps = (int)steps;
    job->guidance = (float)guidance;
    job->guide_scale = (float)guide_scale;
    job->sampler = sampler_kind;
    job->eta = (float)eta;
    job->seed = (uint64_t)seed;
    char unknown[UNKNOWN_WORDS_LEN];
    unknown[0] = 0;
    vd_unknown_words(srv->engine, prompt, unknown, sizeof unknown);
    job->unknown_words = strdup(unknown);
    snprintf(job->key_id, sizeof job->key_id, "%s", r->key_id);

    if (field(f->fields, "input_reference")) {
        if (store_input_image(r, f, job->id, width, height, reply)) {
            vd_job_clear(job);
            return -1;
        }
        job->has_image = 1;
    }
    return 0;
}

/* POST: Idempotency-Key checked, the draining and readiness gate. 0 when the request may go on. */
static int admit_post(const vd_request *r, const char **idempotency_key, vd_reply *reply)
{
    if (r->srv->draining || !r->srv->ready) {
        vd_api_error(reply, 503, NULL, r->srv->draining ? "shutting_down" : "not_ready",
                     r->srv->draining ? "The server is shutting down and accepts no new videos."
                                      : "The server is not ready yet.");
        return -1;
    }
    *idempotency_key = vd_request_header(r, "Idempotency-Key");
    if (*idempotency_key && (!**idempotency_key || strlen(*idempotency_key) > MAX_IDEMPOTENCY_KEY)) {
        vd_api_error(reply, 400, "Idempotency-Key", "invalid_value", "Idempotency-Key must be 1 to %d characters.",
                     MAX_IDEMPOTENCY_KEY);
        return -1;
    }
    return 0;
}

/* Stores and queues a validated job; replies with the video object (or the job an earlier
 * request with the same Idempotency-Key made). Takes the job's strings. */
static void submit_job(const vd_request *r, vd_job *job, const char *idempotency_key, vd_reply *reply)
{
    vd_server *srv = r->srv;
    char err[256], existing[VD_JOB_ID_LEN];
    if (idempotency_key) job->idempotency_key = strdup(idempotency_key);

    pthread_mutex_lock(&create_lock);
    int rc = vd_store_insert(srv->store, job, existing, err, sizeof err);
    if (rc == 2) { /* the same key made a job before: answer with it */
        pthread_mutex_unlock(&create_lock);
        char path[4096];
        vd_store_path(srv->store, job->id, "input.png", path, sizeof path);
        if (job->has_image) unlink(path);
        vd_job_clear(job);
        vd_job earlier;
        if (vd_store_get(srv->store, existing, &earlier, err, sizeof err) != 0) {
            vd_api_internal_error(reply, "reading the job of an Idempotency-Key", err);
            return;
        }
        vd_api_reply_json(reply, 200, video_object(srv, &earlier));
        vd_job_clear(&earlier);
        return;
    }
    if (rc != 0) {
        pthread_mutex_unlock(&create_lock);
        if (job->has_image) {
            char path[4096];
            vd_store_path(srv->store, job->id, "input.png", path, sizeof path);
            unlink(path);
        }
        vd_job_clear(job);
        vd_api_internal_error(reply, "storing the job", err);
        return;
    }
    int refused = 0;
    if (job->key_id[0] && vd_scheduler_jobs_of_key(srv->scheduler, job->key_id) >= r->config->max_jobs_per_key) {
        refused = 1;
        vd_api_error(reply, 429, NULL, "too_many_jobs",
                     "This API key already has %d unfinished videos; wait for one to finish.", r->config->max_jobs_per_key);
    } else if (vd_scheduler_submit(srv->scheduler, job) != 0) {
        refused = 1;
        vd_api_error(reply, 429, NULL, "queue_full", "The queue is full; try again later.");
    }
    if (refused) {
        reply->retry_after = RETRY_AFTER_SECONDS;
        if (vd_store_delete(srv->store, job->id, err, sizeof err) < 0)
            VD_LOG(VD_LOG_ERROR, "removing refused job %s: %s", job->id, err);
    }
    pthread_mutex_unlock(&create_lock);
    if (!refused) {
        VD_LOG(VD_LOG_INFO, "queued %s: %dx%d, %d frames, %d steps, seed %llu%s", job->id, job->width, job->height,
               job->frames, job->steps, (unsigned long long)job->seed, job->has_image ? ", with an input image" : "");
        vd_api_reply_json(reply, 200, video_object(srv, job));
    }
    vd_job_clear(job);
}

void vd_api_create_video(const vd_request *r, vd_reply *reply)
{
    const char *idempotency_key;
    if (admit_post(r, &idempotency_key, reply)) return;
    request_fields f;
    if (parse_body(r, &f, reply)) return;
    vd_job job;
    pthread_rwlock_rdlock(&r->srv->model_lock); /* the active model's id, limits and tokenizer */
    int valid = job_from_fields(r, &f, &job, reply) == 0;
    pthread_rwlock_unlock(&r->srv->model_lock);
    if (valid) submit_job(r, &job, idempotency_key, reply);
    json_decref(f.fields);
}

/* Copies a file (the source's input image for a remix); a failure is logged. */
static int copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    if (!in) {
        VD_LOG(VD_LOG_WARN, "cannot read %s: %s", from, strerror(errno));
        return -1;
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.part", to);
    FILE *out = fopen(tmp, "wb");
    int ok = out != NULL;
    char buf[65536];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, out) == n;
    ok = ok && !ferror(in);
    fclose(in);
    if (out) ok = fclose(out) == 0 && ok;
    if (!ok || rename(tmp, to) != 0) {
        VD_LOG(VD_LOG_WARN, "cannot copy %s to %s: %s", from, to, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

void vd_api_remix_video(const vd_request *r, vd_reply *reply)
{
    static const char *const allowed[] = {"prompt", "model", NULL};
    const char *idempotency_key, *prompt = NULL, *model = NULL;
    if (admit_post(r, &idempotency_key, reply)) return;
    vd_job source;
    if (find_job(r, &source, reply)) return;
    request_fields f;
    if (parse_body(r, &f, reply)) {
        vd_job_clear(&source);
        return;
    }
    vd_job job;
    memset(&job, 0, sizeof job);
    int ok = vd_api_check_known(f.fields, allowed, reply) == 0 && vd_api_get_string(f.fields, "prompt", &prompt, reply) >= 0 &&
             vd_api_get_string(f.fields, "model", &model, reply) >= 0;
    if (ok && model && strcmp(model, source.model) != 0) {
        vd_api_error(reply, 400, "model", "invalid_value", "A remix uses the model of its source video ('%s').", source.model);
        ok = 0;
    }
    if (ok && (!prompt || !prompt[strspn(prompt, " \t\r\n")])) {
        vd_api_error(reply, 400, "prompt", "missing_required_parameter", "Missing required parameter: 'prompt'.");
        ok = 0;
    }
    if (ok && (utf8_length(prompt) > (size_t)r->config->max_prompt_chars ||
               strlen(prompt) != json_string_length(json_object_get(f.fields, "prompt")))) {
        vd_api_error(reply, 400, "prompt", "invalid_value", "Invalid 'prompt': at most %d characters, no NUL.",
                     r->config->max_prompt_chars);
        ok = 0;
    }
    if (ok && source.guide_scale > 0) { /* the model served now may have no guide to move away from */
        char model_id[sizeof r->srv->model_id];
        pthread_rwlock_rdlock(&r->srv->model_lock);
        int has_guide = r->srv->has_guide;
        memcpy(model_id, r->srv->model_id, sizeof model_id);
        pthread_rwlock_unlock(&r->srv->model_lock);
        if (!has_guide) {
            vd_api_error(reply, 400, "guide_scale", "invalid_value",
                         "The model '%s' has no guide, and video '%s' was made with guide_scale %g.", model_id, source.id,
                         (double)source.guide_scale);
            ok = 0;
        }
    }
    if (ok) {
        job = source; /* same size, frames, fps, steps, guidance, guide scale, sampler, eta, seed and image */
        job.prompt = job.unknown_words = job.error_message = job.idempotency_key = NULL;
        vd_job_new_id(job.id);
        job.status = VD_JOB_QUEUED;
        job.progress = 0;
        job.created_at = (int64_t)time(NULL);
        job.started_at = job.completed_at = job.expires_at = 0;
        job.error_code[0] = 0;
        job.attempts = 0;
        snprintf(job.remixed_from, sizeof job.remixed_from, "%s", source.id);
        snprintf(job.key_id, sizeof job.key_id, "%s", r->key_id);
        job.prompt = strdup(prompt);
        char unknown[UNKNOWN_WORDS_LEN];
        unknown[0] = 0;
        pthread_rwlock_rdlock(&r->srv->model_lock);
        vd_unknown_words(r->srv->engine, prompt, unknown, sizeof unknown);
        pthread_rwlock_unlock(&r->srv->model_lock);
        job.unknown_words = strdup(unknown);
        if (job.has_image) {
            char from[4096], to[4096];
            vd_store_path(r->srv->store, source.id, "input.png", from, sizeof from);
            vd_store_path(r->srv->store, job.id, "input.png", to, sizeof to);
            if (copy_file(from, to)) {
                vd_api_error(reply, 409, "video_id", "source_unavailable",
                             "The input image of video '%s' is no longer available.", source.id);
                vd_job_clear(&job);
                ok = 0;
            }
        }
    }
    if (ok) submit_job(r, &job, idempotency_key, reply);
    json_decref(f.fields);
    vd_job_clear(&source);
}

/* ---- reading and deleting videos ---- */

void vd_api_get_video(const vd_request *r, vd_reply *reply)
{
    vd_job job;
    if (find_job(r, &job, reply)) return;
    vd_api_reply_json(reply, 200, video_object(r->srv, &job));
    vd_job_clear(&job);
}

void vd_api_list_videos(const vd_request *r, vd_reply *reply)
{
    const char *limit_text = vd_request_query(r, "limit"), *order = vd_request_query(r, "order");
    const char *after = vd_request_query(r, "after");
    long limit = LIST_DEFAULT_LIMIT;
    if (limit_text) {
        char *end;
        limit = strtol(limit_text, &end, 10);
        if (!*limit_text || *end || limit < 1 || limit > LIST_MAX_LIMIT) {
            vd_api_error(reply, 400, "limit", "invalid_value", "Invalid 'limit': must be an integer from 1 to %d.",
                         LIST_MAX_LIMIT);
            return;
        }
    }
    if (order && strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0) {
        vd_api_error(reply, 400, "order", "invalid_value", "Invalid 'order': expected \"asc\" or \"desc\".");
        return;
    }
    if (after && !*after) after = NULL;
    vd_job *jobs = NULL;
    int count = 0, has_more = 0;
    char err[256];
    int rc = vd_store_list(r->srv->store, (int)limit, after, order && strcmp(order, "asc") == 0, &jobs, &count,
                           &has_more, err, sizeof err);
    if (rc == 1) {
        vd_api_error(reply, 400, "after", "invalid_value", "Invalid 'after': no video with id '%.80s'.", after);
        return;
    }
    if (rc != 0) {
        vd_api_internal_error(reply, "listing jobs", err);
        return;
    }
    json_t *data = json_array();
    for (int i = 0; i < count; i++) {
        json_array_append_new(data, video_object(r->srv, &jobs[i]));
    }
    json_t *list = json_pack("{s:s, s:o, s:o, s:o, s:b}", "object", "list", "data", data, "first_id",
                             count ? json_string(jobs[0].id) : json_null(), "last_id",
                             count ? json_string(jobs[count - 1].id) : json_null(), "has_more", has_more);
    for (int i = 0; i < count; i++) vd_job_clear(&jobs[i]);
    free(jobs);
    vd_api_reply_json(reply, 200, list);
}

void vd_api_delete_video(const vd_request *r, vd_reply *reply)
{
    vd_job job;
    if (find_job(r, &job, reply)) return;
    int unfinished = job.status == VD_JOB_QUEUED || job.status == VD_JOB_IN_PROGRESS;
    vd_job_clear(&job);
    /* an unfinished job is cancelled (it stays, as cancelled); a finished one goes with its files */
    if (!unfinished || vd_scheduler_cancel(r->srv->scheduler, r->id) != 0) {
        char err[256];
        int rc = vd_store_delete(r->srv->store, r->id, err, sizeof err);
        if (rc == 1) {
            vd_api_error(reply, 404, "video_id", "not_found", "No video with id '%.80s'.", r->id);
            return;
        }
        if (rc != 0) {
            vd_api_internal_error(reply, "deleting the job", err);
            return;
        }
        VD_LOG(VD_LOG_INFO, "deleted %s", r->id);
    } else {
        VD_LOG(VD_LOG_INFO, "cancelled %s", r->id);
    }
    vd_api_reply_json(reply, 200, json_pack("{s:s, s:s, s:b}", "id", r->id, "object", "video.deleted", "deleted", 1));
}

void vd_api_video_content(const vd_request *r, vd_reply *reply)
{
    const char *variant = vd_request_query(r, "variant");
    const char *kind = "mp4", *content_type = "video/mp4";
    if (variant && strcmp(variant, "thumbnail") == 0) {
        kind = "png";
        content_type = "image/png";
    } else if (variant && strcmp(variant, "video") != 0) {
        vd_api_error(reply, 400, "variant", "invalid_value", "Invalid 'variant': expected \"video\" or \"thumbnail\".");
        return;
    }
    vd_job job;
    if (find_job(r, &job, reply)) return;
    vd_job_status status = job.status;
    vd_job_clear(&job);
    if (status != VD_JOB_COMPLETED) {
        vd_api_error(reply, 409, "video_id", "video_not_ready", "Video '%.80s' is %s; its content exists once it is completed.",
                     r->id, vd_job_status_name(status));
        return;
    }
    reply->kind = VD_REPLY_FILE;
    reply->status = 200;
    reply->content_type = content_type;
    vd_store_path(r->srv->store, r->id, kind, reply->path, sizeof reply->path);
}

void vd_api_reply_events(vd_reply *reply, const char *id)
{
    reply->kind = VD_REPLY_EVENTS;
    reply->status = 200;
    reply->content_type = "text/event-stream";
    snprintf(reply->job_id, sizeof reply->job_id, "%.*s", (int)sizeof reply->job_id - 1, id);
}

void vd_api_video_events(const vd_request *r, vd_reply *reply)
{
    vd_job job;
    if (find_job(r, &job, reply)) return;
    vd_job_clear(&job);
    vd_api_reply_events(reply, r->id);
}

char *vd_api_state_event(vd_server *srv, const char *id, int *finished)
{
    if (strncmp(id, "video_", 6) != 0) return vd_api_run_state_event(srv, id, finished);
    vd_job job;
    char err[256];
    if (vd_store_get(srv->store, id, &job, err, sizeof err) != 0) return NULL;
    *finished = job.status == VD_JOB_COMPLETED || job.status == VD_JOB_FAILED || job.status == VD_JOB_CANCELLED;
    json_t *video = video_object(srv, &job);
    char *data = json_dumps(video, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(video);
    char *text = NULL;
    if (data && asprintf(&text, "event: %s\ndata: %s\n\n", vd_job_status_name(job.status), data) < 0) text = NULL;
    free(data);
    vd_job_clear(&job);
    return text;
}

/* ---- models ---- */

/* The active model with its limits and vocabulary (model_lock read-locked). */
static json_t *active_model_object(const vd_request *r)
{
    const vd_server *srv = r->srv;
    const vd_server_config *c = r->config;
    json_t *vocabulary = json_array();
    for (int i = 2; i < srv->vocab_size; i++) /* 0 and 1 are <pad> and <unk> */
        if (srv->vocab[i]) json_array_append_new(vocabulary, json_string(srv->vocab[i]));
    char default_size[32];
    snprintf(default_size, sizeof default_size, "%dx%d", c->default_width, c->default_height);
    double guidance, guide_scale;
    vd_models_default_scales(srv, c, &guidance, &guide_scale);
    json_t *limits = json_pack(
        "{s:i, s:i, s:i, s:i, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:[s,s], s:s, s:f, s:i}",
        "image_size", srv->limits.image_size, "size_multiple_of", srv->limits.latent_div, "max_width", c->max_width,
        "max_height", c->max_height, "default_size", default_size, "min_frames", 1, "max_frames", c->max_frames,
        "default_frames", c->default_frames, "trained_frames", srv->limits.default_frames, "min_steps", 1,
        "max_steps", c->max_steps, "default_steps", c->default_steps, "default_fps", c->default_fps, "max_fps",
        VD_MP4_MAX_FPS, "default_guidance_scale", guidance, "default_guide_scale", guide_scale, "samplers", "ddim",
        "euler", "default_sampler", c->default_sampler, "default_eta", c->default_eta, "max_prompt_tokens", srv->limits.max_tokens);
    return json_pack("{s:s, s:s, s:I, s:s, s:b, s:b, s:o, s:o}", "id", srv->model_id, "object", "model", "created",
                     (json_int_t)srv->model_created, "owned_by", "vdmini", "active", 1, "guide", srv->has_guide,
                     "limits", limits, "vocabulary", vocabulary);
}

/* A registered model: the active one in full, another by its id and origin (model_lock read-locked). */
static json_t *registered_model_object(const vd_request *r, const vd_model_entry *m)
{
    if (strcmp(m->id, r->srv->model_id) == 0) return active_model_object(r);
    return json_pack("{s:s, s:s, s:I, s:s, s:b}", "id", m->id, "object", "model", "created", (json_int_t)m->created_at,
                     "owned_by", "vdmini", "active", 0);
}

int vd_api_read_registry(const vd_request *r, vd_reply *reply, vd_model_entry **models, int *count)
{
    char err[256];
    if (vd_store_model_list(r->srv->store, models, count, err, sizeof err) == 0) return 0;
    vd_api_internal_error(reply, "reading the model registry", err);
    return -1;
}

void vd_api_list_models(const vd_request *r, vd_reply *reply)
{
    vd_model_entry *models;
    int count;
    if (vd_api_read_registry(r, reply, &models, &count)) return;
    json_t *data = json_array();
    pthread_rwlock_rdlock(&r->srv->model_lock);
    for (int i = 0; i < count; i++) json_array_append_new(data, registered_model_object(r, &models[i]));
    pthread_rwlock_unlock(&r->srv->model_lock);
    free(models);
    vd_api_reply_json(reply, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

void vd_api_get_model(const vd_request *r, vd_reply *reply)
{
    vd_model_entry m;
    char err[256];
    int rc = vd_store_model_get(r->srv->store, r->id, &m, err, sizeof err);
    if (rc == 1) {
        vd_api_error(reply, 404, "model", "model_not_found", "The model '%.100s' does not exist.", r->id);
        return;
    }
    if (rc) {
        vd_api_internal_error(reply, "reading the model registry", err);
        return;
    }
    pthread_rwlock_rdlock(&r->srv->model_lock);
    json_t *o = registered_model_object(r, &m);
    pthread_rwlock_unlock(&r->srv->model_lock);
    vd_api_reply_json(reply, 200, o);
}

/* ---- health, readiness, metrics, admin ---- */

void vd_api_healthz(const vd_request *r, vd_reply *reply)
{
    (void)r;
    vd_api_reply_json(reply, 200, json_pack("{s:s}", "status", "ok"));
}

void vd_api_readyz(const vd_request *r, vd_reply *reply)
{
    vd_server *srv = r->srv;
    int queued = 0, running = 0;
    if (srv->scheduler) vd_scheduler_counts(srv->scheduler, &queued, &running);
    const char *status = !srv->ready ? "loading" : srv->draining ? "draining"
                                                : queued >= r->config->max_queue ? "queue_full" : "ready";
    vd_api_reply_json(reply, strcmp(status, "ready") == 0 ? 200 : 503,
               json_pack("{s:s, s:i, s:i, s:i}", "status", status, "queued", queued, "running", running, "max_queue",
                         r->config->max_queue));
}

void vd_api_metrics(const vd_request *r, vd_reply *reply)
{
    vd_server *srv = r->srv;
    if (srv->scheduler) {
        int queued, running;
        vd_scheduler_counts(srv->scheduler, &queued, &running);
        vd_metrics_queue(srv->metrics, queued, running);
    }
    reply->kind = VD_REPLY_BUFFER;
    reply->status = 200;
    reply->content_type = "text/plain; version=0.0.4; charset=utf-8";
    reply->body = vd_metrics_render(srv->metrics);
    reply->body_len = reply->body ? strlen(reply->body) : 0;
}

void vd_api_admin_status(const vd_request *r, vd_reply *reply)
{
    vd_server *srv = r->srv;
    const vd_server_config *c = r->config;
    int queued = 0, running = 0;
    if (srv->scheduler) vd_scheduler_counts(srv->scheduler, &queued, &running);
    char serving[128] = "";
    int switching = 0;
    if (srv->scheduler) vd_scheduler_model(srv->scheduler, serving, &switching);
    pthread_rwlock_rdlock(&srv->model_lock);
    json_t *status =
        json_pack("{s:s, s:s, s:b, s:s, s:b, s:b, s:i, s:i, s:i, s:i, s:i, s:s, s:i, s:i}", "model", srv->model_id,
                  "serving_model", serving, "switching_model", switching, "device",
                  srv->engine ? vd_engine_device_name(srv->engine) : "none", "ready", srv->ready, "draining",
                  srv->draining, "queued", queued, "running", running, "max_queue", c->max_queue, "max_batch",
                  c->max_batch, "max_jobs_per_key", c->max_jobs_per_key, "data_dir", c->data_dir, "api_keys",
                  c->api_key_count, "admin_keys", c->admin_key_count);
    pthread_rwlock_unlock(&srv->model_lock);
    vd_engine_gauges g;
    vd_metrics_engine(srv->metrics, &g);
    json_object_set_new(status, "gpu_memory_used_bytes", json_integer((json_int_t)g.gpu_used));
    json_object_set_new(status, "gpu_memory_total_bytes", json_integer((json_int_t)g.gpu_total));
    json_object_set_new(status, "recorded_forwards", json_integer(g.recordings));
    json_object_set_new(status, "recorded_forwards_bytes", json_integer((json_int_t)g.recording_bytes));
    vd_api_reply_json(reply, 200, status);
}
