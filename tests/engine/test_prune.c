/* test_prune.c: VDMini's pruning (engine/prune.c) on a very small teacher — the student has no
 * weights for the removed blocks and the teacher's weights everywhere else (whole, or the leading
 * slice where a block's input narrowed), it saves and loads, pruning nothing gives the same UNet
 * output bit for bit, a student whose channel plan changed still runs, removing a level's
 * temporal layers or a block's attention part drops exactly those weights and their FLOPs and
 * keeps every other weight whole, and bad plans and unit names are refused with a message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "config.h"
#include "flop_count.h"
#include "model.h"
#include "prune.h"
#include "rng.h"
#include "small_model.h"

#define T 2 /* frames */
#define SIDE 8

static vd_model teacher;

/* The teacher: small_model.h's small_teacher, 2 frames of 8x8 latents. */
static int setup(void **state)
{
    (void)state;
    return small_teacher(&teacher, T, SIDE, 11);
}

static int teardown(void **state)
{
    (void)state;
    vd_model_free(&teacher);
    return 0;
}

static void prune_ok(char *const *names, int count, vd_model *student, vd_prune_report *report)
{
    char err[256];
    int rc = vd_prune(&teacher, names, count, 5, student, report, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
}

/* The teacher's flat index for the student's flat index i, or -1 when that element lies outside
 * the block the two shapes share. */
static long teacher_index(const vd_param *s, const vd_param *t, size_t i)
{
    size_t idx[4] = {0}, from = 0;
    for (int d = s->ndim - 1; d >= 0; d--) {
        idx[d] = i % (size_t)s->shape[d];
        i /= (size_t)s->shape[d];
    }
    for (int d = 0; d < s->ndim; d++) {
        if ((int64_t)idx[d] >= t->shape[d]) return -1;
        from = from * (size_t)t->shape[d] + idx[d];
    }
    return (long)from;
}

static void test_kept_weights_are_the_teachers(void **state)
{
    (void)state;
    char *names[] = {"down.0.1", "up.1.0"};
    vd_model student;
    vd_prune_report r;
    prune_ok(names, 2, &student, &r);
    assert_int_equal(r.copied + r.sliced + r.fresh, student.nparams);
    assert_true(r.copied > 0 && r.dropped > 0);
    assert_true(student.total < teacher.total);
    assert_true(vd_unet_block_removed(&student.cfg.unet, "down.0.1") && vd_unet_block_removed(&student.cfg.unet, "up.1.0"));
    int sliced = 0;
    for (int i = 0; i < student.nparams; i++) {
        const vd_param *s = &student.params[i];
        assert_null(strstr(s->name, "unet.down.0.1."));
        assert_null(strstr(s->name, "unet.up.1.0."));
        const vd_param *t = vd_model_param(&teacher, s->name);
        if (!t) continue; /* fresh */
        assert_int_equal(s->ndim, t->ndim);
        int same = 1, shared = 0;
        for (int d = 0; d < s->ndim; d++) same &= s->shape[d] == t->shape[d];
        for (size_t k = 0; k < s->numel; k++) {
            long from = teacher_index(s, t, k);
            if (from < 0) continue;
            assert_memory_equal(&student.host[s->offset + k], &teacher.host[t->offset + (size_t)from], sizeof(float));
            shared++;
        }
        assert_true(shared > 0);
        sliced += !same;
    }
    assert_int_equal(sliced, r.sliced);
    assert_true(r.sliced > 0); /* up.0.2 lost its skip; up.1.2 pops a wider one */
    vd_model_free(&student);
}

static void test_student_saves_and_loads(void **state)
{
    (void)state;
    char *names[] = {"mid"};
    vd_model student, loaded;
    vd_prune_report r;
    prune_ok(names, 1, &student, &r);
    assert_int_equal(r.sliced + r.fresh, 0); /* mid keeps its channels: nothing else changes */
    char path[] = "vdmini-prune-XXXXXX", err[256];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(vd_model_save(&student, path, VD_ST_F32, err, sizeof err), 0);
    int rc = vd_model_load(&loaded, path, err, sizeof err);
    unlink(path);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_true(vd_unet_block_removed(&loaded.cfg.unet, "mid"));
    assert_int_equal(loaded.total, student.total);
    assert_memory_equal(loaded.host, student.host, student.total * sizeof(float));
    vd_model_free(&loaded);
    vd_model_free(&student);
}

/* The UNet's output for fixed inputs on the CPU reference backend, into out (allocated). */
static float *unet_output(vd_model *m, vd_backend *be)
{
    const vd_unet_config *u = &m->cfg.unet;
    int L = m->cfg.text.max_tokens;
    size_t xn = (size_t)T * u->in_channels * SIDE * SIDE, cn = (size_t)L * u->context_dim;
    size_t on = (size_t)T * u->out_channels * SIDE * SIDE;
    float *x = malloc(xn * sizeof(float)), *ctx = malloc(cn * sizeof(float)), t = 500.0f;
    float *out = malloc(on * sizeof(float));
    vd_rng_normal(21, 0, x, xn);
    vd_rng_normal(22, 0, ctx, cn);
    vd_model_attach(m, be);
    float *dx = be->alloc(be, xn * sizeof(float)), *dctx = be->alloc(be, cn * sizeof(float));
    float *dt = be->alloc(be, sizeof(float)), *dout = be->alloc(be, on * sizeof(float));
    be->upload(be, dx, x, xn * sizeof(float));
    be->upload(be, dctx, ctx, cn * sizeof(float));
    be->upload(be, dt, &t, sizeof t);
    vd_unet_forward(m, dx, dt, dctx, L, 1, T, SIDE, SIDE, dout);
    be->download(be, out, dout, on * sizeof(float));
    be->release(be, dx), be->release(be, dctx), be->release(be, dt), be->release(be, dout);
    vd_model_detach(m);
    free(x), free(ctx);
    return out;
}

static void test_pruning_nothing_keeps_the_output(void **state)
{
    (void)state;
    vd_model student;
    vd_prune_report r;
    prune_ok(NULL, 0, &student, &r);
    assert_int_equal(r.copied, teacher.nparams);
    vd_backend *be = vd_backend_cpu_reference();
    float *a = unet_output(&teacher, be), *b = unet_output(&student, be);
    size_t on = (size_t)T * teacher.cfg.unet.out_channels * SIDE * SIDE;
    assert_memory_equal(a, b, on * sizeof(float));
    free(a), free(b);
    be->destroy(be);
    vd_model_free(&student);
}

static void test_narrowed_student_runs(void **state)
{
    (void)state;
    char *names[] = {"down.1.0", "up.0.2"}; /* down.1.0 widens 16 -> 32: down.1.1 reads 16 channels */
    vd_model student;
    vd_prune_report r;
    prune_ok(names, 2, &student, &r);
    assert_true(r.sliced > 0 && r.fresh > 0); /* down.1.1 gets a skip projection the teacher lacks */
    vd_backend *be = vd_backend_cpu_reference();
    float *out = unet_output(&student, be);
    size_t on = (size_t)T * student.cfg.unet.out_channels * SIDE * SIDE;
    for (size_t i = 0; i < on; i++) assert_true(isfinite(out[i]));
    free(out);
    be->destroy(be);
    vd_model_free(&student);
}

/* Whether a teacher parameter is one of level's temporal layers: a ResBlock's norm3 and tconv, an
 * attention block's norm_t and attn_t, in the level's blocks (and mid's at the deepest level). */
static int is_temporal_param(const char *name, int level, int deepest)
{
    int l = -1, b, n = 0;
    if (strncmp(name, "unet.mid.", 9) == 0) l = deepest, n = 9;
    else if (sscanf(name, "unet.down.%d.%d.%n", &l, &b, &n) != 2 && sscanf(name, "unet.up.%d.%d.%n", &l, &b, &n) != 2)
        return 0;
    if (l != level) return 0;
    const char *part = name + n, *layer = strchr(part, '.');
    if (!layer) return 0;
    if (strncmp(part, "res", 3) == 0) return strncmp(layer, ".norm3.", 7) == 0 || strncmp(layer, ".tconv.", 7) == 0;
    return strncmp(layer, ".norm_t.", 8) == 0 || strncmp(layer, ".attn_t.", 8) == 0;
}

static void test_temporal_unit_drops_its_layers(void **state)
{
    (void)state;
    int deepest = teacher.cfg.unet.levels - 1;
    for (int level = 0; level <= deepest; level++) {
        char name[24];
        snprintf(name, sizeof name, "temporal.%d", level);
        char *names[] = {name};
        vd_model student;
        vd_prune_report r;
        prune_ok(names, 1, &student, &r);
        assert_true(vd_unet_temporal_removed(&student.cfg.unet, level));
        assert_int_equal(r.sliced + r.fresh, 0); /* no other shape changes */
        assert_int_equal(r.copied, student.nparams);
        int dropped = 0;
        for (int i = 0; i < teacher.nparams; i++) {
            const vd_param *t = &teacher.params[i], *s = vd_model_param(&student, t->name);
            if (is_temporal_param(t->name, level, deepest)) {
                assert_null(s);
                dropped++;
                continue;
            }
            assert_non_null(s);
            assert_int_equal(s->ndim, t->ndim);
            assert_memory_equal(s->shape, t->shape, (size_t)t->ndim * sizeof *t->shape);
            assert_memory_equal(&student.host[s->offset], &teacher.host[t->offset], t->numel * sizeof(float));
        }
        /* level 0: five blocks' ResBlocks (norm3 and tconv: 4 tensors each); level 1: five blocks'
         * and mid's two ResBlocks, and six attention blocks (norm_t and attn_t: 7 tensors each) */
        assert_int_equal(dropped, level == 0 ? 5 * 4 : 7 * 4 + 6 * 7);
        assert_int_equal(r.dropped, dropped);
        /* its FLOPs per step: level 0's five temporal convs of 16 channels at 8x8; level 1's seven
         * of 32 channels at 4x4, and six temporal attentions (four projections and the scores) */
        double S0 = SIDE * SIDE, S1 = S0 / 4, tconv0 = 2.0 * T * 16 * 16 * 3 * S0, tconv1 = 2.0 * T * 32 * 32 * 3 * S1;
        double attn1 = 4 * 2.0 * S1 * T * 32 * 32 + 4.0 * S1 * T * T * 32;
        double saved = vd_unet_step_flops(&teacher.cfg, 1) - vd_unet_step_flops(&student.cfg, 1);
        assert_true(saved == (level == 0 ? 5 * tconv0 : 7 * tconv1 + 6 * attn1));
        /* the unit is gone: it cannot be removed twice */
        char units[64][16];
        int n = vd_unet_removable_units(&student.cfg.unet, units, 64);
        for (int i = 0; i < n; i++) assert_string_not_equal(units[i], name);
        vd_model again;
        char err[256];
        assert_int_equal(vd_prune(&student, names, 1, 5, &again, &r, err, sizeof err), -1);
        assert_non_null(strstr(err, "not a block, temporal.<level> or <block>.attn unit"));
        vd_model_free(&student);
    }
}

/* A student without temporal layers saves, loads back with its config's removed list, and its
 * UNet runs. */
static void test_temporal_student_saves_loads_and_runs(void **state)
{
    (void)state;
    char *names[] = {"temporal.1", "down.0.1"};
    vd_model student, loaded;
    vd_prune_report r;
    prune_ok(names, 2, &student, &r);
    char path[] = "vdmini-prune-XXXXXX", err[256];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(vd_model_save(&student, path, VD_ST_F32, err, sizeof err), 0);
    int rc = vd_model_load(&loaded, path, err, sizeof err);
    unlink(path);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_true(vd_unet_temporal_removed(&loaded.cfg.unet, 1) && !vd_unet_temporal_removed(&loaded.cfg.unet, 0));
    assert_null(vd_model_param(&loaded, "unet.mid.res2.tconv.weight"));
    assert_non_null(vd_model_param(&loaded, "unet.up.0.0.res.tconv.weight"));
    assert_memory_equal(loaded.host, student.host, student.total * sizeof(float));
    vd_backend *be = vd_backend_cpu_reference();
    float *a = unet_output(&loaded, be), *b = unet_output(&teacher, be);
    size_t on = (size_t)T * student.cfg.unet.out_channels * SIDE * SIDE;
    int differs = 0;
    for (size_t i = 0; i < on; i++) {
        assert_true(isfinite(a[i]));
        differs |= a[i] != b[i];
    }
    assert_true(differs);
    free(a), free(b);
    be->destroy(be);
    vd_model_free(&loaded);
    vd_model_free(&student);
}

/* Removing a block's attention part drops exactly its AttnBlock3D's weights and FLOPs, keeps
 * every other weight whole, leaves the block itself removable, and the student runs. */
static void test_attention_unit_drops_its_part(void **state)
{
    (void)state;
    static const char *const blocks[] = {"down.1.1", "up.1.2", "mid"};
    vd_backend *be = vd_backend_cpu_reference();
    float *want = unet_output(&teacher, be);
    for (size_t k = 0; k < sizeof blocks / sizeof *blocks; k++) {
        char name[24], prefix[40];
        snprintf(name, sizeof name, "%s.attn", blocks[k]);
        snprintf(prefix, sizeof prefix, "unet.%s.attn.", blocks[k]);
        char *names[] = {name};
        vd_model student;
        vd_prune_report r;
        prune_ok(names, 1, &student, &r);
        assert_true(vd_unet_attention_removed(&student.cfg.unet, blocks[k]));
        assert_int_equal(r.sliced + r.fresh, 0);
        assert_int_equal(r.copied, student.nparams);
        int dropped = 0;
        for (int i = 0; i < teacher.nparams; i++) {
            const vd_param *t = &teacher.params[i], *s = vd_model_param(&student, t->name);
            if (strncmp(t->name, prefix, strlen(prefix)) == 0) {
                assert_null(s);
                dropped++;
                continue;
            }
            assert_non_null(s);
            assert_memory_equal(&student.host[s->offset], &teacher.host[t->offset], t->numel * sizeof(float));
        }
        assert_true(dropped > 0);
        assert_int_equal(r.dropped, dropped);
        assert_true(vd_unet_step_flops(&student.cfg, 1) < vd_unet_step_flops(&teacher.cfg, 1));
        char units[64][16];
        int n = vd_unet_removable_units(&student.cfg.unet, units, 64), block = 0;
        for (int i = 0; i < n; i++) {
            assert_string_not_equal(units[i], name);
            block |= strcmp(units[i], blocks[k]) == 0;
        }
        assert_true(block);
        float *got = unet_output(&student, be);
        size_t on = (size_t)T * student.cfg.unet.out_channels * SIDE * SIDE;
        int differs = 0;
        for (size_t i = 0; i < on; i++) {
            assert_true(isfinite(got[i]));
            differs |= got[i] != want[i];
        }
        assert_true(differs);
        free(got);
        vd_model_free(&student);
    }
    free(want);
    be->destroy(be);
}

static void expect_refused(char *const *names, int count, const char *message)
{
    vd_model student;
    vd_prune_report r;
    char err[256] = "";
    assert_int_equal(vd_prune(&teacher, names, count, 5, &student, &r, err, sizeof err), -1);
    if (!strstr(err, message)) fprintf(stderr, "got \"%s\", expected \"%s\"\n", err, message);
    assert_non_null(strstr(err, message));
}

static void test_bad_block_names(void **state)
{
    (void)state;
    char *unknown[] = {"down.7.0"}, *twice[] = {"mid", "mid"}, *no_level[] = {"temporal.2"};
    char *temporal_twice[] = {"temporal.0", "temporal.0"}, *no_attention[] = {"down.0.0.attn"};
    char *with_block[] = {"up.1.2.attn", "up.1.2"};
    char *all[] = {"down.0.0", "down.0.1", "down.1.0", "down.1.1", "mid", "up.1.0", "up.1.1", "up.1.2",
                   "up.0.0", "up.0.1", "up.0.2"};
    expect_refused(unknown, 1, "\"down.7.0\": not a block");
    expect_refused(no_level, 1, "\"temporal.2\": not a block, temporal.<level> or <block>.attn unit");
    expect_refused(no_attention, 1, "\"down.0.0.attn\": not a block, temporal.<level> or <block>.attn unit");
    expect_refused(with_block, 2, "\"up.1.2.attn\": its block \"up.1.2\" is removed too");
    expect_refused(temporal_twice, 2, "\"temporal.0\": named twice");
    expect_refused(twice, 2, "\"mid\": named twice");
    expect_refused(all, 11, "leaves no UNet");
}

static void test_plan_files(void **state)
{
    (void)state;
    static const struct {
        const char *text, *message;
    } cases[] = {
        {"{\"remove\": [\"mid\", \"down.0.1\"]}", NULL},
        {"{\"remove\": [\"mid\"", "line 1"},
        {"{\"blocks\": [\"mid\"]}", "remove: required"},
        {"{\"remove\": [\"mid\"], \"extra\": 1}", "unknown field \"extra\""},
        {"{\"remove\": [\"mid\", 3]}", "remove[1]: not a unit name"},
        {"[\"mid\"]", "remove: required"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char path[] = "vdmini-plan-XXXXXX", err[256] = "";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, cases[i].text, strlen(cases[i].text)), (ssize_t)strlen(cases[i].text));
        close(fd);
        char **names;
        int count;
        int rc = vd_prune_plan_load(path, &names, &count, err, sizeof err);
        unlink(path);
        if (!cases[i].message) {
            assert_int_equal(rc, 0);
            assert_int_equal(count, 2);
            assert_string_equal(names[0], "mid");
            assert_string_equal(names[1], "down.0.1");
            vd_prune_plan_free(names, count);
        } else {
            assert_int_equal(rc, -1);
            if (!strstr(err, cases[i].message)) fprintf(stderr, "case %zu: got \"%s\"\n", i, err);
            assert_non_null(strstr(err, cases[i].message));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kept_weights_are_the_teachers),
        cmocka_unit_test(test_student_saves_and_loads),
        cmocka_unit_test(test_pruning_nothing_keeps_the_output),
        cmocka_unit_test(test_narrowed_student_runs),
        cmocka_unit_test(test_temporal_unit_drops_its_layers),
        cmocka_unit_test(test_temporal_student_saves_loads_and_runs),
        cmocka_unit_test(test_attention_unit_drops_its_part),
        cmocka_unit_test(test_bad_block_names),
        cmocka_unit_test(test_plan_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
