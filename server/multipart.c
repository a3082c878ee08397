/* multipart.c: the strict multipart/form-data parser of multipart.h. The body is walked once:
 * delimiter, part headers line by line, then the part's content up to the next delimiter,
 * which must be "CRLF--boundary" followed by "--" (the end) or CRLF (another part). */
#include "multipart.h"
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int is_space(char c) { return c == ' ' || c == '\t'; }

/* Characters RFC 2046 allows in a boundary. */
static int is_boundary_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("'()+_,-./:=? ", c) != NULL);
}

/* Reads one parameter value at *s (quoted or a token) and advances past it. The value points
 * into the string, without the quotes. -1 for an unterminated quote. */
static int read_param_value(const char **s, const char *end, const char **value, size_t *len)
{
    const char *p = *s;
    if (p < end && *p == '"') {
        const char *close = memchr(p + 1, '"', (size_t)(end - p - 1));
        if (!close) return -1;
        *value = p + 1;
        *len = (size_t)(close - p - 1);
        *s = close + 1;
        return 0;
    }
    const char *start = p;
    while (p < end && *p != ';' && !is_space(*p)) p++;
    *value = start;
    *len = (size_t)(p - start);
    *s = p;
    return 0;
}

/* Finds parameter `want` in "; a=b; c="d"" at s (up to end). 1 found, 0 absent, -1 malformed. */
static int find_param(const char *s, const char *end, const char *want, const char **value, size_t *len)
{
    size_t want_len = strlen(want);
    int found = 0;
    while (s < end) {
        while (s < end && is_space(*s)) s++;
        if (s == end) break;
        if (*s != ';') return -1;
        s++;
        while (s < end && is_space(*s)) s++;
        if (s == end) break; /* a trailing ";" */
        const char *name = s;
        while (s < end && *s != '=' && *s != ';' && !is_space(*s)) s++;
        size_t name_len = (size_t)(s - name);
        while (s < end && is_space(*s)) s++;
        if (s == end || *s != '=' || name_len == 0) return -1;
        s++;
        while (s < end && is_space(*s)) s++;
        const char *v;
        size_t vlen;
        if (read_param_value(&s, end, &v, &vlen)) return -1;
        if (name_len == want_len && strncasecmp(name, want, want_len) == 0) {
            if (found) return -1; /* the same parameter twice */
            *value = v;
            *len = vlen;
            found = 1;
        }
    }
    return found;
}

int vd_multipart_boundary(const char *content_type, const char **boundary, size_t *len, char *err,
                          size_t errlen)
{
    static const char media[] = "multipart/form-data";
    const char *s = content_type, *end = content_type + strlen(content_type);
    while (is_space(*s)) s++;
    if (strncasecmp(s, media, sizeof media - 1) != 0 ||
        (s[sizeof media - 1] && s[sizeof media - 1] != ';' && !is_space(s[sizeof media - 1])))
        return vd_fail(err, errlen, "Content-Type is not multipart/form-data");
    s += sizeof media - 1;
    int r = find_param(s, end, "boundary", boundary, len);
    if (r < 0) return vd_fail(err, errlen, "malformed parameters in the multipart Content-Type");
    if (r == 0) return vd_fail(err, errlen, "multipart/form-data Content-Type without a boundary");
    if (*len == 0 || *len > VD_MULTIPART_MAX_BOUNDARY)
        return vd_fail(err, errlen, "multipart boundary must be 1 to %d characters", VD_MULTIPART_MAX_BOUNDARY);
    for (size_t i = 0; i < *len; i++)
        if (!is_boundary_char((*boundary)[i]))
            return vd_fail(err, errlen, "multipart boundary has a character RFC 2046 does not allow");
    if ((*boundary)[*len - 1] == ' ') return vd_fail(err, errlen, "multipart boundary ends in a space");
    return 0;
}

/* Parses one header line [line, line_end) into the part. */
static int parse_header_line(const char *line, const char *line_end, vd_multipart_part *part,
                             int *has_disposition, char *err, size_t errlen)
{
    if (is_space(*line)) return vd_fail(err, errlen, "folded part header lines are not accepted");
    const char *colon = memchr(line, ':', (size_t)(line_end - line));
    if (!colon) return vd_fail(err, errlen, "part header line without a colon");
    size_t name_len = (size_t)(colon - line);
    for (size_t i = 0; i < name_len; i++)
        if (is_space(line[i]) || (unsigned char)line[i] < 0x21 || (unsigned char)line[i] > 0x7e)
            return vd_fail(err, errlen, "malformed part header name");
    if (name_len == 0) return vd_fail(err, errlen, "part header line with an empty name");
    const char *value = colon + 1, *value_end = line_end;
    while (value < value_end && is_space(*value)) value++;
    while (value_end > value && is_space(value_end[-1])) value_end--;

    if (name_len == 19 && strncasecmp(line, "Content-Disposition", 19) == 0) {
        if (*has_disposition) return vd_fail(err, errlen, "part with two Content-Disposition headers");
        *has_disposition = 1;
        static const char form_data[] = "form-data";
        size_t n = sizeof form_data - 1;
        if ((size_t)(value_end - value) < n || strncasecmp(value, form_data, n) != 0 ||
            (value + n < value_end && value[n] != ';' && !is_space(value[n])))
            return vd_fail(err, errlen, "part Content-Disposition is not form-data");
        int r = find_param(value + n, value_end, "name", &part->name, &part->name_len);
        if (r < 0) return vd_fail(err, errlen, "malformed part Content-Disposition parameters");
        if (r == 0 || part->name_len == 0) return vd_fail(err, errlen, "part Content-Disposition without a name");
        r = find_param(value + n, value_end, "filename", &part->filename, &part->filename_len);
        if (r < 0) return vd_fail(err, errlen, "malformed part Content-Disposition parameters");
        if (r == 0) part->filename = NULL, part->filename_len = 0;
    } else if (name_len == 12 && strncasecmp(line, "Content-Type", 12) == 0) {
        if (part->content_type) return vd_fail(err, errlen, "part with two Content-Type headers");
        part->content_type = value;
        part->content_type_len = (size_t)(value_end - value);
    }
    return 0;
}

int vd_multipart_parse(const char *body, size_t body_len, const char *boundary, size_t boundary_len,
                       vd_multipart_part *parts, int max_parts, int *count, char *err, size_t errlen)
{
    *count = 0;
    if (boundary_len == 0 || boundary_len > VD_MULTIPART_MAX_BOUNDARY)
        return vd_fail(err, errlen, "bad multipart boundary length");
    /* "\r\n--" + boundary: the delimiter as it appears after a part's content */
    char delimiter[4 + VD_MULTIPART_MAX_BOUNDARY];
    memcpy(delimiter, "\r\n--", 4);
    memcpy(delimiter + 4, boundary, boundary_len);
    size_t delimiter_len = 4 + boundary_len;
    const char *end = body + body_len;

    /* the first delimiter opens the body (RFC 2046 allows a preamble before it) */
    const char *p;
    if (body_len >= delimiter_len - 2 && memcmp(body, delimiter + 2, delimiter_len - 2) == 0) {
        p = body + delimiter_len - 2;
    } else {
        const char *first = memmem(body, body_len, delimiter, delimiter_len);
        if (!first) return vd_fail(err, errlen, "multipart body does not contain its boundary");
        p = first + delimiter_len;
    }

    for (;;) {
        /* after a delimiter: "--" ends the body, else optional padding and CRLF open a part */
        if (end - p >= 2 && p[0] == '-' && p[1] == '-') return 0;
        while (p < end && is_space(*p)) p++;
        if (end - p < 2) return vd_fail(err, errlen, "multipart body truncated after a boundary");
        if (p[0] != '\r' || p[1] != '\n') return vd_fail(err, errlen, "multipart boundary not followed by CRLF");
        p += 2;
        if (*count == max_parts) return vd_fail(err, errlen, "too many multipart parts (at most %d)", max_parts);

        vd_multipart_part *part = &parts[*count];
        memset(part, 0, sizeof *part);
        int has_disposition = 0, lines = 0;
        const char *headers_start = p;
        for (;;) {
            size_t window = (size_t)(end - p);
            const char *eol = memmem(p, window, "\r\n", 2);
            if (!eol) {
                if ((size_t)(end - headers_start) > VD_MULTIPART_MAX_HEADER_BYTES)
                    return vd_fail(err, errlen, "multipart part headers too large (over %d bytes)",
                                VD_MULTIPART_MAX_HEADER_BYTES);
                return vd_fail(err, errlen, "multipart body truncated in part headers");
            }
            if ((size_t)(eol + 2 - headers_start) > VD_MULTIPART_MAX_HEADER_BYTES)
                return vd_fail(err, errlen, "multipart part headers too large (over %d bytes)",
                            VD_MULTIPART_MAX_HEADER_BYTES);
            if (eol == p) { /* the empty line that ends the headers */
                p = eol + 2;
                break;
            }
            if (++lines > VD_MULTIPART_MAX_HEADERS)
                return vd_fail(err, errlen, "too many part header lines (at most %d)", VD_MULTIPART_MAX_HEADERS);
            if (parse_header_line(p, eol, part, &has_disposition, err, errlen)) return -1;
            p = eol + 2;
        }
        if (!has_disposition) return vd_fail(err, errlen, "multipart part without Content-Disposition");

        /* the content runs to the next delimiter that is followed by "--" or padding and CRLF;
         * the boundary text followed by anything else is content */
        const char *d;
        for (const char *search = p;; search = d + 1) {
            d = memmem(search, (size_t)(end - search), delimiter, delimiter_len);
            if (!d)
                return vd_fail(err, errlen, "multipart body truncated: part \"%.*s\" has no closing boundary",
                            (int)(part->name_len > 64 ? 64 : part->name_len), part->name);
            const char *q = d + delimiter_len;
            if (end - q >= 2 && q[0] == '-' && q[1] == '-') break;
            while (q < end && is_space(*q)) q++;
            if (end - q >= 2 && q[0] == '\r' && q[1] == '\n') break;
            if (end - q < 2) return vd_fail(err, errlen, "multipart body truncated after a boundary");
        }
        part->data = (const unsigned char *)p;
        part->size = (size_t)(d - p);
        (*count)++;
        p = d + delimiter_len;
    }
}

int vd_multipart_name_is(const vd_multipart_part *p, const char *name)
{
    size_t n = strlen(name);
    return p->name_len == n && memcmp(p->name, name, n) == 0;
}
