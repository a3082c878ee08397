/* test_config.c: tests of server/config.c: the defaults; the documented default file parses back
 * to them and conf/vdmini.yaml is that file; every kind of YAML error names FILE:LINE and the
 * option and leaves the configuration as it was; byte-size suffixes; key lists; command-line
 * overrides; the checks across options; and a SIGHUP-style reload on a copy. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../server/config.h" /* by path: the build directory has autoconf's config.h */

/* ---- helpers ---- */

/* Writes text to a fresh temporary file; path receives its name. */
static void write_temp(const char *text, char path[64])
{
    const char *dir = getenv("TMPDIR");
    snprintf(path, 64, "%s/vdmini-config-XXXXXX", dir && strlen(dir) < 40 ? dir : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle)) fail_msg("\"%s\" does not contain \"%s\"", haystack, needle);
}

static void assert_lists_equal(char **a, int na, char **b, int nb)
{
    assert_int_equal(na, nb);
    for (int i = 0; i < na; i++) assert_string_equal(a[i], b[i]);
}

static void assert_configs_equal(const vd_server_config *a, const vd_server_config *b)
{
    assert_string_equal(a->listen, b->listen);
    assert_string_equal(a->data_dir, b->data_dir);
    assert_string_equal(a->model, b->model);
    assert_string_equal(a->ae, b->ae);
    assert_string_equal(a->guide, b->guide);
    assert_string_equal(a->device, b->device);
    assert_int_equal(a->bf16, b->bf16);
    assert_string_equal(a->web_dir, b->web_dir);
    assert_int_equal(a->http_threads, b->http_threads);
    assert_string_equal(a->log_level, b->log_level);
    assert_lists_equal(a->api_keys, a->api_key_count, b->api_keys, b->api_key_count);
    assert_lists_equal(a->admin_keys, a->admin_key_count, b->admin_keys, b->admin_key_count);
    assert_int_equal(a->max_body_bytes, b->max_body_bytes);
    assert_int_equal(a->max_prompt_chars, b->max_prompt_chars);
    assert_int_equal(a->max_image_bytes, b->max_image_bytes);
    assert_int_equal(a->max_image_side, b->max_image_side);
    assert_int_equal(a->max_image_pixels, b->max_image_pixels);
    assert_int_equal(a->max_frames, b->max_frames);
    assert_int_equal(a->max_width, b->max_width);
    assert_int_equal(a->max_height, b->max_height);
    assert_int_equal(a->max_steps, b->max_steps);
    assert_int_equal(a->max_queue, b->max_queue);
    assert_int_equal(a->max_jobs_per_key, b->max_jobs_per_key);
    assert_int_equal(a->default_frames, b->default_frames);
    assert_int_equal(a->default_steps, b->default_steps);
    assert_int_equal(a->default_fps, b->default_fps);
    assert_int_equal(a->default_width, b->default_width);
    assert_int_equal(a->default_height, b->default_height);
    assert_true(a->default_guidance == b->default_guidance);
    assert_true(a->default_guide_scale == b->default_guide_scale);
    assert_true(a->default_guided_guidance == b->default_guided_guidance);
    assert_true(a->default_eta == b->default_eta);
    assert_string_equal(a->default_sampler, b->default_sampler);
    assert_int_equal(a->max_batch, b->max_batch);
    assert_int_equal(a->max_queue_wait_ms, b->max_queue_wait_ms);
    assert_int_equal(a->retention_seconds, b->retention_seconds);
}

/* Loads text as a YAML file on top of the defaults; returns load's result, err its message. */
static int load_text(vd_server_config *c, const char *text, char path[64], char *err, size_t errlen)
{
    write_temp(text, path);
    int rc = vd_server_config_load(c, path, err, errlen);
    unlink(path);
    return rc;
}

/* The file must fail to load with a message "PATH:LINE: WHAT", and leave the defaults alone. */
static void expect_load_error(const char *text, int line, const char *what)
{
    vd_server_config c, defaults;
    vd_server_config_defaults(&c);
    vd_server_config_defaults(&defaults);
    char path[64], err[512], expected[256];
    assert_int_equal(load_text(&c, text, path, err, sizeof err), -1);
    snprintf(expected, sizeof expected, "%s:%d: %s", path, line, what);
    assert_contains(err, expected);
    assert_configs_equal(&c, &defaults);
    vd_server_config_free(&c);
    vd_server_config_free(&defaults);
}

static char *write_defaults_text(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    vd_server_config_write_defaults(out);
    fclose(out);
    return text;
}

/* ---- tests ---- */

static void test_defaults(void **state)
{
    (void)state;
    vd_server_config c;
    vd_server_config_defaults(&c);
    assert_string_equal(c.listen, "127.0.0.1:8080");
    assert_string_equal(c.data_dir, "data");
    assert_string_equal(c.model, "models/vdmini.safetensors");
    assert_string_equal(c.ae, "");
    assert_string_equal(c.guide, "");
    assert_int_equal(c.extra_model_count, 1);
    assert_string_equal(c.extra_models[0], "models/teacher.safetensors");
    assert_string_equal(c.device, "auto");
    assert_int_equal(c.bf16, 0);
    assert_string_equal(c.web_dir, "web");
    assert_int_equal(c.http_threads, 4);
    assert_string_equal(c.log_level, "info");
    assert_int_equal(c.api_key_count, 0);
    assert_null(c.api_keys);
    assert_int_equal(c.admin_key_count, 0);
    assert_int_equal(c.max_body_bytes, 16 << 20);
    assert_int_equal(c.max_prompt_chars, 1000);
    assert_int_equal(c.max_image_bytes, 10 << 20);
    assert_int_equal(c.max_image_side, 4096);
    assert_int_equal(c.max_image_pixels, 4096 * 4096);
    assert_int_equal(c.max_frames, 64);
    assert_int_equal(c.max_width, 512);
    assert_int_equal(c.max_height, 512);
    assert_int_equal(c.max_steps, 100);
    assert_int_equal(c.max_queue, 64);
    assert_int_equal(c.max_jobs_per_key, 8);
    assert_int_equal(c.default_frames, 16);
    assert_int_equal(c.default_steps, 25);
    assert_int_equal(c.default_fps, 8);
    assert_int_equal(c.default_width, 128);
    assert_int_equal(c.default_height, 128);
    assert_true(c.default_guidance == 4.0);
    assert_true(c.default_guide_scale == 2.0);
    assert_true(c.default_guided_guidance == 2.0);
    assert_true(c.default_eta == 1.0);
    assert_string_equal(c.default_sampler, "ddim");
    assert_int_equal(c.max_batch, 8);
    assert_int_equal(c.max_queue_wait_ms, 50);
    assert_int_equal(c.retention_seconds, 86400);
    char err[256];
    assert_int_equal(vd_server_config_validate(&c, err, sizeof err), 0);
    vd_server_config_free(&c);
}

static void test_default_file_parses_back(void **state)
{
    (void)state;
    char *text = write_defaults_text();
    /* start far from the defaults so that every option must come from the file */
    vd_server_config c, defaults;
    vd_server_config_defaults(&c);
    vd_server_config_defaults(&defaults);
    static const char *const changes[][2] = {
        {"listen", "0.0.0.0:9"}, {"ae", "ae.safetensors"}, {"bf16", "true"}, {"api_keys", "a,b"},
        {"admin_keys", "c"},     {"max_body_bytes", "1M"}, {"max_image_pixels", "1k"},
        {"default_guidance", "1"}, {"default_sampler", "euler"}, {"retention_seconds", "60"},
        {"guide", ""},           {"default_guide_scale", "0"}, {"default_guided_guidance", "7.5"},
        {"default_eta", "0.25"},
    };
    char err[512], path[64];
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++)
        assert_int_equal(vd_server_config_set(&c, changes[i][0], changes[i][1], err, sizeof err), 0);
    int rc = load_text(&c, text, path, err, sizeof err);
    if (rc != 0) fail_msg("%s", err);
    assert_configs_equal(&c, &defaults);
    /* every option is documented: a comment line above it */
    assert_contains(text, "\n# Bearer keys accepted on /v1");
    assert_contains(text, "\nmax_image_pixels: 16M\n");
    assert_contains(text, "\napi_keys: []\n");
    free(text);
    vd_server_config_free(&c);
    vd_server_config_free(&defaults);
}

static void test_shipped_file_is_the_default_file(void **state)
{
    (void)state;
    /* make check sets top_srcdir; run by hand from the build directory, the source tree is
     * where this file was compiled from */
    const char *top = getenv("top_srcdir");
    char path[4096];
    if (top) {
        snprintf(path, sizeof path, "%s/conf/vdmini.yaml", top);
    } else {
        const char *self = __FILE__, *tail = strstr(self, "tests/server/test_config.c");
        assert_non_null(tail);
        snprintf(path, sizeof path, "%.*sconf/vdmini.yaml", (int)(tail - self), self);
    }
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot read %s", path);
    char *shipped = NULL;
    size_t cap = 0;
    ssize_t len = getdelim(&shipped, &cap, '\0', f);
    fclose(f);
    assert_true(len > 0);
    char *expected = write_defaults_text();
    if (strcmp(shipped, expected) != 0)
        fail_msg("%s differs from vd_server_config_write_defaults(); regenerate it (see its header)", path);
    free(expected);
    free(shipped);
}

static void test_load_values(void **state)
{
    (void)state;
    vd_server_config c;
    vd_server_config_defaults(&c);
    char path[64], err[512];
    const char *text = "# a comment\n"
                       "listen: \"[::1]:8081\"\n"
                       "device: cuda\n"
                       "bf16: yes\n"
                       "max_body_bytes: 512k\n"
                       "max_image_bytes: 10MB\n"
                       "max_image_pixels: 1Mi\n"
                       "max_frames: 32\n"
                       "default_guidance: 3.25\n"
                       "default_guide_scale: 0.5\n"
                       "default_guided_guidance: 1.5\n"
                       "default_eta: 0.75\n"
                       "ae: ''\n"
                       "guide: ''\n"
                       "api_keys:\n"
                       "  - first-key\n"
                       "  - \"second key\"\n"
                       "admin_keys: [root-key]\n";
    int rc = load_text(&c, text, path, err, sizeof err);
    if (rc != 0) fail_msg("%s", err);
    assert_string_equal(c.listen, "[::1]:8081");
    assert_string_equal(c.device, "cuda");
    assert_int_equal(c.bf16, 1);
    assert_int_equal(c.max_body_bytes, 512 * 1024);
    assert_int_equal(c.max_image_bytes, 10000000);
    assert_int_equal(c.max_image_pixels, 1 << 20);
    assert_int_equal(c.max_frames, 32);
    assert_true(c.default_guidance == 3.25);
    assert_true(c.default_guide_scale == 0.5);
    assert_true(c.default_guided_guidance == 1.5);
    assert_true(c.default_eta == 0.75);
    assert_string_equal(c.ae, "");
    assert_string_equal(c.guide, "");
    assert_int_equal(c.api_key_count, 2);
    assert_string_equal(c.api_keys[0], "first-key");
    assert_string_equal(c.api_keys[1], "second key");
    assert_int_equal(c.admin_key_count, 1);
    assert_string_equal(c.admin_keys[0], "root-key");
    assert_int_equal(c.max_steps, 100); /* untouched options keep their value */
    assert_int_equal(vd_server_config_validate(&c, err, sizeof err), 0);

    /* an empty key list, and a file of comments only */
    assert_int_equal(load_text(&c, "api_keys:\nadmin_keys: []\n", path, err, sizeof err), 0);
    assert_int_equal(c.api_key_count, 0);
    assert_int_equal(c.admin_key_count, 0);
    assert_int_equal(load_text(&c, "# nothing here\n", path, err, sizeof err), 0);
    assert_int_equal(c.max_frames, 32);
    assert_int_equal(load_text(&c, "", path, err, sizeof err), 0);
    vd_server_config_free(&c);
}

static void test_load_errors(void **state)
{
    (void)state;
    expect_load_error("max_frames: 8\n\nbogus: 1\n", 3, "bogus: unknown option");
    expect_load_error("max_frames: lots\n", 1, "max_frames: 'lots' is not a whole number");
    expect_load_error("max_frames: 1.5\n", 1, "max_frames: '1.5' is not a whole number");
    expect_load_error("default_guidance: much\n", 1, "default_guidance: 'much' is not a number");
    expect_load_error("default_guide_scale: 101\n", 1, "default_guide_scale: 101 is out of bounds (0 to 100)");
    expect_load_error("default_eta: 1.5\n", 1, "default_eta: 1.5 is out of bounds (0 to 1)");
    expect_load_error("bf16: maybe\n", 1, "bf16: 'maybe' is not true or false");
    expect_load_error("max_body_bytes: 3 parsecs\n", 1, "max_body_bytes: '3 parsecs' is not a whole number");
    expect_load_error("max_frames: 8\nmax_steps: 5000\n", 2, "max_steps: 5000 is out of bounds (1 to 1000)");
    expect_load_error("max_body_bytes: 2G\n", 1, "max_body_bytes: 2G is out of bounds (1k to 1G)");
    expect_load_error("device: tpu\n", 1, "device: 'tpu' is not one of auto|cpu|cuda");
    expect_load_error("listen: ''\n", 1, "listen: must not be empty");
    expect_load_error("max_frames: 8\nmax_steps: 9\nmax_frames: 10\n", 3,
                      "max_frames: duplicate option (first set on line 1)");
    expect_load_error("- listen\n- data_dir\n", 1, "the file must be a mapping of option names to values");
    expect_load_error("just words\n", 1, "the file must be a mapping of option names to values");
    expect_load_error("max_frames: 8\nlisten:\n  host: x\n", 3, "listen: expected a single value, not a mapping");
    expect_load_error("max_frames: [1, 2]\n", 1, "max_frames: expected a single value, not a list");
    expect_load_error("api_keys: key\n", 1, "api_keys: expected a list of strings");
    expect_load_error("api_keys:\n  key: value\n", 2, "api_keys: expected a list of strings");
    expect_load_error("api_keys:\n  - good\n  - ''\n", 3, "api_keys: item 2: must not be empty");
    expect_load_error("admin_keys:\n  - [nested]\n", 2, "admin_keys: list items must be strings");
    expect_load_error("max_frames: &a 8\nmax_steps: *a\n", 2, "max_steps: expected a single value, not an alias");
    expect_load_error("max_frames: 8\nmax_steps: 9\n}\n", 3, "syntax error: did not find expected key");
    expect_load_error("max_frames: 8\nlisten: \"127.0.0.1\n", 3, "syntax error: found unexpected end of stream");
    expect_load_error("max_frames: 8\n---\nmax_steps: 9\n", 2, "only one YAML document is allowed");

    vd_server_config c;
    vd_server_config_defaults(&c);
    char err[512];
    assert_int_equal(vd_server_config_load(&c, "/nonexistent/vdmini.yaml", err, sizeof err), -1);
    assert_string_equal(err, "/nonexistent/vdmini.yaml: cannot read: No such file or directory");
    assert_int_equal(vd_server_config_load(&c, "/", err, sizeof err), -1);
    assert_string_equal(err, "/: cannot read: Is a directory");
    char path[64], expected[128];
    assert_int_equal(load_text(&c, "max_frames: 8\nlisten: \"\xc3\x28\"\n", path, err, sizeof err), -1);
    snprintf(expected, sizeof expected, "%s: cannot read: invalid trailing UTF-8 octet at byte 24", path);
    assert_string_equal(err, expected);
    assert_int_equal(c.max_frames, 64);
    vd_server_config_free(&c);
}

static void test_set(void **state)
{
    (void)state;
    vd_server_config c;
    vd_server_config_defaults(&c);
    char err[512];
    assert_int_equal(vd_server_config_set(&c, "max_steps", "50", err, sizeof err), 0);
    assert_int_equal(c.max_steps, 50);
    assert_int_equal(vd_server_config_set(&c, "data_dir", "/srv/vdmini", err, sizeof err), 0);
    assert_string_equal(c.data_dir, "/srv/vdmini");
    assert_int_equal(vd_server_config_set(&c, "bf16", "on", err, sizeof err), 0);
    assert_int_equal(c.bf16, 1);
    assert_int_equal(vd_server_config_set(&c, "api_keys", "k1,k2,k3", err, sizeof err), 0);
    assert_int_equal(c.api_key_count, 3);
    assert_string_equal(c.api_keys[2], "k3");
    assert_int_equal(vd_server_config_set(&c, "api_keys", "", err, sizeof err), 0);
    assert_int_equal(c.api_key_count, 0);

    assert_int_equal(vd_server_config_set(&c, "nope", "1", err, sizeof err), -1);
    assert_string_equal(err, "nope: unknown option");
    assert_int_equal(vd_server_config_set(&c, "max_steps", "0", err, sizeof err), -1);
    assert_string_equal(err, "max_steps: 0 is out of bounds (1 to 1000)");
    assert_int_equal(c.max_steps, 50);
    assert_int_equal(vd_server_config_set(&c, "default_sampler", "heun", err, sizeof err), -1);
    assert_string_equal(err, "default_sampler: 'heun' is not one of ddim|euler");
    assert_string_equal(c.default_sampler, "ddim");
    vd_server_config_free(&c);
}

static void expect_invalid(vd_server_config *c, const char *what)
{
    char err[512];
    assert_int_equal(vd_server_config_validate(c, err, sizeof err), -1);
    assert_contains(err, what);
}

static void set_ok(vd_server_config *c, const char *name, const char *value)
{
    char err[512];
    if (vd_server_config_set(c, name, value, err, sizeof err) != 0) fail_msg("%s", err);
}

static void test_validate(void **state)
{
    (void)state;
    vd_server_config c;
    vd_server_config_defaults(&c);
    char err[512];
    static const char *const loopback[] = {"127.0.0.1:8080", "127.1.2.3:80", "localhost:8080", "[::1]:8080"};
    for (size_t i = 0; i < sizeof loopback / sizeof loopback[0]; i++) {
        set_ok(&c, "listen", loopback[i]);
        assert_int_equal(vd_server_config_validate(&c, err, sizeof err), 0);
    }
    static const char *const public[] = {"0.0.0.0:8080", "192.168.1.5:80", "[::]:8080", "example.org:443"};
    for (size_t i = 0; i < sizeof public / sizeof public[0]; i++) {
        set_ok(&c, "listen", public[i]);
        expect_invalid(&c, "listen: refusing to listen on a public address without api_keys");
    }
    set_ok(&c, "api_keys", "secret");
    assert_int_equal(vd_server_config_validate(&c, err, sizeof err), 0); /* public with keys */

    static const char *const malformed[] = {"8080", "host:", "host:-1", "host:70000", "[::1]8080", ":80"};
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        set_ok(&c, "listen", malformed[i]);
        expect_invalid(&c, "listen: ");
    }
    set_ok(&c, "listen", "127.0.0.1:0"); /* any free port */
    assert_int_equal(vd_server_config_validate(&c, err, sizeof err), 0);
    set_ok(&c, "listen", "127.0.0.1:8080");

    set_ok(&c, "max_width", "64");
    expect_invalid(&c, "default_width: 128 is above max_width (64)");
    set_ok(&c, "max_width", "512");
    set_ok(&c, "max_frames", "8");
    expect_invalid(&c, "default_frames: 16 is above max_frames (8)");
    set_ok(&c, "max_frames", "64");

    /* values set directly in the struct are checked too */
    free(c.log_level);
    c.log_level = strdup("loud");
    expect_invalid(&c, "log_level: 'loud' is not one of debug|info|warn|error");
    free(c.log_level);
    c.log_level = strdup("warn");
    free(c.device);
    c.device = strdup("gpu");
    expect_invalid(&c, "device: 'gpu' is not one of auto|cpu|cuda");
    vd_server_config_free(&c);
}

static void test_copy_and_reload(void **state)
{
    (void)state;
    vd_server_config running;
    vd_server_config_defaults(&running);
    set_ok(&running, "api_keys", "a,b");
    set_ok(&running, "max_queue", "10");

    /* a reload with an error: the copy and the running configuration are both untouched */
    vd_server_config next;
    vd_server_config_copy(&next, &running);
    char path[64], err[512];
    assert_int_equal(load_text(&next, "max_queue: 20\nmax_frames: none\n", path, err, sizeof err), -1);
    assert_contains(err, ":2: max_frames:");
    assert_configs_equal(&next, &running);
    assert_int_equal(next.max_queue, 10);
    vd_server_config_free(&next);

    /* a good reload changes the copy only, which then replaces the running one */
    vd_server_config_copy(&next, &running);
    assert_ptr_not_equal(next.api_keys, running.api_keys);
    assert_int_equal(load_text(&next, "max_queue: 20\napi_keys: [c]\n", path, err, sizeof err), 0);
    assert_int_equal(next.max_queue, 20);
    assert_int_equal(next.api_key_count, 1);
    assert_int_equal(running.max_queue, 10);
    assert_int_equal(running.api_key_count, 2);
    assert_string_equal(running.api_keys[1], "b");
    vd_server_config_free(&running);
    running = next;
    assert_string_equal(running.api_keys[0], "c");
    vd_server_config_free(&running);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_default_file_parses_back),
        cmocka_unit_test(test_shipped_file_is_the_default_file),
        cmocka_unit_test(test_load_values),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_copy_and_reload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
