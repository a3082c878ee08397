/* config.c: the server's options as one declarative table (name, type, place in
 * vd_server_config, bounds, default, help). The table alone drives the defaults, the YAML loader,
 * the command-line overrides, the checks and the documented default file, so an option is added
 * in one place. YAML errors read "FILE:LINE: OPTION: reason"; override errors "OPTION: reason". */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

#include "common.h"

typedef enum {
    OPT_STRING, /* char *; min and max bound its length */
    OPT_INT,    /* int */
    OPT_SIZE,   /* size_t byte count; accepts the suffixes below */
    OPT_COUNT,  /* int64_t count; accepts the suffixes below */
    OPT_DOUBLE, /* double */
    OPT_BOOL,   /* int 0 or 1 */
    OPT_LIST    /* char ** with an int count; min and max bound each item's length */
} option_type;

typedef struct {
    const char *name;
    option_type type;
    size_t offset;       /* of the value in vd_server_config */
    size_t count_offset; /* OPT_LIST: of its int count */
    double min, max;
    const char *choices; /* "a|b|c" when only these strings are allowed, else NULL */
    const char *default_text;
    const char *help;
    const char *section; /* a heading written before this option in the default file */
} option;

#define KIB 1024.0
#define MIB (1024.0 * 1024.0)
#define GIB (1024.0 * 1024.0 * 1024.0)
#define FIELD(f) offsetof(vd_server_config, f)
#define STRING(f, lo, ch, def, help) {#f, OPT_STRING, FIELD(f), 0, lo, 4096, ch, def, help, NULL}
#define INT(f, lo, hi, def, help) {#f, OPT_INT, FIELD(f), 0, lo, hi, NULL, def, help, NULL}
#define LIST(f, count, def, help) {#f, OPT_LIST, FIELD(f), FIELD(count), 1, 256, NULL, def, help, NULL}

static const option options[] = {
    {"listen", OPT_STRING, FIELD(listen), 0, 1, 4096, NULL, "127.0.0.1:8080",
     "Address to serve HTTP on: HOST:PORT, or [ADDR]:PORT for IPv6; a non-loopback host needs api_keys",
     "Where and what"},
    STRING(data_dir, 1, NULL, "data", "Directory of the jobs database (jobs.db) and the videos"),
    STRING(model, 1, NULL, "models/vdmini.safetensors", "The model file served (default: the shipped VDMini student)"),
    STRING(ae, 0, NULL, "", "Autoencoder file for a model that has none (\"\": beside the model)"),
    STRING(guide, 0, NULL, "",
           "Guide of the configured model, a weaker model that sampling moves away from (docs/models.md, \"Guided by an "
           "earlier stage\"): a file, \"none\", or \"\" for the model's own beside it (the model's name with -guide, "
           "e.g. teacher-guide.safetensors) when there is one"),
    {"extra_models", OPT_LIST, FIELD(extra_models), FIELD(extra_model_count), 1, 4096, NULL,
     "models/teacher.safetensors",
     "Other model files registered at start, for the admin API's activate (id: the file name)",
     NULL},
    STRING(device, 1, "auto|cpu|cuda", "auto", "Where the model runs"),
    {"bf16", OPT_BOOL, FIELD(bf16), 0, 0, 1, NULL, "false", "Use bf16 matrix products on the GPU",
     NULL},
    {"record_forwards", OPT_BOOL, FIELD(record_forwards), 0, 0, 1, NULL, "true",
     "Replay recorded UNet forwards on the GPU (CUDA graphs; README, \"The server\"): false runs every op as "
     "it is called", NULL},
    STRING(web_dir, 1, NULL, "web", "Static files served at /"),
    INT(http_threads, 1, 256, "4", "Threads answering HTTP requests"),
    STRING(log_level, 1, "debug|info|warn|error", "info", "Least severe message logged"),

    {"api_keys", OPT_LIST, FIELD(api_keys), FIELD(api_key_count), 1, 256, NULL, "",
     "Bearer keys accepted on /v1 (none: the server listens on loopback only)", "Security"},
    LIST(admin_keys, admin_key_count, "", "Bearer keys accepted on the /admin routes (separate from api_keys)"),

    {"max_body_bytes", OPT_SIZE, FIELD(max_body_bytes), 0, KIB, GIB, NULL, "16MiB",
     "Largest request body", "Limits on requests"},
    INT(max_prompt_chars, 1, 100000, "1000", "Longest prompt, in characters"),
    {"max_image_bytes", OPT_SIZE, FIELD(max_image_bytes), 0, KIB, GIB, NULL, "10MiB",
     "Largest uploaded image file", NULL},
    INT(max_image_side, 16, 65536, "4096", "Longest side of an uploaded image, in pixels"),
    {"max_image_pixels", OPT_COUNT, FIELD(max_image_pixels), 0, 256, 1024 * MIB, NULL, "16M",
     "Most pixels in an uploaded image (width times height)", NULL},
    INT(max_frames, 1, 1024, "64", "Most frames in a video"),
    INT(max_width, 8, 4096, "512", "Widest video, in pixels"),
    INT(max_height, 8, 4096, "512", "Tallest video, in pixels"),
    INT(max_steps, 1, 1000, "100", "Most sampling steps"),
    INT(max_queue, 1, 1000000, "64", "Most jobs waiting to run; more are refused"),
    INT(max_jobs_per_key, 1, 1000000, "8", "Most unfinished jobs one API key may have"),

    {"default_frames", OPT_INT, FIELD(default_frames), 0, 1, 1024, NULL, "16",
     "Frames when a request gives none", "Request defaults"},
    INT(default_steps, 1, 1000, "25", "Sampling steps when a request gives none"),
    INT(default_fps, 1, 120, "8", "Frames per second of the MP4 when a request gives none"),
    INT(default_width, 8, 4096, "128", "Width when a request gives none"),
    INT(default_height, 8, 4096, "128", "Height when a request gives none"),
    {"default_guidance", OPT_DOUBLE, FIELD(default_guidance), 0, 0, 100, NULL, "4",
     "Classifier-free guidance scale when a request gives none, for a model without a guide or a guidance of its own",
     NULL},
    {"default_guide_scale", OPT_DOUBLE, FIELD(default_guide_scale), 0, 0, 100, NULL, "2",
     "Guide scale when a request gives none, for a model with a guide", NULL},
    {"default_guided_guidance", OPT_DOUBLE, FIELD(default_guided_guidance), 0, 0, 100, NULL, "2",
     "Classifier-free guidance scale when a request gives none, for a model with a guide", NULL},
    {"default_eta", OPT_DOUBLE, FIELD(default_eta), 0, 0, 1, NULL, "1",
     "DDIM's eta (0 to 1: the share of fresh noise each step; 0 is deterministic DDIM) when a request gives none",
     NULL},
    STRING(default_sampler, 1, "ddim|euler", "ddim", "Sampler when a request gives none"),

    {"max_batch", OPT_INT, FIELD(max_batch), 0, 1, 256, NULL, "8",
     "Most videos denoised together in one batch", "Scheduling and retention"},
    INT(max_queue_wait_ms, 0, 60000, "50", "Milliseconds a new job may wait for others to batch with"),
    INT(retention_seconds, 60, 315360000, "86400",
        "Seconds finished videos stay downloadable before they are removed"),

    {"admin_yield_seconds", OPT_INT, FIELD(admin_yield_seconds), 0, 0, 86400, NULL, "30",
     "Longest wait, in seconds, of an admin run's step while videos are queued or being denoised (0: none)",
     "Admin runs (block-importance analyses and distillations)"},
    STRING(admin_cpu_priority, 1, "idle|low|normal", "idle",
           "CPU priority of the admin run's threads: idle (only cores serving leaves free), low (niceness 10) or "
           "normal (as serving)"),
};

/* ---- values ---- */

static void *field(vd_server_config *c, size_t offset) { return (char *)c + offset; }
static const void *cfield(const vd_server_config *c, size_t offset) { return (const char *)c + offset; }

static const option *find_option(const char *name)
{
    for (size_t i = 0; i < VD_ARRAY_LEN(options); i++)
        if (strcmp(options[i].name, name) == 0) return &options[i];
    return NULL;
}

static void free_list(char **items, int count)
{
    for (int i = 0; i < count; i++) free(items[i]);
    free(items);
}

static int in_choices(const char *choices, const char *value)
{
    size_t n = strlen(value);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, value, n) == 0) return 1;
        p += len + (bar ? 1 : 0);
    }
    return 0;
}

/* A whole number with an optional multiplier suffix: k, M, G (or KiB, MiB, GiB) are powers of
 * 1024; kB, MB, GB are powers of 1000; a trailing B alone means bytes. */
static int parse_quantity(const char *text, int allow_suffix, double *out)
{
    static const struct { const char *suffix; double scale; } suffixes[] = {
        {"", 1},         {"B", 1},         {"k", KIB},        {"K", KIB},  {"Ki", KIB},
        {"KiB", KIB},    {"M", MIB},       {"Mi", MIB},       {"MiB", MIB}, {"G", GIB},
        {"Gi", GIB},     {"GiB", GIB},     {"kB", 1e3},       {"KB", 1e3}, {"MB", 1e6},
        {"GB", 1e9},
    };
    char *end;
    errno = 0;
    long long whole = strtoll(text, &end, 10);
    if (end == text || errno == ERANGE) return -1;
    for (size_t i = 0; i < VD_ARRAY_LEN(suffixes); i++) {
        if (i > 0 && !allow_suffix) break;
        if (strcmp(end, suffixes[i].suffix) == 0) {
            *out = (double)whole * suffixes[i].scale;
            return 0;
        }
    }
    return -1;
}

static int parse_bool(const char *text, int *out)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(text, yes[i]) == 0) return *out = 1, 0;
        if (strcasecmp(text, no[i]) == 0) return *out = 0, 0;
    }
    return -1;
}

/* A bound as the option's values are written: byte sizes and counts with a binary suffix. */
static void format_bound(const option *o, double value, char *buf, size_t buflen)
{
    static const struct { double scale; const char *suffix; } units[] = {{GIB, "G"}, {MIB, "M"}, {KIB, "k"}};
    if (o->type == OPT_SIZE || o->type == OPT_COUNT)
        for (size_t i = 0; i < VD_ARRAY_LEN(units); i++)
            if (value >= units[i].scale && fmod(value, units[i].scale) == 0) {
                snprintf(buf, buflen, "%.15g%s", value / units[i].scale, units[i].suffix);
                return;
            }
    snprintf(buf, buflen, "%.15g", value);
}

static int check_string(const option *o, const char *value, char *err, size_t errlen)
{
    size_t len = strlen(value);
    if (len < (size_t)o->min) return vd_fail(err, errlen, "must not be empty");
    if (len > (size_t)o->max) return vd_fail(err, errlen, "longer than %.0f characters", o->max);
    if (o->choices && !in_choices(o->choices, value))
        return vd_fail(err, errlen, "'%s' is not one of %s", value, o->choices);
    return 0;
}

/* Parses text as the option's value and stores it; c is unchanged on error, and err then holds
 * the reason alone (the caller adds where). */
static int set_scalar(vd_server_config *c, const option *o, const char *text, char *err, size_t errlen)
{
    double number = 0;
    switch (o->type) {
    case OPT_STRING: {
        if (check_string(o, text, err, errlen) != 0) return -1;
        char **slot = field(c, o->offset);
        free(*slot);
        *slot = strdup(text);
        return 0;
    }
    case OPT_BOOL: {
        int value;
        if (parse_bool(text, &value) != 0) return vd_fail(err, errlen, "'%s' is not true or false", text);
        *(int *)field(c, o->offset) = value;
        return 0;
    }
    case OPT_DOUBLE: {
        char *end;
        number = strtod(text, &end);
        if (end == text || *end || !isfinite(number)) return vd_fail(err, errlen, "'%s' is not a number", text);
        break;
    }
    case OPT_INT:
        if (parse_quantity(text, 0, &number) != 0) return vd_fail(err, errlen, "'%s' is not a whole number", text);
        break;
    case OPT_SIZE:
    case OPT_COUNT:
        if (parse_quantity(text, 1, &number) != 0)
            return vd_fail(err, errlen, "'%s' is not a whole number (suffixes: k, M, G, kB, MB, GB)", text);
        break;
    case OPT_LIST: {
        /* from text: comma separated items, "" for none */
        char **items = NULL;
        int count = 0;
        char *copy = strdup(text), *save = NULL;
        for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
            if (check_string(o, item, err, errlen) != 0) {
                free(copy);
                free_list(items, count);
                return -1;
            }
            items = vd_realloc(items, (size_t)(count + 1) * sizeof *items);
            items[count++] = strdup(item);
        }
        free(copy);
        char ***slot = field(c, o->offset);
        int *slot_count = field(c, o->count_offset);
        free_list(*slot, *slot_count);
        *slot = items;
        *slot_count = count;
        return 0;
    }
    }
    if (number < o->min || number > o->max) {
        char lo[32], hi[32];
        format_bound(o, o->min, lo, sizeof lo);
        format_bound(o, o->max, hi, sizeof hi);
        return vd_fail(err, errlen, "%s is out of bounds (%s to %s)", text, lo, hi);
    }
    if (o->type == OPT_INT) *(int *)field(c, o->offset) = (int)number;
    else if (o->type == OPT_SIZE) *(size_t *)field(c, o->offset) = (size_t)number;
    else if (o->type == OPT_COUNT) *(int64_t *)field(c, o->offset) = (int64_t)number;
    else *(double *)field(c, o->offset) = number;
    return 0;
}

/* ---- the public operations ---- */

void vd_server_config_defaults(vd_server_config *c)
{
    memset(c, 0, sizeof *c);
    char err[256];
    for (size_t i = 0; i < VD_ARRAY_LEN(options); i++) {
        if (set_scalar(c, &options[i], options[i].default_text, err, sizeof err) != 0) {
            VD_LOG(VD_LOG_ERROR, "config table: %s: default: %s", options[i].name, err);
            abort();
        }
    }
}

void vd_server_config_free(vd_server_config *c)
{
    for (size_t i = 0; i < VD_ARRAY_LEN(options); i++) {
        const option *o = &options[i];
        if (o->type == OPT_STRING) free(*(char **)field(c, o->offset));
        if (o->type == OPT_LIST) free_list(*(char ***)field(c, o->offset), *(int *)field(c, o->count_offset));
    }
    memset(c, 0, sizeof *c);
}

void vd_server_config_copy(vd_server_config *dst, const vd_server_config *src)
{
    *dst = *src;
    for (size_t i = 0; i < VD_ARRAY_LEN(options); i++) {
        const option *o = &options[i];
        if (o->type == OPT_STRING) {
            const char *value = *(char *const *)cfield(src, o->offset);
            *(char **)field(dst, o->offset) = value ? strdup(value) : NULL;
        } else if (o->type == OPT_LIST) {
            char *const *items = *(char **const *)cfield(src, o->offset);
            int count = *(const int *)cfield(src, o->count_offset);
            char **copy = count ? vd_malloc((size_t)count * sizeof *copy) : NULL;
            for (int k = 0; k < count; k++) copy[k] = strdup(items[k]);
            *(char ***)field(dst, o->offset) = copy;
        }
    }
}

int vd_server_config_set(vd_server_config *c, const char *name, const char *value, char *err,
                         size_t errlen)
{
    const option *o = find_option(name);
    if (!o) return vd_fail(err, errlen, "%s: unknown option", name);
    char reason[512];
    if (set_scalar(c, o, value, reason, sizeof reason) != 0) return vd_fail(err, errlen, "%s: %s", name, reason);
    return 0;
}

/* ---- YAML ---- */

typedef struct {
    yaml_parser_t parser;
    const char *path;
    char *err;
    size_t errlen;
} yaml_reader;

static int next_event(yaml_reader *r, yaml_event_t *event)
{
    if (yaml_parser_parse(&r->parser, event)) return 0;
    const yaml_parser_t *p = &r->parser;
    if (p->error == YAML_READER_ERROR) /* bad encoding or I/O: libyaml knows the byte, not the line */
        return vd_fail(r->err, r->errlen, "%s: cannot read: %s at byte %zu", r->path,
                    p->problem ? p->problem : "input error", p->problem_offset);
    return vd_fail(r->err, r->errlen, "%s:%zu: syntax error: %s%s%s", r->path, p->problem_mark.line + 1,
                p->problem ? p->problem : "unknown problem", p->context ? " " : "",
                p->context ? p->context : "");
}

static size_t line_of(const yaml_event_t *event) { return event->start_mark.line + 1; }

/* The value of a list option: a sequence of scalars, or an empty plain scalar for none. */
static int read_list(yaml_reader *r, vd_server_config *c, const option *o, yaml_event_t *first)
{
    char **items = NULL;
    int count = 0, status = 0;
    char reason[512];
    if (first->type == YAML_SCALAR_EVENT) {
        if (first->data.scalar.length > 0 || first->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
            return vd_fail(r->err, r->errlen, "%s:%zu: %s: expected a list of strings", r->path,
                        line_of(first), o->name);
    } else {
        for (;;) {
            yaml_event_t item;
            if (next_event(r, &item) != 0) { status = -1; break; }
            if (item.type == YAML_SEQUENCE_END_EVENT) { yaml_event_delete(&item); break; }
            if (item.type != YAML_SCALAR_EVENT) {
                status = vd_fail(r->err, r->errlen, "%s:%zu: %s: list items must be strings", r->path,
                              line_of(&item), o->name);
            } else if (check_string(o, (const char *)item.data.scalar.value, reason, sizeof reason) != 0) {
                status = vd_fail(r->err, r->errlen, "%s:%zu: %s: item %d: %s", r->path, line_of(&item),
                              o->name, count + 1, reason);
            } else {
                items = vd_realloc(items, (size_t)(count + 1) * sizeof *items);
                items[count++] = strdup((const char *)item.data.scalar.value);
            }
            yaml_event_delete(&item);
            if (status != 0) break;
        }
    }
    if (status != 0) {
        free_list(items, count);
        return -1;
    }
    char ***slot = field(c, o->offset);
    int *slot_count = field(c, o->count_offset);
    free_list(*slot, *slot_count);
    *slot = items;
    *slot_count = count;
    return 0;
}

/* Reads "option: value" pairs up to the end of the top-level mapping. */
static int read_mapping(yaml_reader *r, vd_server_config *c)
{
    size_t first_line[VD_ARRAY_LEN(options)] = {0};
    for (;;) {
        yaml_event_t key, value;
        if (next_event(r, &key) != 0) return -1;
        if (key.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&key);
            return 0;
        }
        if (key.type != YAML_SCALAR_EVENT) {
            yaml_event_delete(&key);
            return vd_fail(r->err, r->errlen, "%s:%zu: option names must be plain words", r->path, line_of(&key));
        }
        const char *name = (const char *)key.data.scalar.value;
        const option *o = find_option(name);
        int status = 0;
        if (!o) {
            status = vd_fail(r->err, r->errlen, "%s:%zu: %s: unknown option", r->path, line_of(&key), name);
        } else if (first_line[o - options]) {
            status = vd_fail(r->err, r->errlen, "%s:%zu: %s: duplicate option (first set on line %zu)", r->path,
                          line_of(&key), name, first_line[o - options]);
        } else {
            first_line[o - options] = line_of(&key);
        }
        if (status != 0 || next_event(r, &value) != 0) {
            yaml_event_delete(&key);
            return -1;
        }
        char reason[512];
        if (o->type == OPT_LIST) {
            status = value.type == YAML_SEQUENCE_START_EVENT || value.type == YAML_SCALAR_EVENT
                         ? read_list(r, c, o, &value)
                         : vd_fail(r->err, r->errlen, "%s:%zu: %s: expected a list of strings", r->path,
                                line_of(&value), name);
        } else if (value.type != YAML_SCALAR_EVENT) {
            status = vd_fail(r->err, r->errlen, "%s:%zu: %s: expected a single value, not %s", r->path,
                          line_of(&value), name,
                          value.type == YAML_SEQUENCE_START_EVENT ? "a list"
                          : value.type == YAML_MAPPING_START_EVENT ? "a mapping" : "an alias");
        } else if (set_scalar(c, o, (const char *)value.data.scalar.value, reason, sizeof reason) != 0) {
            status = vd_fail(r->err, r->errlen, "%s:%zu: %s: %s", r->path, line_of(&value), name, reason);
        }
        yaml_event_delete(&key);
        yaml_event_delete(&value);
        if (status != 0) return -1;
    }
}

/* Reads a whole stream: nothing at all (every option keeps its value) or one document whose top
 * level is a mapping. */
static int read_stream(yaml_reader *r, vd_server_config *c)
{
    yaml_event_t event;
    int status = 0, documents = 0;
    for (;;) {
        if (next_event(r, &event) != 0) return -1;
        yaml_event_type_t type = event.type;
        if (type == YAML_DOCUMENT_START_EVENT && documents++ > 0) {
            status = vd_fail(r->err, r->errlen, "%s:%zu: only one YAML document is allowed", r->path,
                          line_of(&event));
        } else if (type == YAML_MAPPING_START_EVENT) {
            status = read_mapping(r, c);
        } else if (type == YAML_SCALAR_EVENT && event.data.scalar.length == 0 &&
                   event.data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
            /* an empty document */
        } else if (type == YAML_SCALAR_EVENT || type == YAML_SEQUENCE_START_EVENT || type == YAML_ALIAS_EVENT) {
            status = vd_fail(r->err, r->errlen, "%s:%zu: the file must be a mapping of option names to values",
                          r->path, line_of(&event));
        }
        yaml_event_delete(&event);
        if (status != 0 || type == YAML_STREAM_END_EVENT) return status;
    }
}

int vd_server_config_load(vd_server_config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) return vd_fail(err, errlen, "%s: cannot read: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return vd_fail(err, errlen, "%s: cannot read: %s", path, strerror(EISDIR));
    }
    yaml_reader r = {.path = path, .err = err, .errlen = errlen};
    if (!yaml_parser_initialize(&r.parser)) {
        fclose(f);
        return vd_fail(err, errlen, "%s: out of memory", path);
    }
    yaml_parser_set_input_file(&r.parser, f);
    vd_server_config next;
    vd_server_config_copy(&next, c);
    int status = read_stream(&r, &next);
    if (status == 0 && ferror(f)) status = vd_fail(err, errlen, "%s: read error", path);
    yaml_parser_delete(&r.parser);
    fclose(f);
    if (status != 0) {
        vd_server_config_free(&next);
        return -1;
    }
    vd_server_config_free(c);
    *c = next;
    return 0;
}

/* ---- checks across options ---- */

/* Splits "HOST:PORT" or "[ADDR]:PORT"; host gets the host without brackets. */
static int split_listen(const char *listen, char *host, size_t hostlen, int *port)
{
    const char *colon;
    size_t len;
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':') return -1;
        colon = close + 1;
        listen++;
        len = (size_t)(close - listen);
    } else {
        colon = strrchr(listen, ':');
        if (!colon) return -1;
        len = (size_t)(colon - listen);
    }
    if (len == 0 || len >= hostlen) return -1;
    memcpy(host, listen, len);
    host[len] = '\0';
    char *end;
    long value = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || value < 0 || value > 65535) return -1;
    *port = (int)value;
    return 0;
}

static int is_loopback(const char *host)
{
    struct in_addr v4;
    struct in6_addr v6;
    if (strcmp(host, "localhost") == 0) return 1;
    if (inet_pton(AF_INET, host, &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
    return 0;
}

int vd_server_config_validate(const vd_server_config *c, char *err, size_t errlen)
{
    char reason[512];
    for (size_t i = 0; i < VD_ARRAY_LEN(options); i++) {
        const option *o = &options[i];
        if (o->type != OPT_STRING) continue;
        const char *value = *(char *const *)cfield(c, o->offset);
        if (!value) return vd_fail(err, errlen, "%s: not set", o->name);
        if (check_string(o, value, reason, sizeof reason) != 0)
            return vd_fail(err, errlen, "%s: %s", o->name, reason);
    }
    char host[256];
    int port;
    if (split_listen(c->listen, host, sizeof host, &port) != 0)
        return vd_fail(err, errlen, "listen: '%s' is not HOST:PORT (or [ADDR]:PORT) with a port from 0 (any free port) to 65535",
                    c->listen);
    if (c->api_key_count == 0 && !is_loopback(host))
        return vd_fail(err, errlen,
                    "listen: refusing to listen on a public address without api_keys (%s is not loopback)",
                    host);
    const struct { const char *name, *max_name; int value, max; } within[] = {
        {"default_frames", "max_frames", c->default_frames, c->max_frames},
        {"default_steps", "max_steps", c->default_steps, c->max_steps},
        {"default_width", "max_width", c->default_width, c->max_width},
        {"default_height", "max_height", c->default_height, c->max_height},
    };
    for (size_t i = 0; i < VD_ARRAY_LEN(within); i++)
        if (within[i].value > within[i].max)
            return vd_fail(err, errlen, "%s: %d is above %s (%d)", within[i].name, within[i].value,
                        within[i].max_name, within[i].max);
    return 0;
}

/* ---- the documented default file ---- */

static const char *const type_names[] = {"string", "whole number", "byte size", "count", "number",
                                         "true or false", "list of strings"};

static void write_quoted(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

/* A list option's default, comma separated items ("" for none), as a YAML flow sequence. */
static void write_list(FILE *out, const char *items)
{
    fputc('[', out);
    char *copy = strdup(items), *save = NULL;
    int first = 1;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save), first = 0) {
        if (!first) fputs(", ", out);
        write_quoted(out, item);
    }
    free(copy);
    fputc(']', out);
}

void vd_server_config_write_defaults(FILE *out)
{
    fputs("# vdmini.yaml: the configuration of vdminid, the vdmini server.\n"
          "#\n"
          "# Generated from the option table in server/config.c; regenerate with\n"
          "#   vdminid --print-defaults > conf/vdmini.yaml\n"
          "# Every option is listed at its default. Remove or comment out an option to keep its\n"
          "# default; an unknown option, a wrong type or a value out of bounds is an error naming\n"
          "# the file, the line and the option. Options given on vdminid's command line override the\n"
          "# file. SIGHUP re-reads it; a file with an error leaves the running configuration as it is.\n"
          "# Byte sizes and counts take the suffixes k, M, G (powers of 1024; also KiB, MiB, GiB) or\n"
          "# kB, MB, GB (powers of 1000).\n",
          out);
    for (size_t i = 0; i < VD_ARRAY_LEN(options); i++) {
        const option *o = &options[i];
        if (o->section) fprintf(out, "\n# ---- %s ----\n", o->section);
        fprintf(out, "\n# %s.\n# (%s", o->help, type_names[o->type]);
        if (o->choices) fprintf(out, ": %s", o->choices);
        else if (o->type == OPT_STRING && o->min > 0) fputs(", not empty", out);
        else if (o->type != OPT_STRING && o->type != OPT_BOOL && o->type != OPT_LIST) {
            char lo[32], hi[32];
            format_bound(o, o->min, lo, sizeof lo);
            format_bound(o, o->max, hi, sizeof hi);
            fprintf(out, ", %s to %s", lo, hi);
        }
        fputs(")\n", out);
        fprintf(out, "%s: ", o->name);
        if (o->type == OPT_STRING) write_quoted(out, o->default_text);
        else if (o->type == OPT_LIST) write_list(out, o->default_text);
        else fputs(o->default_text, out);
        fputc('\n', out);
    }
}
