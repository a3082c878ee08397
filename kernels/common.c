/* common.c: logging, checked allocation and the clock declared in common.h. */
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

vd_log_level vd_log_threshold = VD_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static void log_init_once(void)
{
    static int done;
    if (done) return;
    done = 1;
    const char *env = getenv("VDMINI_LOG");
    if (!env) return;
    for (int i = 0; i < 4; i++)
        if (strcmp(env, level_names[i]) == 0) vd_log_threshold = (vd_log_level)i;
}

void vd_log_write(vd_log_level level, const char *file, int line, const char *fmt, ...)
{
    log_init_once();
    if (level < vd_log_threshold) return;
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

double vd_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
