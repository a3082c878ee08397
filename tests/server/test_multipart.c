/* test_multipart.c: the multipart/form-data parser on bodies shaped like those the OpenAI SDKs,
 * curl and browsers send (with and without files, quoted boundaries, binary content holding CR,
 * LF and partial boundaries), and on every kind of malformed body: no boundary, truncation at
 * every byte, no closing delimiter, a header line without a colon, too many parts, oversized
 * headers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "multipart.h"

#define MAX_PARTS 8

typedef struct {
    vd_multipart_part parts[MAX_PARTS];
    int count;
    char err[256];
} parsed;

static int parse(const char *body, size_t len, const char *boundary, parsed *out)
{
    memset(out, 0, sizeof *out);
    return vd_multipart_parse(body, len, boundary, strlen(boundary), out->parts, MAX_PARTS, &out->count,
                              out->err, sizeof out->err);
}

static void assert_part(const vd_multipart_part *p, const char *name, const char *filename,
                        const char *content_type, const void *data, size_t size)
{
    assert_true(vd_multipart_name_is(p, name));
    if (filename) {
        assert_non_null(p->filename);
        assert_int_equal(p->filename_len, strlen(filename));
        assert_memory_equal(p->filename, filename, strlen(filename));
    } else {
        assert_null(p->filename);
    }
    if (content_type) {
        assert_non_null(p->content_type);
        assert_int_equal(p->content_type_len, strlen(content_type));
        assert_memory_equal(p->content_type, content_type, strlen(content_type));
    } else {
        assert_null(p->content_type);
    }
    assert_int_equal(p->size, size);
    if (size) assert_memory_equal(p->data, data, size);
}

/* ---- the boundary parameter ---- */

static void test_boundary_plain_and_quoted(void **state)
{
    (void)state;
    const char *b;
    size_t len;
    char err[128];
    assert_int_equal(vd_multipart_boundary("multipart/form-data; boundary=abc123", &b, &len, err, sizeof err), 0);
    assert_int_equal(len, 6);
    assert_memory_equal(b, "abc123", 6);
    assert_int_equal(vd_multipart_boundary("Multipart/Form-Data;charset=utf-8; BOUNDARY=\"a b:c\"", &b, &len, err,
                                           sizeof err), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(b, "a b:c", 5);
    /* what httpx (the Python SDK's client) sends */
    assert_int_equal(vd_multipart_boundary("multipart/form-data; boundary=8f1c2e6b5d0a4c3e9b7a6d5c4b3a2e1f", &b,
                                           &len, err, sizeof err), 0);
    assert_int_equal(len, 32);
}

static void test_boundary_errors(void **state)
{
    (void)state;
    const char *b;
    size_t len;
    char err[128];
    static const char *const bad[] = {
        "multipart/form-data",                      /* no boundary */
        "multipart/form-data; charset=utf-8",       /* still none */
        "multipart/form-data; boundary=",           /* empty */
        "multipart/form-data; boundary=\"abc",      /* unterminated quote */
        "multipart/form-data; boundary=a\x01" "b",  /* a control character */
        "multipart/form-data; boundary=\"abc \"",   /* ends in a space */
        "multipart/form-data; boundary",            /* no value */
        "multipart/form-data; boundary=a; boundary=b", /* twice */
        "multipart/mixed; boundary=abc",            /* another multipart type */
        "multipart/form-dataX; boundary=abc",
        "application/json",
        "multipart/form-data; boundary=01234567890123456789012345678901234567890123456789012345678901234567890",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        assert_int_equal(vd_multipart_boundary(bad[i], &b, &len, err, sizeof err), -1);
        assert_true(strlen(err) > 0);
    }
}

/* ---- good bodies ---- */

static const char sdk_body[] = "--XyZ\r\n"
                               "Content-Disposition: form-data; name=\"prompt\"\r\n"
                               "\r\n"
                               "a red circle moves left\r\n"
                               "--XyZ\r\n"
                               "Content-Disposition: form-data; name=\"seconds\"\r\n"
                               "\r\n"
                               "4\r\n"
                               "--XyZ\r\n"
                               "Content-Disposition: form-data; name=\"size\"\r\n"
                               "\r\n"
                               "64x64\r\n"
                               "--XyZ--\r\n";

static void test_fields_without_file(void **state)
{
    (void)state;
    parsed r;
    assert_int_equal(parse(sdk_body, sizeof sdk_body - 1, "XyZ", &r), 0);
    assert_int_equal(r.count, 3);
    assert_part(&r.parts[0], "prompt", NULL, NULL, "a red circle moves left", 23);
    assert_part(&r.parts[1], "seconds", NULL, NULL, "4", 1);
    assert_part(&r.parts[2], "size", NULL, NULL, "64x64", 5);
}

/* A file whose bytes hold CR, LF, CRLF, "--", the boundary without its CRLF, and the boundary
 * after CRLF but followed by other text: all content, not delimiters. */
static const unsigned char tricky_file[] = {
    0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, '\r', '\n', '-', '-', 'X', 'y', '\r', '\n', '-', '-',
    'X', 'y', 'Z', 'Q', 0, 'X', 'y', 'Z', '\n', '-', '-', 'X', 'y', 'Z', '\r', '\n', '\r', '\r', '\n',
};

static size_t build_file_body(char *buf, size_t cap)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n,
                          "--XyZ\r\n"
                          "Content-Disposition: form-data; name=\"input_reference\"; filename=\"first frame.png\"\r\n"
                          "Content-Type: image/png\r\n"
                          "\r\n");
    memcpy(buf + n, tricky_file, sizeof tricky_file);
    n += sizeof tricky_file;
    n += (size_t)snprintf(buf + n, cap - n,
                          "\r\n--XyZ\r\n"
                          "content-disposition:form-data;name=model\r\n"
                          "\r\n"
                          "tiny\r\n"
                          "--XyZ\r\n"
                          "Content-Disposition: form-data; name=\"empty\"\r\n"
                          "\r\n"
                          "\r\n"
                          "--XyZ--");
    return n;
}

static void test_binary_file_with_partial_boundaries(void **state)
{
    (void)state;
    char body[1024];
    size_t len = build_file_body(body, sizeof body);
    parsed r;
    assert_int_equal(parse(body, len, "XyZ", &r), 0);
    assert_int_equal(r.count, 3);
    assert_part(&r.parts[0], "input_reference", "first frame.png", "image/png", tricky_file, sizeof tricky_file);
    assert_part(&r.parts[1], "model", NULL, NULL, "tiny", 4);
    assert_part(&r.parts[2], "empty", NULL, NULL, "", 0);
}

static void test_quoted_boundary_with_space_and_preamble(void **state)
{
    (void)state;
    const char *ct = "multipart/form-data; boundary=\"with space\"";
    const char *b;
    size_t blen;
    char err[128];
    assert_int_equal(vd_multipart_boundary(ct, &b, &blen, err, sizeof err), 0);
    static const char body[] = "this preamble is ignored\r\n"
                               "--with space  \r\n" /* transport padding after the delimiter */
                               "Content-Disposition: form-data; name=\"a\"\r\n"
                               "X-Other: ignored\r\n"
                               "\r\n"
                               "1\r\n"
                               "--with space--\r\n"
                               "and an epilogue";
    parsed r;
    memset(&r, 0, sizeof r);
    assert_int_equal(vd_multipart_parse(body, sizeof body - 1, b, blen, r.parts, MAX_PARTS, &r.count, r.err,
                                        sizeof r.err), 0);
    assert_int_equal(r.count, 1);
    assert_part(&r.parts[0], "a", NULL, NULL, "1", 1);
}

static void test_no_parts(void **state)
{
    (void)state;
    parsed r;
    assert_int_equal(parse("--XyZ--\r\n", 9, "XyZ", &r), 0);
    assert_int_equal(r.count, 0);
}

/* ---- malformed bodies ---- */

static void expect_error(const char *body, size_t len, const char *boundary, const char *fragment)
{
    parsed r;
    assert_int_equal(parse(body, len, boundary, &r), -1);
    if (!strstr(r.err, fragment)) fail_msg("expected \"%s\" in \"%s\"", fragment, r.err);
}

static void test_truncated_everywhere(void **state)
{
    (void)state;
    char body[1024];
    size_t len = build_file_body(body, sizeof body);
    /* every prefix that stops before the closing "--" fails; so does the SDK body's */
    for (size_t cut = 0; cut < len - 2; cut++) {
        parsed r;
        if (parse(body, cut, "XyZ", &r) != -1) fail_msg("a body cut at %zu of %zu bytes was accepted", cut, len);
        assert_true(strlen(r.err) > 0);
    }
    for (size_t cut = 0; cut < sizeof sdk_body - 1 - 4; cut++) {
        parsed r;
        if (parse(sdk_body, cut, "XyZ", &r) != -1) fail_msg("the SDK body cut at %zu was accepted", cut);
    }
}

static void test_missing_closing_delimiter(void **state)
{
    (void)state;
    static const char body[] = "--XyZ\r\n"
                               "Content-Disposition: form-data; name=\"prompt\"\r\n"
                               "\r\n"
                               "a red circle\r\n";
    expect_error(body, sizeof body - 1, "XyZ", "no closing boundary");
    static const char dangling[] = "--XyZ\r\n"
                                   "Content-Disposition: form-data; name=\"prompt\"\r\n"
                                   "\r\n"
                                   "a red circle\r\n--XyZ";
    expect_error(dangling, sizeof dangling - 1, "XyZ", "truncated");
}

static void test_wrong_or_missing_boundary(void **state)
{
    (void)state;
    expect_error(sdk_body, sizeof sdk_body - 1, "Other", "does not contain its boundary");
    expect_error("", 0, "XyZ", "does not contain its boundary");
    static const char glued[] = "--XyZContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ--";
    expect_error(glued, sizeof glued - 1, "XyZ", "not followed by CRLF");
}

static void test_header_without_colon(void **state)
{
    (void)state;
    static const char body[] = "--XyZ\r\n"
                               "Content-Disposition form-data; name=\"a\"\r\n"
                               "\r\n"
                               "1\r\n"
                               "--XyZ--";
    expect_error(body, sizeof body - 1, "XyZ", "without a colon");
}

static void test_bad_dispositions(void **state)
{
    (void)state;
    static const char no_disposition[] = "--XyZ\r\nContent-Type: text/plain\r\n\r\n1\r\n--XyZ--";
    expect_error(no_disposition, sizeof no_disposition - 1, "XyZ", "without Content-Disposition");
    static const char no_name[] = "--XyZ\r\nContent-Disposition: form-data; filename=\"a.png\"\r\n\r\n1\r\n--XyZ--";
    expect_error(no_name, sizeof no_name - 1, "XyZ", "without a name");
    static const char not_form[] = "--XyZ\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\n1\r\n--XyZ--";
    expect_error(not_form, sizeof not_form - 1, "XyZ", "not form-data");
    static const char open_quote[] = "--XyZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\n1\r\n--XyZ--";
    expect_error(open_quote, sizeof open_quote - 1, "XyZ", "malformed");
    static const char folded[] = "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n filename=\"b\"\r\n\r\n1\r\n--XyZ--";
    expect_error(folded, sizeof folded - 1, "XyZ", "folded");
}

static void test_too_many_parts(void **state)
{
    (void)state;
    char body[2048];
    size_t n = 0;
    for (int i = 0; i <= MAX_PARTS; i++)
        n += (size_t)snprintf(body + n, sizeof body - n,
                              "--XyZ\r\nContent-Disposition: form-data; name=\"f%d\"\r\n\r\n%d\r\n", i, i);
    n += (size_t)snprintf(body + n, sizeof body - n, "--XyZ--\r\n");
    expect_error(body, n, "XyZ", "too many multipart parts");
}

static void test_oversized_headers(void **state)
{
    (void)state;
    size_t cap = VD_MULTIPART_MAX_HEADER_BYTES * 2 + 256;
    char *body = malloc(cap);
    size_t n = (size_t)snprintf(body, cap, "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\nX-Long: ");
    memset(body + n, 'x', VD_MULTIPART_MAX_HEADER_BYTES);
    n += VD_MULTIPART_MAX_HEADER_BYTES;
    n += (size_t)snprintf(body + n, cap - n, "\r\n\r\n1\r\n--XyZ--");
    expect_error(body, n, "XyZ", "headers too large");
    /* a header block that never ends and is already too large */
    n = (size_t)snprintf(body, cap, "--XyZ\r\nX-Long: ");
    memset(body + n, 'y', VD_MULTIPART_MAX_HEADER_BYTES + 10);
    n += VD_MULTIPART_MAX_HEADER_BYTES + 10;
    expect_error(body, n, "XyZ", "headers too large");
    free(body);

    char lines[2048];
    n = (size_t)snprintf(lines, sizeof lines, "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n");
    for (int i = 0; i < VD_MULTIPART_MAX_HEADERS; i++) n += (size_t)snprintf(lines + n, sizeof lines - n, "X-H%d: v\r\n", i);
    n += (size_t)snprintf(lines + n, sizeof lines - n, "\r\n1\r\n--XyZ--");
    expect_error(lines, n, "XyZ", "too many part header lines");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_boundary_plain_and_quoted),
        cmocka_unit_test(test_boundary_errors),
        cmocka_unit_test(test_fields_without_file),
        cmocka_unit_test(test_binary_file_with_partial_boundaries),
        cmocka_unit_test(test_quoted_boundary_with_space_and_preamble),
        cmocka_unit_test(test_no_parts),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_missing_closing_delimiter),
        cmocka_unit_test(test_wrong_or_missing_boundary),
        cmocka_unit_test(test_header_without_colon),
        cmocka_unit_test(test_bad_dispositions),
        cmocka_unit_test(test_too_many_parts),
        cmocka_unit_test(test_oversized_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
