/* common.c: logging, checked allocation and the clock declared in common.h. */
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static vd_log_level threshold = VD_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static int threshold_read;

static void log_init_once(void)
{
    if (threshold_read) return;
    threshold_read = 1;
    const char *env = getenv("VDMINI_LOG");
    if (!env) return;
    for (int i = 0; i < 4; i++)
        if (strcmp(env, level_names[i]) == 0) threshold = (vd_log_level)i;
}

int vd_log_enabled(vd_log_level level)
{
    log_init_once();
    return level >= threshold;
}

void vd_log_set_threshold(vd_log_level level)
{
    threshold_read = 1;
    threshold = level;
}

void vd_log_write(vd_log_level level, const char *file, int line, const char *fmt, ...)
{
    if (!vd_log_enabled(level)) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    const char *base = strrchr(file, '/');
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s.%03ldZ %-5s %s:%d %s\n", stamp, ts.tv_nsec / 1000000, level_names[level],
            base ? base + 1 : file, line, msg);
}

void *vd_malloc_checked(size_t bytes, const char *file, int line)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        vd_log_write(VD_LOG_ERROR, file, line, "out of memory allocating %zu bytes", bytes);
        abort();
    }
    return p;
}

void *vd_calloc_checked(size_t count, size_t size, const char *file, int line)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) {
        vd_log_write(VD_LOG_ERROR, file, line, "out of memory allocating %zu x %zu bytes", count, size);
        abort();
    }
    return p;
}

void *vd_realloc_checked(void *ptr, size_t bytes, const char *file, int line)
{
    void *p = realloc(ptr, bytes ? bytes : 1);
    if (!p) {
        vd_log_write(VD_LOG_ERROR, file, line, "out of memory reallocating to %zu bytes", bytes);
        abort();
    }
    return p;
}

int vd_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

double vd_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
