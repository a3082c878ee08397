/* common.h: the lowest layer shared by kernels/, engine/ and the programs on top: one levelled
 * logging macro, allocation wrappers that abort with file:line on failure, and a monotonic clock.
 * Startup code may abort through these; request paths check results and return errors instead. */
#ifndef VD_COMMON_H
#define VD_COMMON_H

#include <stddef.h>
#include <stdint.h>

typedef enum { VD_LOG_DEBUG = 0, VD_LOG_INFO, VD_LOG_WARN, VD_LOG_ERROR } vd_log_level;

/* Messages below the threshold are dropped. It comes from VDMINI_LOG (debug|info|warn|error)
 * at first use, default info; vd_log_set_threshold overrides it. */
int vd_log_enabled(vd_log_level level);
void vd_log_set_threshold(vd_log_level level);

void vd_log_write(vd_log_level level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define VD_LOG(level, ...) \
    do { if (vd_log_enabled(level)) vd_log_write((level), __FILE__, __LINE__, __VA_ARGS__); } while (0)

/* Allocation that never returns NULL: on failure it logs file:line and aborts. */
void *vd_malloc_checked(size_t bytes, const char *file, int line);
void *vd_calloc_checked(size_t count, size_t size, const char *file, int line);
void *vd_realloc_checked(void *ptr, size_t bytes, const char *file, int line);
#define vd_malloc(bytes) vd_malloc_checked((bytes), __FILE__, __LINE__)
#define vd_calloc(count, size) vd_calloc_checked((count), (size), __FILE__, __LINE__)
#define vd_realloc(ptr, bytes) vd_realloc_checked((ptr), (bytes), __FILE__, __LINE__)

/* Writes a formatted message into err (errlen bytes, may be 0) and returns -1: the one way every
 * parser and loader reports what it rejected. */
int vd_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Seconds from a monotonic clock. */
double vd_now(void);

#define VD_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
