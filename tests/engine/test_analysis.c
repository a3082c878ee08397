/* test_analysis.c: VDMini's block-importance analysis on small_model.h's random teacher whose mid
 * block is made to contribute nothing (the last layer of each of its residual branches zeroed, so
 * it passes its input through unchanged). Removing it must change no frame and no score, so the
 * analysis must rank it least important; every other block, and each level's temporal layers,
 * must change the frames. The JSON report must carry every row and read back. Then the pruning
 * plans' rules on made-up analyses: the order each rule takes blocks and temporal units in, the
 * temporal layers a plan's blocks already take counted once, and a target they cannot reach.
 * Runs on the CPU. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analysis.h"
#include "config.h"
#include "model.h"
#include "small_model.h"

static char model_path[] = "vdmini-analysis-XXXXXX";

/* The residual branches of mid end in these layers: zero them and mid is the identity. */
static const char *const MID_OUTPUTS[] = {"unet.mid.res1.conv2.", "unet.mid.res1.tconv.", "unet.mid.attn.proj_out.",
                                          "unet.mid.res2.conv2.", "unet.mid.res2.tconv."};

static int setup(void **state)
{
    (void)state;
    int fd = mkstemp(model_path);
    if (fd < 0) return -1;
    close(fd);
    vd_model_config mc;
    if (small_model_config(&mc)) return -1;
    vd_model m;
    char err[256];
    int rc = vd_model_build(&m, &mc, err, sizeof err);
    vd_config_free(&mc);
    if (rc) return -1;
    vd_model_init_random(&m, 9);
    int zeroed = 0;
    for (int i = 0; i < m.nparams; i++)
        for (size_t k = 0; k < sizeof MID_OUTPUTS / sizeof *MID_OUTPUTS; k++)
            if (strncmp(m.params[i].name, MID_OUTPUTS[k], strlen(MID_OUTPUTS[k])) == 0) {
                memset(m.host + m.params[i].offset, 0, m.params[i].numel * sizeof(float));
                zeroed++;
            }
    rc = zeroed == 10 ? vd_model_save(&m, model_path, VD_ST_F32, err, sizeof err) : -1;
    if (rc) fprintf(stderr, "setup: %d tensors zeroed: %s\n", zeroed, err);
    vd_model_free(&m);
    return rc;
}

static int teardown(void **state)
{
    (void)state;
    return unlink(model_path);
}

static void test_identity_block_ranks_last(void **state)
{
    (void)state;
    vd_analysis_options o = {.prompts = 2, .steps = 2, .seed = 4, .guidance = 3.0f, .device = VD_DEVICE_CPU};
    vd_analysis *a = malloc(sizeof *a);
    char err[256];
    int rc = vd_analyze(model_path, NULL, ".", &o, NULL, NULL, a, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    /* down.0.0, down.1.0, mid, up.1.0, up.1.1, up.0.0, up.0.1, temporal.0, temporal.1, and the
     * attention parts of level 1's blocks: down.1.0.attn, mid.attn, up.1.0.attn, up.1.1.attn */
    assert_int_equal(a->count, 13);
    assert_string_equal(a->blocks[7].name, "temporal.0");
    assert_string_equal(a->blocks[8].name, "temporal.1");
    assert_string_equal(a->blocks[9].name, "down.1.0.attn");
    assert_string_equal(a->blocks[10].name, "mid.attn");
    const vd_block_importance *mid = NULL, *mid_attn = NULL;
    double least_other = 1e30;
    for (int b = 0; b < a->count; b++) {
        const vd_block_importance *bi = &a->blocks[b];
        assert_true(bi->param_share > 0 && bi->param_share < 1);
        assert_true(bi->flop_share > 0 && bi->flop_share < 1);
        /* measured, so noisy at this size: a share, not a ranking */
        assert_true(isfinite(bi->latency_share) && bi->latency_share > -1 && bi->latency_share < 1);
        if (strcmp(bi->name, "mid") == 0) mid = bi;
        else if (strcmp(bi->name, "mid.attn") == 0) mid_attn = bi; /* a part of the identity */
        else if (bi->output_change < least_other) least_other = bi->output_change;
    }
    assert_non_null(mid);
    assert_true(mid->output_change == 0.0);
    assert_true(mid->content_drop == 0.0 && mid->motion_drop == 0.0 && mid->direction_drop == 0.0);
    assert_non_null(mid_attn);
    assert_true(mid_attn->output_change == 0.0);
    assert_true(a->has_direction && a->direction >= 0 && a->direction <= 1);
    assert_true(least_other > 1e-6);

    char *text = vd_analysis_json(a);
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    assert_non_null(root);
    json_t *rows = json_object_get(root, "blocks");
    assert_int_equal(json_array_size(rows), (size_t)a->count);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(rows, 7), "level")), 0);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(rows, 8), "level")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(rows, 9), "level")), 1);
    assert_non_null(json_object_get(json_object_get(root, "observation"), "holds"));
    json_decref(root);
    vd_analysis *back = malloc(sizeof *back);
    assert_int_equal(vd_analysis_from_json(text, back, err, sizeof err), 0);
    assert_int_equal(back->count, a->count);
    assert_int_equal(back->levels, 2);
    assert_true(back->has_direction && fabs(back->direction - a->direction) < 1e-12);
    for (int b = 0; b < a->count; b++) {
        assert_string_equal(back->blocks[b].name, a->blocks[b].name);
        assert_true(fabs(back->blocks[b].param_share - a->blocks[b].param_share) < 1e-12);
        assert_true(fabs(back->blocks[b].direction_drop - a->blocks[b].direction_drop) < 1e-12);
    }
    /* a report from before the direction rate was recorded still reads, without it; one that
     * has it for the teacher must have it in every row */
    root = json_loads(text, 0, &jerr);
    json_object_del(json_object_get(root, "teacher"), "direction");
    for (size_t b = 0; b < json_array_size(json_object_get(root, "blocks")); b++) {
        json_t *row = json_array_get(json_object_get(root, "blocks"), b);
        json_object_del(row, "direction"), json_object_del(row, "direction_drop");
    }
    char *old = json_dumps(root, 0);
    assert_int_equal(vd_analysis_from_json(old, back, err, sizeof err), 0);
    assert_int_equal(back->has_direction, 0);
    char *again = vd_analysis_json(back);
    assert_null(strstr(again, "direction"));
    free(again);
    free(old);
    json_object_set_new(json_object_get(root, "teacher"), "direction", json_real(0.5));
    old = json_dumps(root, 0);
    assert_int_equal(vd_analysis_from_json(old, back, err, sizeof err), -1);
    assert_non_null(strstr(err, "incomplete"));
    free(old);
    json_decref(root);
    assert_int_equal(vd_analysis_from_json("{\"blocks\": []}", back, err, sizeof err), -1);
    free(back);
    free(text);
    free(a);
}

/* A 3-level UNet's blocks with made-up figures: importance (content + motion drop) and a tenth of
 * the parameters each, mid the least important of all. */
static void made_up(vd_analysis *a)
{
    static const struct {
        const char *name;
        double importance;
    } blocks[] = {{"down.0.0", 0.30}, {"down.0.1", 0.10}, {"down.1.0", 0.20}, {"down.2.0", 0.05}, {"mid", 0.01},
                  {"up.2.0", 0.02},   {"up.1.0", 0.15},   {"up.0.0", 0.25},   {"up.0.1", 0.40}};
    memset(a, 0, sizeof *a);
    a->levels = 3, a->count = (int)(sizeof blocks / sizeof *blocks);
    for (int b = 0; b < a->count; b++) {
        snprintf(a->blocks[b].name, sizeof a->blocks[b].name, "%s", blocks[b].name);
        a->blocks[b].content_drop = a->blocks[b].motion_drop = blocks[b].importance / 2;
        a->blocks[b].param_share = a->blocks[b].latency_share = 0.1;
    }
}

/* The plan by rule of target of the measure names exactly the units of expected, in its order. */
static void expect_plan_of(const vd_analysis *a, vd_plan_rule rule, vd_plan_measure measure, double target,
                           uint64_t seed, const char *expected)
{
    char names[VD_ANALYSIS_MAX_BLOCKS][16], got[512] = "", err[256];
    int count;
    assert_int_equal(vd_plan_make(a, rule, measure, target, seed, names, &count, err, sizeof err), 0);
    for (int i = 0; i < count; i++) {
        if (i) strcat(got, " ");
        strncat(got, names[i], 15);
    }
    if (expected && strcmp(got, expected)) fprintf(stderr, "got \"%s\", expected \"%s\"\n", got, expected);
    if (expected) assert_string_equal(got, expected);
}

static void expect_plan(const vd_analysis *a, vd_plan_rule rule, double target, uint64_t seed, const char *expected)
{
    expect_plan_of(a, rule, VD_PLAN_PARAMS, target, seed, expected);
}

static void test_plan_rules(void **state)
{
    (void)state;
    vd_analysis a;
    made_up(&a);
    /* mid (below the median) first, then level 0 least important first, then level 1; never level 2 */
    expect_plan(&a, VD_PLAN_SHALLOW, 0.55, 0, "mid down.0.1 up.0.0 down.0.0 up.0.1 up.1.0");
    expect_plan(&a, VD_PLAN_DEEP, 0.35, 0, "mid up.2.0 down.2.0 up.1.0");
    a.blocks[5].direction_drop = 0.1; /* up.2.0 loses the heading: down.2.0 goes first now */
    expect_plan(&a, VD_PLAN_DEEP, 0.35, 0, "mid down.2.0 up.2.0 up.1.0");
    a.blocks[5].direction_drop = 0;
    a.blocks[4].content_drop = a.blocks[4].motion_drop = 0.5; /* mid now matters most: shallow keeps it */
    expect_plan(&a, VD_PLAN_SHALLOW, 0.15, 0, "down.0.1 up.0.0");
    char names[VD_ANALYSIS_MAX_BLOCKS][16], again[VD_ANALYSIS_MAX_BLOCKS][16], err[256];
    int count, count_again;
    assert_int_equal(vd_plan_make(&a, VD_PLAN_RANDOM, VD_PLAN_PARAMS, 0.45, 3, names, &count, err, sizeof err), 0);
    assert_int_equal(vd_plan_make(&a, VD_PLAN_RANDOM, VD_PLAN_PARAMS, 0.45, 3, again, &count_again, err, sizeof err), 0);
    assert_int_equal(count, 5);
    assert_int_equal(count_again, 5);
    for (int i = 0; i < count; i++) assert_string_equal(names[i], again[i]);
    /* the shallow rule can take at most levels 0 and 1: 6 blocks, 60% */
    assert_int_equal(vd_plan_make(&a, VD_PLAN_SHALLOW, VD_PLAN_PARAMS, 0.7, 0, names, &count, err, sizeof err), -1);
    assert_non_null(strstr(err, "short of the 70.0%"));
    assert_int_equal(vd_plan_make(&a, VD_PLAN_SHALLOW, VD_PLAN_LATENCY, 1.5, 0, names, &count, err, sizeof err), -1);
    /* FLOPs: level 0 blocks are the expensive ones here, so one of them meets a 25% target */
    for (int b = 0; b < a.count; b++) a.blocks[b].flop_share = strstr(a.blocks[b].name, ".0.") ? 0.3 : 0.01;
    expect_plan_of(&a, VD_PLAN_SHALLOW, VD_PLAN_FLOPS, 0.25, 0, "down.0.1");
}

typedef struct {
    const char *name;
    double importance, share;
} made_up_row;

/* An analysis of a 3-level UNet with the rows given: content and motion drop half the importance
 * each, every share the row's share. */
static void fill_made_up(vd_analysis *a, const made_up_row *rows, int count)
{
    memset(a, 0, sizeof *a);
    a->levels = 3, a->count = count;
    for (int b = 0; b < count; b++) {
        snprintf(a->blocks[b].name, sizeof a->blocks[b].name, "%s", rows[b].name);
        a->blocks[b].content_drop = a->blocks[b].motion_drop = rows[b].importance / 2;
        a->blocks[b].param_share = a->blocks[b].flop_share = a->blocks[b].latency_share = rows[b].share;
    }
}

/* A 3-level UNet's blocks and temporal units with made-up figures: blocks a tenth of the
 * parameters each, temporal units 4%; mid the least important block. */
static void made_up_with_temporal(vd_analysis *a)
{
    static const made_up_row rows[] = {{"down.0.0", 0.30, 0.1},  {"down.1.0", 0.20, 0.1},   {"down.2.0", 0.05, 0.1},
                                       {"mid", 0.01, 0.1},       {"up.2.0", 0.02, 0.1},     {"up.1.0", 0.15, 0.1},
                                       {"up.0.0", 0.25, 0.1},    {"temporal.0", 0.12, 0.04}, {"temporal.1", 0.03, 0.04},
                                       {"temporal.2", 0.005, 0.04}};
    fill_made_up(a, rows, (int)(sizeof rows / sizeof *rows));
}

static void test_plan_rules_with_temporal_units(void **state)
{
    (void)state;
    vd_analysis a;
    made_up_with_temporal(&a);
    /* shallow: mid, then level 0 (temporal.0 before its blocks), then level 1; never level 2's
     * blocks nor temporal.2. A level-0 block taken after temporal.0 adds 10% - 4%/2: 22% after
     * up.0.0, so 23% needs down.0.0 as well */
    expect_plan(&a, VD_PLAN_SHALLOW, 0.23, 0, "mid temporal.0 up.0.0 down.0.0");
    expect_plan(&a, VD_PLAN_SHALLOW, 0.45, 0, "mid temporal.0 up.0.0 down.0.0 temporal.1 up.1.0 down.1.0");
    char names[VD_ANALYSIS_MAX_BLOCKS][16], err[256];
    int count;
    assert_int_equal(vd_plan_make(&a, VD_PLAN_SHALLOW, VD_PLAN_PARAMS, 0.55, 0, names, &count, err, sizeof err), -1);
    assert_non_null(strstr(err, "short of the 55.0%"));
    /* deep: mid, then level 2: temporal.2 counts for the two blocks mid leaves, 4% * 2/3 */
    expect_plan(&a, VD_PLAN_DEEP, 0.2, 0, "mid temporal.2 up.2.0");
    /* temporal.1 now matters more than level 1's blocks: once both are taken it removes nothing */
    a.blocks[8].content_drop = a.blocks[8].motion_drop = 0.25;
    assert_int_equal(vd_plan_make(&a, VD_PLAN_SHALLOW, VD_PLAN_PARAMS, 0.52, 0, names, &count, err, sizeof err), -1);
    assert_non_null(strstr(err, "short of the 52.0%"));
    for (int i = 0; i < count; i++) assert_string_not_equal(names[i], "temporal.1");
}

/* A 3-level UNet's blocks (a tenth of the parameters each) and the attention parts of some
 * (6% each, mid's 5%) with made-up importances: mid matters most, the attention parts of
 * down.1.0, mid and up.2.0 least. */
static void made_up_with_attention(vd_analysis *a)
{
    static const made_up_row rows[] = {{"down.0.0", 0.30, 0.1},       {"down.1.0", 0.20, 0.1},      {"down.2.0", 0.05, 0.1},
                                       {"mid", 0.40, 0.1},            {"up.2.0", 0.02, 0.1},        {"up.1.0", 0.15, 0.1},
                                       {"up.0.0", 0.25, 0.1},         {"down.1.0.attn", 0.01, 0.06}, {"up.1.0.attn", 0.17, 0.06},
                                       {"mid.attn", 0.005, 0.05},     {"up.2.0.attn", 0.001, 0.06}};
    fill_made_up(a, rows, (int)(sizeof rows / sizeof *rows));
}

static void test_plan_rules_with_attention_units(void **state)
{
    (void)state;
    vd_analysis a;
    made_up_with_attention(&a);
    /* shallow: mid.attn (below the median; mid is above it), then level 0, then level 1 least
     * important first; never level 2's blocks nor their attention parts */
    expect_plan(&a, VD_PLAN_SHALLOW, 0.30, 0, "mid.attn up.0.0 down.0.0 down.1.0.attn");
    /* up.1.0.attn goes with up.1.0; down.1.0 replaces its attention part and adds 10% - 6% */
    expect_plan(&a, VD_PLAN_SHALLOW, 0.42, 0, "mid.attn up.0.0 down.0.0 up.1.0 down.1.0");
    char names[VD_ANALYSIS_MAX_BLOCKS][16], err[256];
    int count;
    assert_int_equal(vd_plan_make(&a, VD_PLAN_SHALLOW, VD_PLAN_PARAMS, 0.46, 0, names, &count, err, sizeof err), -1);
    assert_non_null(strstr(err, "remove 45.0% of the parameters, short of the 46.0%"));
    /* deep: mid.attn, then mid, which replaces it (10% in all); then level 2 least important
     * first: up.2.0.attn (16%), then up.2.0, which replaces it (20%) */
    expect_plan(&a, VD_PLAN_DEEP, 0.15, 0, "mid up.2.0.attn");
    expect_plan(&a, VD_PLAN_DEEP, 0.2, 0, "mid up.2.0");
}

static void test_plan_rule_by_cost(void **state)
{
    (void)state;
    vd_analysis a;
    made_up_with_attention(&a);
    /* importance per share, from every level: up.2.0.attn 0.017, mid.attn 0.1, down.1.0.attn
     * 0.17, up.2.0 0.2 (replaces its attention part: 21% in all), down.2.0 0.5, up.1.0 1.5 */
    expect_plan(&a, VD_PLAN_COST, 0.15, 0, "up.2.0.attn mid.attn down.1.0.attn");
    expect_plan(&a, VD_PLAN_COST, 0.20, 0, "mid.attn down.1.0.attn up.2.0");
    expect_plan(&a, VD_PLAN_COST, 0.35, 0, "mid.attn down.1.0.attn up.2.0 down.2.0 up.1.0");
    /* by FLOPs instead: down.0.0 holds half of them, which makes it third cheapest per share
     * (0.6, after mid.attn and down.1.0.attn, each 3%), and up.2.0.attn, with no FLOPs, no
     * longer comes first */
    for (int b = 0; b < a.count; b++) a.blocks[b].flop_share = 0.03;
    a.blocks[0].flop_share = 0.5;
    a.blocks[10].flop_share = 0; /* up.2.0.attn */
    expect_plan_of(&a, VD_PLAN_COST, VD_PLAN_FLOPS, 0.55, 0, "mid.attn down.1.0.attn down.0.0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity_block_ranks_last),
        cmocka_unit_test(test_plan_rules),
        cmocka_unit_test(test_plan_rules_with_temporal_units),
        cmocka_unit_test(test_plan_rules_with_attention_units),
        cmocka_unit_test(test_plan_rule_by_cost),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
