/* test_safetensors.c: the safetensors reader and writer, the model config parser and the model
 * loader, fed good files and every kind of malformed one. A malformed input must be rejected
 * with a message that names the problem; nothing may crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "config.h"
#include "model.h"
#include "safetensors.h"
#include "tokenizer.h"

/* A file image: 8-byte length, header text, then data bytes. */
static uint8_t *make_file(const char *header, const uint8_t *data, size_t data_len, size_t *size)
{
    size_t hlen = strlen(header);
    *size = 8 + hlen + data_len;
    uint8_t *b = vd_malloc(*size);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    memcpy(b + 8, header, hlen);
    if (data_len) memcpy(b + 8 + hlen, data, data_len);
    return b;
}

/* Creates the file that path's template (ending in XXXXXX) names, empty. */
static void make_temp_file(char *path)
{
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
}

static void expect_reject(const char *header, size_t data_len, const char *fragment)
{
    uint8_t data[64] = {0};
    size_t size;
    uint8_t *b = make_file(header, data, data_len, &size);
    vd_st_file f;
    char err[256] = "";
    assert_int_equal(vd_st_parse(b, size, &f, err, sizeof err), -1);
    if (!strstr(err, fragment)) fail_msg("for header %s: message \"%s\" lacks \"%s\"", header, err, fragment);
    free(b);
}

static void test_parse_good(void **state)
{
    (void)state;
    float values[3] = {1.5f, -2.0f, 3.25f};
    size_t size;
    uint8_t *b = make_file("{\"__metadata__\":{\"k\":\"v\"},\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}",
                           (const uint8_t *)values, 12, &size);
    vd_st_file f;
    char err[256];
    assert_int_equal(vd_st_parse(b, size, &f, err, sizeof err), 0);
    assert_int_equal(f.count, 1);
    assert_string_equal(vd_st_meta(&f, "k"), "v");
    assert_null(vd_st_meta(&f, "missing"));
    const vd_st_tensor *t = vd_st_find(&f, "a");
    assert_non_null(t);
    float out[3];
    assert_int_equal(vd_st_to_f32(t, out), 0);
    assert_memory_equal(out, values, sizeof values);
    vd_st_free(&f);
    free(b);
}

static void test_parse_malformed(void **state)
{
    (void)state;
    expect_reject("{", 0, "not valid JSON");
    expect_reject("[1,2]", 0, "not a JSON object");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "outside the data area");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16, "bytes for 3 elements");
    expect_reject("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unsupported dtype");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "dimension 0");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "outside the data area");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 8, "outside the data area");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets");
    expect_reject("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "missing dtype");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap");
    expect_reject("{\"__metadata__\":{\"k\":3}}", 0, "not a string");
    expect_reject("{\"a\":5}", 0, "not an object");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,4]}}", 4,
                  "too many elements");
}

static void test_parse_bad_lengths(void **state)
{
    (void)state;
    vd_st_file f;
    char err[256];
    uint8_t tiny[4] = {1, 2, 3, 4};
    assert_int_equal(vd_st_parse(tiny, sizeof tiny, &f, err, sizeof err), -1);
    assert_non_null(strstr(err, "too short"));

    uint8_t huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    assert_int_equal(vd_st_parse(huge, sizeof huge, &f, err, sizeof err), -1);
    assert_non_null(strstr(err, "exceeds the limit"));

    uint8_t past[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    assert_int_equal(vd_st_parse(past, sizeof past, &f, err, sizeof err), -1);
    assert_non_null(strstr(err, "past the end"));
}

/* Every prefix of a good file is rejected cleanly, never accepted or crashed on. */
static void test_truncations(void **state)
{
    (void)state;
    float values[4] = {1, 2, 3, 4};
    size_t size;
    uint8_t *b = make_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}",
                           (const uint8_t *)values, 16, &size);
    for (size_t cut = 0; cut < size; cut++) {
        vd_st_file f;
        char err[256];
        assert_int_equal(vd_st_parse(b, cut, &f, err, sizeof err), -1);
        assert_true(strlen(err) > 0);
    }
    free(b);
}

/* Saves w to path (and frees it), then reads the file back into f. */
static void save_and_read(vd_st_writer *w, const char *path, vd_st_file *f)
{
    char err[256];
    assert_int_equal(vd_st_writer_save(w, path, err, sizeof err), 0);
    vd_st_writer_free(w);
    assert_int_equal(vd_st_read(path, f, err, sizeof err), 0);
}

static void test_write_read_round_trip(void **state)
{
    (void)state;
    char path[] = "/tmp/vdmini-st-XXXXXX";
    make_temp_file(path);
    float a[6] = {0.1f, -1e-3f, 3.0f, 1e6f, -0.0f, 42.5f};
    int64_t shape[2] = {2, 3};
    int32_t ids[3] = {7, -1, 12345};
    int64_t ishape[1] = {3};
    vd_st_writer *w = vd_st_writer_new();
    vd_st_writer_meta(w, "note", "round trip");
    vd_st_writer_add_f32(w, "a32", VD_ST_F32, a, 2, shape);
    vd_st_writer_add_f32(w, "a16", VD_ST_BF16, a, 2, shape);
    vd_st_writer_add_raw(w, "ids", VD_ST_I32, ids, 1, ishape);
    vd_st_file f;
    save_and_read(w, path, &f);
    assert_string_equal(vd_st_meta(&f, "note"), "round trip");
    float out[6];
    assert_int_equal(vd_st_to_f32(vd_st_find(&f, "a32"), out), 0);
    assert_memory_equal(out, a, sizeof a);
    assert_int_equal(vd_st_to_f32(vd_st_find(&f, "a16"), out), 0);
    for (int i = 0; i < 6; i++) assert_true(fabsf(out[i] - a[i]) <= fabsf(a[i]) / 128.0f);
    const vd_st_tensor *t = vd_st_find(&f, "ids");
    assert_int_equal(t->dtype, VD_ST_I32);
    assert_memory_equal(t->data, ids, sizeof ids);
    assert_int_equal(vd_st_to_f32(t, out), -1);
    vd_st_free(&f);
    unlink(path);
    char err[256];
    assert_int_equal(vd_st_read(path, &f, err, sizeof err), -1); /* gone: refused */
}

static void test_bf16_rounding(void **state)
{
    (void)state;
    assert_int_equal(vd_f32_to_bf16(1.0f), 0x3f80);
    assert_true(vd_bf16_to_f32(vd_f32_to_bf16(1.00390625f)) == 1.0f);       /* ties to even: down */
    assert_true(vd_bf16_to_f32(vd_f32_to_bf16(1.01171875f)) == 1.015625f);  /* ties to even: up */
    assert_true(isnan(vd_bf16_to_f32(vd_f32_to_bf16(NAN))));
    assert_true(isinf(vd_bf16_to_f32(vd_f32_to_bf16(INFINITY))));
}

static void test_e4m3(void **state)
{
    (void)state;
    for (int code = 0; code < 256; code++) { /* every value survives the round trip */
        float v = vd_e4m3_to_f32((uint8_t)code);
        if ((code & 0x7f) == 0x7f) assert_true(isnan(v));
        else if (vd_f32_to_e4m3(v) != code) fail_msg("code 0x%02x (%g) came back 0x%02x", code, v, vd_f32_to_e4m3(v));
    }
    assert_int_equal(vd_f32_to_e4m3(1.0f), 0x38);
    assert_int_equal(vd_f32_to_e4m3(448.0f), 0x7e);
    assert_int_equal(vd_f32_to_e4m3(1e6f), 0x7e);             /* saturates */
    assert_int_equal(vd_f32_to_e4m3(-INFINITY), 0xfe);
    assert_int_equal(vd_f32_to_e4m3(0x1p-9f), 0x01);          /* the least subnormal */
    assert_int_equal(vd_f32_to_e4m3(0x1p-10f), 0x00);         /* half of it: ties to even, 0 */
    assert_int_equal(vd_f32_to_e4m3(0x1.8p-10f), 0x01);
    assert_int_equal(vd_f32_to_e4m3(0x1.ep-7f), 0x08);        /* 15/16 of the least normal rounds up to it */
    assert_int_equal(vd_f32_to_e4m3(-1.0625f), 0xb8);         /* ties to even: down */
    assert_int_equal(vd_f32_to_e4m3(1.1875f), 0x3a);          /* ties to even: up */
    assert_int_equal(vd_f32_to_e4m3(15.75f), 0x58);           /* rounds into the next binade: 16 */
    assert_true(isnan(vd_e4m3_to_f32(vd_f32_to_e4m3(NAN))));
    /* the nearest value, never more than half a step away */
    uint64_t x = 12345;
    for (int i = 0; i < 10000; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        float v = ldexpf((float)(x >> 40) / (1 << 24), (int)(x >> 32 & 15) - 10) * ((x >> 8 & 1) ? -1.0f : 1.0f);
        float back = vd_e4m3_to_f32(vd_f32_to_e4m3(v)), a = fabsf(v);
        int e;
        frexpf(a, &e);
        float step = ldexpf(1.0f, (e - 1 < -6 ? -6 : e - 1) - 3);
        if (a < 448.0f && fabsf(back - v) > step / 2) fail_msg("%g came back %g", v, back);
    }
}

static void test_f8_files(void **state)
{
    (void)state;
    char path[] = "/tmp/vdmini-st-XXXXXX";
    make_temp_file(path);
    float a[5] = {0.1f, -3.0f, 0.002f, 0.0f, 1.7f};
    int64_t shape[1] = {5};
    vd_st_writer *w = vd_st_writer_new();
    vd_st_writer_add_f32(w, "a", VD_ST_F8_E4M3, a, 1, shape);
    vd_st_file f;
    save_and_read(w, path, &f);
    const vd_st_tensor *t = vd_st_find(&f, "a");
    assert_int_equal(t->dtype, VD_ST_F8_E4M3);
    assert_int_equal(t->nbytes, 5);
    assert_true(fabsf(t->scale - 3.0f / 448.0f) < 1e-9f);
    float out[5];
    assert_int_equal(vd_st_to_f32(t, out), 0);
    assert_true(fabsf(out[1] + 3.0f) < 1e-6f); /* the largest magnitude is kept */
    assert_true(out[3] == 0.0f);
    for (int i = 0; i < 5; i++) /* within half a step of its binade, or of the least subnormal's */
        if (fabsf(out[i] - a[i]) > fmaxf(fabsf(a[i]) / 16.0f, t->scale * 0x1p-10f))
            fail_msg("value %d: %g came back %g", i, a[i], out[i]);
    vd_st_free(&f);
    unlink(path);

    expect_reject("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, "without its scale");
    expect_reject("{\"__metadata__\":{\"vdmini.scale.a\":\"2\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
                  "\"data_offsets\":[0,4]}}", 4, "not an F8_E4M3 tensor");
    expect_reject("{\"__metadata__\":{\"vdmini.scale.b\":\"2\"},\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],"
                  "\"data_offsets\":[0,1]}}", 1, "not an F8_E4M3 tensor");
    const char *bad[] = {"-1", "0", "x", "inf", "nan", "1e39", "2 "};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char header[256];
        snprintf(header, sizeof header, "{\"__metadata__\":{\"vdmini.scale.a\":\"%s\"},\"a\":{\"dtype\":\"F8_E4M3\","
                 "\"shape\":[1],\"data_offsets\":[0,1]}}", bad[i]);
        expect_reject(header, 1, "not a positive number");
    }
}

static void expect_config_error(const char *json, const char *fragment)
{
    vd_model_config c;
    char err[256] = "";
    assert_int_equal(vd_config_parse(json, &c, err, sizeof err), -1);
    if (!strstr(err, fragment)) fail_msg("config %s: message \"%s\" lacks \"%s\"", json, err, fragment);
}

static void test_config(void **state)
{
    (void)state;
    vd_model_config c, back;
    assert_int_equal(vd_config_preset("tiny", &c), 0);
    char *json = vd_config_to_json(&c);
    char err[256];
    assert_int_equal(vd_config_parse(json, &back, err, sizeof err), 0);
    char *again = vd_config_to_json(&back);
    assert_string_equal(json, again); /* the JSON form is a fixed point */
    free(json), free(again);
    vd_config_free(&c), vd_config_free(&back);
    assert_int_equal(vd_config_preset("nonesuch", &c), -1);

    expect_config_error("{", "not valid JSON");
    expect_config_error("{\"format\":\"other\"}", "format");
    expect_config_error("{\"format\":\"vdmini\",\"ae\":{\"channels\":[30],\"latent_channels\":4,\"groups\":8,\"image_size\":64}}",
                        "not divisible by groups");
    expect_config_error("{\"format\":\"vdmini\",\"text\":{\"vocab\":[\"a\",\"b\"],\"max_tokens\":4,\"dim\":8,\"layers\":1,\"heads\":2}}",
                        "must start with");
    expect_config_error("{\"format\":\"vdmini\",\"text\":{\"vocab\":[\"<pad>\",\"<unk>\"],\"max_tokens\":4,\"dim\":9,\"layers\":1,\"heads\":2}}",
                        "not divisible by text.heads");
    expect_config_error("{\"format\":\"vdmini\",\"unet\":{\"channels\":[32,64],\"attention\":[false],\"blocks_per_level\":2,"
                        "\"head_dim\":32,\"groups\":16,\"in_channels\":9,\"out_channels\":4,\"context_dim\":64,\"frames\":4,"
                        "\"latent_size\":[8,8]}}", "2 levels");
    expect_config_error("{\"format\":\"vdmini\",\"unet\":{\"channels\":[32,64],\"attention\":[false,true],\"blocks_per_level\":2,"
                        "\"head_dim\":32,\"groups\":16,\"in_channels\":9,\"out_channels\":4,\"context_dim\":64,\"frames\":4,"
                        "\"latent_size\":[8,8],\"removed\":[\"down.5.0\"]}}", "not a block");
    expect_config_error("{\"format\":\"vdmini\",\"unet\":{\"channels\":[32,64],\"attention\":[false,true],\"blocks_per_level\":2,"
                        "\"head_dim\":32,\"groups\":16,\"in_channels\":9,\"out_channels\":4,\"context_dim\":64,\"frames\":4,"
                        "\"latent_size\":[8,8],\"removed\":[\"temporal.2\"]}}", "\"temporal.2\" is not a block, temporal.<level> or <block>.attn unit");
    expect_config_error("{\"format\":\"vdmini\",\"unet\":{\"channels\":[32,64],\"attention\":[false,true],\"blocks_per_level\":2,"
                        "\"head_dim\":32,\"groups\":16,\"in_channels\":9,\"out_channels\":4,\"context_dim\":64,\"frames\":4,"
                        "\"latent_size\":[8,8],\"removed\":[\"down.0.1.attn\"]}}", "\"down.0.1.attn\" is not a block"); /* no attention at level 0 */
    expect_config_error("{\"format\":\"vdmini\",\"unet\":{\"channels\":[32,64],\"attention\":[false,true],\"blocks_per_level\":2,"
                        "\"head_dim\":32,\"groups\":16,\"in_channels\":9,\"out_channels\":4,\"context_dim\":64,\"frames\":4,"
                        "\"latent_size\":[8,8],\"removed\":[\"up.1.2.attnx\"]}}", "\"up.1.2.attnx\" is not a block");
    expect_config_error("{\"format\":\"vdmini\",\"unet\":{\"channels\":[32,64],\"attention\":[false,true],\"blocks_per_level\":2,"
                        "\"head_dim\":32,\"groups\":16,\"in_channels\":9,\"out_channels\":4,\"context_dim\":64,\"frames\":4,"
                        "\"latent_size\":[8,8],\"removed\":[\"mid.attn\",\"up.1.0\",\"mid\"]}}",
                        "\"mid.attn\" names the attention of a removed block");
    expect_config_error("{\"format\":\"vdmini\",\"unet\":{\"channels\":[32,64],\"attention\":[false,true],\"blocks_per_level\":2,"
                        "\"head_dim\":32,\"groups\":16,\"in_channels\":9,\"out_channels\":4,\"context_dim\":64,\"frames\":4,"
                        "\"latent_size\":[8,8],\"removed\":[\"temporal.1\",\"mid\",\"temporal.1\"]}}", "removed[2]: \"temporal.1\" is named twice");
    expect_config_error("{\"format\":\"vdmini\",\"unet\":{\"channels\":\"x\"}}", "unet.channels");
    expect_config_error("{\"format\":\"vdmini\",\"sampling\":{\"guidance\":0.5}}", "sampling.guidance: 0.5 is outside");
    expect_config_error("{\"format\":\"vdmini\",\"sampling\":{\"guidance\":\"1\"}}", "sampling.guidance: not a number");
    expect_config_error("{\"format\":\"vdmini\",\"sampling\":{}}", "sampling.guidance: required");
    expect_config_error("{\"format\":\"vdmini\",\"sampling\":{\"guidance\":1,\"steps\":4}}", "unknown field \"steps\"");
    expect_config_error("{\"format\":\"vdmini\",\"sampling\":[1]}", "sampling: not a JSON object");
}

/* A model's recorded sampling guidance (a guidance-distilled student's) survives the JSON form;
 * one without records none and writes no "sampling". */
static void test_config_sampling(void **state)
{
    (void)state;
    vd_model_config c, back;
    char err[256];
    assert_int_equal(vd_config_preset("tiny", &c), 0);
    char *plain = vd_config_to_json(&c);
    assert_null(strstr(plain, "sampling"));
    assert_int_equal(vd_config_parse(plain, &back, err, sizeof err), 0);
    assert_true(back.sampling.guidance == 0.0f);
    vd_config_free(&back);
    c.sampling.guidance = 1.0f;
    char *json = vd_config_to_json(&c);
    assert_non_null(strstr(json, "\"sampling\":{\"guidance\":1"));
    assert_int_equal(vd_config_parse(json, &back, err, sizeof err), 0);
    assert_true(back.sampling.guidance == 1.0f);
    char *again = vd_config_to_json(&back);
    assert_string_equal(json, again);
    free(plain), free(json), free(again);
    vd_config_free(&c), vd_config_free(&back);
}

/* write_one PATH META_PARTS TENSOR...: a file of 4-float tensors named as given, with
 * VD_ST_PARTS_KEY set to META_PARTS unless it is NULL */
static void write_one(const char *path, const char *parts, const char *const *names, int count)
{
    vd_st_writer *w = vd_st_writer_new();
    if (parts) vd_st_writer_meta(w, VD_ST_PARTS_KEY, parts);
    const float values[4] = {1, 2, 3, 4};
    const int64_t shape[1] = {4};
    for (int i = 0; i < count; i++) vd_st_writer_add_f32(w, names[i], VD_ST_F32, values, 1, shape);
    char err[256];
    assert_int_equal(vd_st_writer_save(w, path, err, sizeof err), 0);
    vd_st_writer_free(w);
}

/* A model saved in parts of at most a limit: every file within it, the first naming the others,
 * and reading the first gives every weight back; a model that fits is one file. Parts that are
 * bad (a folder in the name, a missing file, a part of a part, a tensor twice) are refused with a
 * message, and so is a tensor larger than the limit. */
static void test_model_parts(void **state)
{
    (void)state;
    vd_model_config c;
    assert_int_equal(vd_config_preset("tiny", &c), 0);
    vd_model m, back;
    char err[256], dir[] = "/tmp/vdmini-parts-XXXXXX", path[300], other[300];
    assert_non_null(mkdtemp(dir));
    assert_int_equal(vd_model_build(&m, &c, err, sizeof err), 0);
    vd_model_init_random(&m, 11);
    size_t whole = m.total * sizeof(float), limit = whole / 3 + (64 << 10);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(vd_model_save_parts(&m, path, VD_ST_F32, limit, err, sizeof err), 0);
    vd_st_file f;
    assert_int_equal(vd_st_read(path, &f, err, sizeof err), 0);
    const char *parts = vd_st_meta(&f, VD_ST_PARTS_KEY);
    assert_non_null(parts);
    assert_true(f.part_count >= 2);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true((size_t)st.st_size <= limit);
    for (int k = 2; k <= f.part_count + 1; k++) { /* named in order, each within the limit */
        char name[64];
        snprintf(name, sizeof name, "model-part-%d.safetensors", k);
        assert_non_null(strstr(parts, name));
        snprintf(other, sizeof other, "%s/%s", dir, name);
        assert_int_equal(stat(other, &st), 0);
        assert_true((size_t)st.st_size <= limit);
    }
    vd_st_free(&f);
    assert_int_equal(vd_model_load(&back, path, err, sizeof err), 0);
    assert_memory_equal(back.host, m.host, whole);
    vd_model_free(&back);
    /* fits in one file: no parts */
    snprintf(other, sizeof other, "%s/one.safetensors", dir);
    assert_int_equal(vd_model_save_parts(&m, other, VD_ST_F32, 2 * whole, err, sizeof err), 0);
    assert_int_equal(vd_st_read(other, &f, err, sizeof err), 0);
    assert_null(vd_st_meta(&f, VD_ST_PARTS_KEY));
    vd_st_free(&f);
    /* a tensor larger than the limit */
    assert_int_equal(vd_model_save_parts(&m, other, VD_ST_F32, 4096, err, sizeof err), -1);
    assert_non_null(strstr(err, "does not fit"));

    const char *a[] = {"a"}, *b[] = {"b"};
    struct {
        const char *parts, *fragment;
    } bad[] = {{"../b.safetensors", "bad part name"}, {"sub/b.safetensors", "bad part name"},
               {"missing.safetensors", "missing.safetensors"}, {"nested.safetensors", "parts of its own"},
               {"twice.safetensors", "earlier part too"}};
    snprintf(other, sizeof other, "%s/nested.safetensors", dir);
    write_one(other, "b.safetensors", b, 1);
    snprintf(other, sizeof other, "%s/twice.safetensors", dir);
    write_one(other, NULL, a, 1);
    snprintf(path, sizeof path, "%s/first.safetensors", dir);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_one(path, bad[i].parts, a, 1);
        assert_int_equal(vd_st_read(path, &f, err, sizeof err), -1);
        if (!strstr(err, bad[i].fragment)) fail_msg("parts %s: %s", bad[i].parts, err);
    }
    vd_model_free(&m);
    vd_config_free(&c);
    char command[400];
    snprintf(command, sizeof command, "rm -rf %s", dir);
    assert_int_equal(system(command), 0);
}

/* A tiny model saved and loaded back, then files that do not match their config. */
static void test_model_files(void **state)
{
    (void)state;
    vd_model_config c;
    assert_int_equal(vd_config_preset("tiny", &c), 0);
    vd_model m, back;
    char err[256], path[] = "/tmp/vdmini-model-XXXXXX";
    assert_int_equal(vd_model_build(&m, &c, err, sizeof err), 0);
    vd_model_init_random(&m, 7);
    make_temp_file(path);
    assert_int_equal(vd_model_save(&m, path, VD_ST_F32, err, sizeof err), 0);
    assert_int_equal(vd_model_load(&back, path, err, sizeof err), 0);
    assert_int_equal(back.total, m.total);
    assert_memory_equal(back.host, m.host, m.total * sizeof(float));
    vd_model_free(&back);

    /* a file holding one tensor too few */
    vd_st_file f;
    assert_int_equal(vd_st_read(path, &f, err, sizeof err), 0);
    f.count--;
    assert_int_equal(vd_model_load_file(&back, &f, err, sizeof err), -1);
    assert_non_null(strstr(err, "is missing"));
    f.count++;
    /* a tensor of the wrong shape */
    f.tensors[0].shape[0]++;
    assert_int_equal(vd_model_load_file(&back, &f, err, sizeof err), -1);
    assert_non_null(strstr(err, "wrong shape"));
    f.tensors[0].shape[0]--;
    /* a tensor the config does not describe */
    free(f.tensors[0].name);
    f.tensors[0].name = strdup("unet.extra.weight");
    assert_int_equal(vd_model_load_file(&back, &f, err, sizeof err), -1);
    vd_st_free(&f);
    unlink(path);

    /* no config at all */
    vd_st_writer *w = vd_st_writer_new();
    float one = 1;
    int64_t shape[1] = {1};
    vd_st_writer_add_f32(w, "x", VD_ST_F32, &one, 1, shape);
    assert_int_equal(vd_st_writer_save(w, path, err, sizeof err), 0);
    vd_st_writer_free(w);
    assert_int_equal(vd_model_load(&back, path, err, sizeof err), -1);
    assert_non_null(strstr(err, "vdmini.config"));
    unlink(path);
    vd_model_free(&m);
    vd_config_free(&c);
}

/* Removing blocks removes exactly their parameters and keeps the skip wiring buildable. */
static void test_removed_blocks(void **state)
{
    (void)state;
    vd_model_config c;
    assert_int_equal(vd_config_preset("tiny", &c), 0);
    vd_model full, pruned;
    char err[256];
    assert_int_equal(vd_model_build(&full, &c, err, sizeof err), 0);
    const char *drop[] = {"down.0.1", "up.0.2", "mid"};
    c.unet.removed = vd_realloc(c.unet.removed, 3 * sizeof(char *));
    for (int i = 0; i < 3; i++) c.unet.removed[i] = strdup(drop[i]);
    c.unet.removed_count = 3;
    assert_int_equal(vd_model_build(&pruned, &c, err, sizeof err), 0);
    assert_int_equal(vd_model_count_params(&pruned, "unet.down.0.1."), 0);
    assert_int_equal(vd_model_count_params(&pruned, "unet.mid."), 0);
    assert_true(vd_model_count_params(&full, "unet.mid.") > 0);
    assert_true(pruned.total < full.total);
    /* down.0.0 keeps its weights' shapes */
    const vd_param *a = vd_model_param(&full, "unet.down.0.0.res.conv1.weight");
    const vd_param *b = vd_model_param(&pruned, "unet.down.0.0.res.conv1.weight");
    assert_non_null(a), assert_non_null(b);
    assert_memory_equal(a->shape, b->shape, sizeof a->shape);
    char names[64][16];
    int n = vd_unet_block_names(&c.unet, names, 64);
    for (int i = 0; i < n; i++) {
        assert_string_not_equal(names[i], "mid");
        assert_string_not_equal(names[i], "down.0.1");
    }
    vd_model_free(&full), vd_model_free(&pruned);
    vd_config_free(&c);
}

/* Removing a level's temporal layers removes its blocks' temporal convs and temporal attentions
 * and nothing else (here beside mid, whose own go with the deepest level's); the removed list
 * round-trips through JSON. */
static void test_removed_temporal_units(void **state)
{
    (void)state;
    vd_model_config c, back;
    assert_int_equal(vd_config_preset("tiny", &c), 0);
    vd_model full, pruned;
    char err[256];
    assert_int_equal(vd_model_build(&full, &c, err, sizeof err), 0);
    char names[64][16];
    int n = vd_unet_removable_units(&c.unet, names, 64); /* 16 blocks, 3 temporal units, 11 attention parts */
    assert_int_equal(n, 30);
    assert_string_equal(names[16], "temporal.0");
    assert_string_equal(names[18], "temporal.2");
    assert_string_equal(names[19], "down.1.0.attn");
    assert_string_equal(names[n - 1], "up.1.2.attn");
    c.unet.removed = vd_realloc(c.unet.removed, 2 * sizeof(char *));
    c.unet.removed[0] = strdup("temporal.2"), c.unet.removed[1] = strdup("mid");
    c.unet.removed_count = 2;
    char *json = vd_config_to_json(&c);
    assert_int_equal(vd_config_parse(json, &back, err, sizeof err), 0);
    free(json);
    assert_true(vd_unet_temporal_removed(&back.unet, 2) && !vd_unet_temporal_removed(&back.unet, 1));
    assert_int_equal(vd_model_build(&pruned, &back, err, sizeof err), 0);
    size_t gone = 0;
    for (int i = 0; i < full.nparams; i++) {
        const char *name = full.params[i].name;
        if (vd_model_param(&pruned, name)) continue;
        gone += full.params[i].numel;
        int in_mid = strncmp(name, "unet.mid.", 9) == 0;
        int temporal = strstr(name, ".tconv.") || strstr(name, ".res.norm3.") || strstr(name, ".res1.norm3.") ||
                       strstr(name, ".res2.norm3.") || strstr(name, ".norm_t.") || strstr(name, ".attn_t.");
        int deepest = strncmp(name, "unet.down.2.", 12) == 0 || strncmp(name, "unet.up.2.", 10) == 0;
        if (!in_mid && !(temporal && deepest)) fail_msg("%s should have been kept", name);
    }
    assert_int_equal(full.total - pruned.total, gone);
    assert_null(vd_model_param(&pruned, "unet.up.2.0.attn.attn_t.to_q.weight"));
    assert_non_null(vd_model_param(&pruned, "unet.up.2.0.attn.norm3.weight"));
    assert_non_null(vd_model_param(&pruned, "unet.up.1.0.attn.attn_t.to_q.weight"));
    n = vd_unet_removable_units(&back.unet, names, 64);
    for (int i = 0; i < n; i++) assert_string_not_equal(names[i], "temporal.2");
    vd_model_free(&full), vd_model_free(&pruned);
    vd_config_free(&c), vd_config_free(&back);
}

/* Removing a block's attention part removes its AttnBlock3D's parameters (the temporal
 * self-attention in it too) and nothing else; the block's ResBlock3D stays, and the unit is no
 * longer offered for removal while the block still is. */
static void test_removed_attention_units(void **state)
{
    (void)state;
    vd_model_config c;
    assert_int_equal(vd_config_preset("tiny", &c), 0);
    vd_model full, pruned;
    char err[256];
    assert_int_equal(vd_model_build(&full, &c, err, sizeof err), 0);
    c.unet.removed = vd_realloc(c.unet.removed, 2 * sizeof(char *));
    c.unet.removed[0] = strdup("up.1.0.attn"), c.unet.removed[1] = strdup("mid.attn");
    c.unet.removed_count = 2;
    assert_int_equal(vd_model_build(&pruned, &c, err, sizeof err), 0);
    size_t gone = 0, attention = 0;
    for (int i = 0; i < full.nparams; i++) {
        const char *name = full.params[i].name;
        int part = strncmp(name, "unet.up.1.0.attn.", 17) == 0 || strncmp(name, "unet.mid.attn.", 14) == 0;
        attention += part ? full.params[i].numel : 0;
        if (vd_model_param(&pruned, name)) {
            if (part) fail_msg("%s should have been removed", name);
            continue;
        }
        gone += full.params[i].numel;
        if (!part) fail_msg("%s should have been kept", name);
    }
    assert_true(attention > 0);
    assert_int_equal(gone, attention);
    assert_int_equal(full.total - pruned.total, gone);
    assert_non_null(vd_model_param(&pruned, "unet.up.1.0.res.conv1.weight"));
    assert_non_null(vd_model_param(&pruned, "unet.mid.res2.conv2.weight"));
    char names[64][16];
    int n = vd_unet_removable_units(&c.unet, names, 64), block = 0, part = 0;
    for (int i = 0; i < n; i++) {
        block |= strcmp(names[i], "up.1.0") == 0;
        part |= strcmp(names[i], "up.1.0.attn") == 0 || strcmp(names[i], "mid.attn") == 0;
    }
    assert_true(block && !part);
    assert_int_equal(n, 28);
    vd_model_free(&full), vd_model_free(&pruned);
    vd_config_free(&c);
}

static void test_tokenizer(void **state)
{
    (void)state;
    char *vocab[] = {"<pad>", "<unk>", "a", "red", "circle", "moves", "left"};
    vd_text_config t = {.present = 1, .vocab_size = 7, .vocab = vocab, .max_tokens = 6};
    int32_t ids[6];
    char unknown[64];
    assert_int_equal(vd_tokenize(&t, "A RED circle, moves... far-left!", ids, unknown, sizeof unknown), 1);
    int32_t want[6] = {2, 3, 4, 5, 1, 6};
    assert_memory_equal(ids, want, sizeof want);
    assert_string_equal(unknown, "far");
    assert_int_equal(vd_tokenize(&t, "", ids, unknown, sizeof unknown), 0);
    for (int i = 0; i < 6; i++) assert_int_equal(ids[i], 0);
    assert_int_equal(vd_tokenize(&t, "a a a a a a a a red", ids, NULL, 0), 0); /* truncated */
    for (int i = 0; i < 6; i++) assert_int_equal(ids[i], 2);
    assert_int_equal(vd_tokenize(&t, "circle2left \xc3\xa9t\xc3\xa9 R\xc3\xa9" "d", ids, unknown, sizeof unknown), 2);
    assert_int_equal(ids[0], 4), assert_int_equal(ids[1], 6), assert_int_equal(ids[2], 1), assert_int_equal(ids[3], 1);
    assert_string_equal(unknown, "\xc3\xa9t\xc3\xa9 r\xc3\xa9" "d");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_parse_bad_lengths), cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_write_read_round_trip), cmocka_unit_test(test_bf16_rounding),
        cmocka_unit_test(test_e4m3),              cmocka_unit_test(test_f8_files),
        cmocka_unit_test(test_config),            cmocka_unit_test(test_config_sampling),
        cmocka_unit_test(test_model_files),
        cmocka_unit_test(test_model_parts),
        cmocka_unit_test(test_removed_blocks),    cmocka_unit_test(test_removed_temporal_units),
        cmocka_unit_test(test_removed_attention_units), cmocka_unit_test(test_tokenizer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
