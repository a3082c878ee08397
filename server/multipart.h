/* multipart.h: a strict parser of a complete multipart/form-data body (RFC 7578), as the
 * official OpenAI SDKs and browsers send it. Nothing is copied or allocated: each part points
 * into the body. Truncated or malformed bodies are rejected with a one-line message. */
#ifndef VD_MULTIPART_H
#define VD_MULTIPART_H

#include <stddef.h>

#define VD_MULTIPART_MAX_BOUNDARY 70        /* RFC 2046 */
#define VD_MULTIPART_MAX_HEADER_BYTES 4096  /* one part's header block */
#define VD_MULTIPART_MAX_HEADERS 16         /* header lines in one part */

typedef struct {
    const char *name;             /* the form field's name (Content-Disposition name=) */
    size_t name_len;
    const char *filename;         /* NULL unless the part carries filename= */
    size_t filename_len;
    const char *content_type;     /* NULL when the part has no Content-Type */
    size_t content_type_len;
    const unsigned char *data;    /* the part's content */
    size_t size;
} vd_multipart_part;

/* Finds the boundary parameter (quoted or not) of a multipart/form-data Content-Type value.
 * Returns 0 with boundary/len pointing into content_type, or -1 with a message. */
int vd_multipart_boundary(const char *content_type, const char **boundary, size_t *len, char *err,
                          size_t errlen);

/* Splits body into at most max_parts parts. Returns 0 with *count set, or -1 with a message
 * (missing or wrong delimiter, truncation, a header line without a colon, headers too large,
 * a part without a form-data name, too many parts). */
int vd_multipart_parse(const char *body, size_t body_len, const char *boundary, size_t boundary_len,
                       vd_multipart_part *parts, int max_parts, int *count, char *err, size_t errlen);

/* 1 when the part's name is exactly `name`. */
int vd_multipart_name_is(const vd_multipart_part *p, const char *name);

#endif
