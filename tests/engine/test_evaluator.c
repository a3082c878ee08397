/* test_evaluator.c: proof that the evaluator measures what it claims. Real clips of the world
 * score at least 0.95 on every rate; pure noise, a frozen first frame, shuffled frames, a wrong
 * colour, reversed motion and a blurred clip each score clearly lower on the metric meant to
 * catch them while the others move little; image-to-video scores the first frame and the start
 * of each object; 8-bit frames judge like floats; and the Fréchet distance between two real sets
 * is small next to real against degraded; a rate's standard error over clips matches one worked by
 * hand. The numbers are printed for the record. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "evaluator.h"
#include "rng.h"
#include "world.h"

#define CLIPS 24
#define SIDE 128
#define FRAMES 12

typedef enum { REAL, NOISE, FROZEN, SHUFFLED, WRONG_COLOUR, REVERSED, BLURRED, OTHER_REAL, KINDS } clip_kind;
static const char *const kind_names[KINDS] = {"real", "noise", "frozen", "shuffled", "wrong colour", "reversed", "blurred", "real (other seed)"};

static vd_eval_set *sets[KINDS];
static vd_eval_summary summaries[KINDS];
static const size_t frame_size = (size_t)3 * SIDE * SIDE;

static void gaussian_blur(float *frames, int planes, float sigma)
{
    float k[7], sum = 0;
    for (int i = -3; i <= 3; i++) sum += k[i + 3] = expf(-i * i / (2 * sigma * sigma));
    for (int i = 0; i < 7; i++) k[i] /= sum;
    float *tmp = vd_malloc((size_t)SIDE * SIDE * sizeof(float));
    for (int p = 0; p < planes; p++) {
        float *im = frames + (size_t)p * SIDE * SIDE;
        for (int y = 0; y < SIDE; y++)
            for (int x = 0; x < SIDE; x++) {
                float a = 0;
                for (int i = -3; i <= 3; i++) a += k[i + 3] * im[y * SIDE + (x + i < 0 ? 0 : x + i >= SIDE ? SIDE - 1 : x + i)];
                tmp[y * SIDE + x] = a;
            }
        for (int y = 0; y < SIDE; y++)
            for (int x = 0; x < SIDE; x++) {
                float a = 0;
                for (int i = -3; i <= 3; i++) a += k[i + 3] * tmp[(y + i < 0 ? 0 : y + i >= SIDE ? SIDE - 1 : y + i) * SIDE + x];
                im[y * SIDE + x] = a;
            }
    }
    free(tmp);
}

/* The same clip with every object in another colour allowed on its background. */
static void recolour(vd_clip_truth *t)
{
    vd_clip_truth original = *t;
    for (int o = 0; o < t->object_count; o++)
        for (int step = 1; step < VD_COLOUR_COUNT; step++) {
            int c = ((int)original.objects[o].colour + step) % VD_COLOUR_COUNT, clash = !vd_world_colour_allowed((vd_colour)c, t->background);
            for (int p = 0; p < t->object_count; p++) clash |= (int)original.objects[p].colour == c || (p < o && (int)t->objects[p].colour == c);
            if (!clash) {
                t->objects[o].colour = (vd_colour)c;
                break;
            }
        }
}

static void make_kind(clip_kind kind, const vd_clip_truth *t, int clip, const float *real, float *out)
{
    size_t total = FRAMES * frame_size;
    memcpy(out, real, total * sizeof(float));
    switch (kind) {
    case NOISE:
        for (size_t i = 0; i < total; i++) out[i] = (float)(2 * vd_rng_uniform(1000 + clip, i) - 1);
        break;
    case FROZEN:
        for (int f = 1; f < FRAMES; f++) memcpy(out + f * frame_size, real, frame_size * sizeof(float));
        break;
    case SHUFFLED: {
        int order[FRAMES];
        for (int f = 0; f < FRAMES; f++) order[f] = f;
        for (int f = FRAMES - 1; f > 0; f--) {
            int j = (int)(vd_rng_uniform(2000 + clip, f) * (f + 1)), tmp = order[f];
            order[f] = order[j], order[j] = tmp;
        }
        for (int f = 0; f < FRAMES; f++) memcpy(out + f * frame_size, real + order[f] * frame_size, frame_size * sizeof(float));
        break;
    }
    case WRONG_COLOUR: {
        vd_clip_truth *other = vd_malloc(sizeof *other);
        *other = *t;
        recolour(other);
        vd_world_render(other, out);
        free(other);
        break;
    }
    case REVERSED:
        for (int f = 0; f < FRAMES; f++) memcpy(out + f * frame_size, real + (FRAMES - 1 - f) * frame_size, frame_size * sizeof(float));
        break;
    case BLURRED: gaussian_blur(out, 3 * FRAMES, 1.0f); break;
    default: break;
    }
}

static int setup(void **state)
{
    (void)state;
    float *real = vd_malloc(FRAMES * frame_size * sizeof(float)), *video = vd_malloc(FRAMES * frame_size * sizeof(float));
    vd_clip_truth *t = vd_malloc(sizeof *t);
    char err[256];
    for (int k = 0; k < KINDS; k++) sets[k] = vd_eval_set_new();
    for (int i = 0; i < CLIPS; i++) {
        vd_world_sample(2026, (uint64_t)i, SIDE, SIDE, FRAMES, t);
        vd_world_render(t, real);
        for (int k = 0; k < OTHER_REAL; k++) {
            vd_eval_clip clip;
            make_kind((clip_kind)k, t, i, real, video);
            if (vd_eval_clip_frames(t, video, FRAMES, SIDE, SIDE, NULL, &clip, err, sizeof err)) return -1;
            vd_eval_set_add(sets[k], &clip);
        }
        vd_eval_clip clip;
        vd_world_sample(9000, (uint64_t)i, SIDE, SIDE, FRAMES, t);
        vd_world_render(t, real);
        if (vd_eval_clip_frames(t, real, FRAMES, SIDE, SIDE, NULL, &clip, err, sizeof err)) return -1;
        vd_eval_set_add(sets[OTHER_REAL], &clip);
    }
    printf("%-22s %8s %8s", "rate", "content", "motion");
    for (int r = 0; r < VD_RATE_I2V_MOTION; r++) printf(" %8.8s", vd_rate_name((vd_rate)r));
    printf(" %8s\n", "frechet");
    for (int k = 0; k < KINDS; k++) {
        vd_eval_summarize(sets[k], sets[REAL], &summaries[k]);
        printf("%-22s %8.3f %8.3f", kind_names[k], summaries[k].content_score, summaries[k].motion_score);
        for (int r = 0; r < VD_RATE_I2V_MOTION; r++) printf(" %8.3f", summaries[k].rate[r]);
        printf(" %8.3f\n", summaries[k].frechet);
    }
    free(real);
    free(video);
    free(t);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int k = 0; k < KINDS; k++) vd_eval_set_free(sets[k]);
    return 0;
}

static void test_real_clips_score_high(void **state)
{
    (void)state;
    for (int k = REAL; k <= OTHER_REAL; k += OTHER_REAL) {
        for (int r = 0; r < VD_RATE_I2V_MOTION; r++)
            if (!(summaries[k].rate[r] >= 0.95)) fail_msg("%s: %s is %.3f", kind_names[k], vd_rate_name((vd_rate)r), summaries[k].rate[r]);
        assert_true(isnan(summaries[k].rate[VD_RATE_I2V_MOTION])); /* text-to-video */
        assert_true(summaries[k].content_score >= 0.95 && summaries[k].motion_score >= 0.95);
        assert_true(summaries[k].speed_error < 0.1);
    }
}

/* Rate r of kind k is at most `most`. */
static void expect_drop(clip_kind k, vd_rate r, double most)
{
    if (!(summaries[k].rate[r] <= most))
        fail_msg("%s: %s is %.3f, expected at most %.3f", kind_names[k], vd_rate_name(r), summaries[k].rate[r], most);
}

/* Rate r of kind k is within `drift` of the real clips'. */
static void expect_close(clip_kind k, vd_rate r, double drift)
{
    if (!(fabs(summaries[k].rate[r] - summaries[REAL].rate[r]) <= drift))
        fail_msg("%s: %s moved to %.3f from %.3f", kind_names[k], vd_rate_name(r), summaries[k].rate[r], summaries[REAL].rate[r]);
}

static void test_noise_scores_low_everywhere(void **state)
{
    (void)state;
    assert_true(summaries[NOISE].content_score < 0.2 && summaries[NOISE].motion_score < 0.2);
    expect_drop(NOISE, VD_RATE_OBJECT_FOUND, 0.2);
    expect_drop(NOISE, VD_RATE_BACKGROUND, 0.2);
    expect_drop(NOISE, VD_RATE_NO_FLICKER, 0.2);
}

static void test_frozen_frame_fails_motion_not_content(void **state)
{
    (void)state;
    expect_drop(FROZEN, VD_RATE_DIRECTION, 0.4);
    expect_drop(FROZEN, VD_RATE_SPEED, 0.4);
    assert_true(summaries[FROZEN].motion_score < summaries[REAL].motion_score - 0.2);
    expect_close(FROZEN, VD_RATE_OBJECT_FOUND, 0.03);
    expect_close(FROZEN, VD_RATE_COLOUR, 0.03);
    expect_close(FROZEN, VD_RATE_SHARPNESS, 0.03);
    expect_close(FROZEN, VD_RATE_BACKGROUND, 0.03);
    assert_true(summaries[FROZEN].content_score > summaries[REAL].content_score - 0.05);
}

static void test_shuffled_frames_fail_motion_not_content(void **state)
{
    (void)state;
    expect_drop(SHUFFLED, VD_RATE_FRAME_ORDER, summaries[REAL].rate[VD_RATE_FRAME_ORDER] - 0.25);
    expect_drop(SHUFFLED, VD_RATE_SMOOTHNESS, 0.5);
    expect_drop(SHUFFLED, VD_RATE_IDENTITY, summaries[REAL].rate[VD_RATE_IDENTITY] - 0.2);
    assert_true(summaries[SHUFFLED].motion_score < summaries[REAL].motion_score - 0.3);
    assert_true(summaries[SHUFFLED].content_score > summaries[REAL].content_score - 0.05);
}

static void test_wrong_colour_fails_content_not_motion(void **state)
{
    (void)state;
    expect_drop(WRONG_COLOUR, VD_RATE_COLOUR, 0.2);
    expect_close(WRONG_COLOUR, VD_RATE_OBJECT_FOUND, 0.03);
    expect_close(WRONG_COLOUR, VD_RATE_SHAPE, 0.07);
    assert_true(summaries[WRONG_COLOUR].content_score < summaries[REAL].content_score - 0.1);
    assert_true(summaries[WRONG_COLOUR].motion_score > summaries[REAL].motion_score - 0.05);
}

static void test_reversed_motion_fails_direction_not_content(void **state)
{
    (void)state;
    expect_drop(REVERSED, VD_RATE_DIRECTION, 0.4);
    assert_true(summaries[REVERSED].content_score > summaries[REAL].content_score - 0.05);
    expect_close(REVERSED, VD_RATE_FRAME_ORDER, 0.05); /* a reversed clip is still a plausible clip */
}

static void test_blur_fails_sharpness_only(void **state)
{
    (void)state;
    expect_drop(BLURRED, VD_RATE_SHARPNESS, 0.2);
    assert_true(summaries[BLURRED].edge_width > 2 * summaries[REAL].edge_width);
    expect_close(BLURRED, VD_RATE_OBJECT_FOUND, 0.03);
    expect_close(BLURRED, VD_RATE_COLOUR, 0.03);
    expect_close(BLURRED, VD_RATE_SHAPE, 0.05);
    assert_true(summaries[BLURRED].motion_score > summaries[REAL].motion_score - 0.05);
}

static void test_frechet_separates_real_from_degraded(void **state)
{
    (void)state;
    double real_pair = vd_eval_frechet(sets[REAL], sets[OTHER_REAL]);
    assert_true(vd_eval_frechet(sets[REAL], sets[REAL]) < 1e-6);
    assert_float_equal(real_pair, vd_eval_frechet(sets[OTHER_REAL], sets[REAL]), 1e-6 * (1 + real_pair));
    printf("Fréchet: real vs real (other seed) %.3f", real_pair);
    clip_kind degraded[] = {NOISE, FROZEN, SHUFFLED, BLURRED};
    for (size_t i = 0; i < sizeof degraded / sizeof degraded[0]; i++) {
        double d = summaries[degraded[i]].frechet;
        printf(", vs %s %.3f", kind_names[degraded[i]], d);
        if (!(real_pair < 0.25 * d)) fail_msg("Fréchet real/real %.3f is not small next to real/%s %.3f", real_pair, kind_names[degraded[i]], d);
    }
    printf("\n");
}

static void test_image_to_video(void **state)
{
    (void)state;
    const int clips = 6;
    float *real = vd_malloc(FRAMES * frame_size * sizeof(float)), *other = vd_malloc(FRAMES * frame_size * sizeof(float));
    float *frozen = vd_malloc(FRAMES * frame_size * sizeof(float));
    vd_clip_truth *t = vd_malloc(sizeof *t), *u = vd_malloc(sizeof *u);
    vd_eval_set *good = vd_eval_set_new(), *wrong_start = vd_eval_set_new(), *still = vd_eval_set_new();
    char err[256];
    for (int i = 0; i < clips; i++) {
        vd_world_sample(31, (uint64_t)i, SIDE, SIDE, FRAMES, t);
        vd_world_render(t, real);
        /* The same description started elsewhere: right motion, wrong first frame. */
        *u = *t;
        for (int o = 0; o < u->object_count; o++) u->objects[o].start_x = 1.0f - u->objects[o].start_x;
        vd_world_compute_tracks(u);
        vd_world_render(u, other);
        make_kind(FROZEN, t, i, real, frozen);
        vd_eval_clip clip;
        assert_int_equal(vd_eval_clip_frames(t, real, FRAMES, SIDE, SIDE, real, &clip, err, sizeof err), 0);
        assert_true(clip.psnr > 40);
        vd_eval_set_add(good, &clip);
        assert_int_equal(vd_eval_clip_frames(t, other, FRAMES, SIDE, SIDE, real, &clip, err, sizeof err), 0);
        vd_eval_set_add(wrong_start, &clip);
        assert_int_equal(vd_eval_clip_frames(t, frozen, FRAMES, SIDE, SIDE, real, &clip, err, sizeof err), 0);
        vd_eval_set_add(still, &clip);
    }
    vd_eval_summary s[3];
    vd_eval_summarize(good, NULL, &s[0]);
    vd_eval_summarize(wrong_start, NULL, &s[1]);
    vd_eval_summarize(still, NULL, &s[2]);
    printf("image-to-video: i2v_motion_ok real %.3f, moved start %.3f, frozen %.3f; PSNR real %.1f, moved start %.1f\n",
           s[0].rate[VD_RATE_I2V_MOTION], s[1].rate[VD_RATE_I2V_MOTION], s[2].rate[VD_RATE_I2V_MOTION], s[0].psnr, s[1].psnr);
    assert_true(s[0].rate[VD_RATE_I2V_MOTION] >= 0.95);
    assert_true(s[1].rate[VD_RATE_I2V_MOTION] <= 0.4);
    assert_true(s[2].rate[VD_RATE_I2V_MOTION] <= 0.4);
    assert_true(s[1].psnr < s[0].psnr - 20);
    vd_eval_set_free(good);
    vd_eval_set_free(wrong_start);
    vd_eval_set_free(still);
    free(real);
    free(other);
    free(frozen);
    free(t);
    free(u);
}

static void test_bytes_judge_like_floats_and_sizes_are_checked(void **state)
{
    (void)state;
    float *real = vd_malloc(FRAMES * frame_size * sizeof(float));
    uint8_t *rgb = vd_malloc(FRAMES * frame_size);
    vd_clip_truth *t = vd_malloc(sizeof *t);
    char err[256];
    for (int i = 0; i < 4; i++) {
        vd_world_sample(2026, (uint64_t)i, SIDE, SIDE, FRAMES, t);
        vd_world_render(t, real);
        for (int f = 0; f < FRAMES; f++)
            for (size_t p = 0; p < (size_t)SIDE * SIDE; p++)
                for (int k = 0; k < 3; k++)
                    rgb[(f * (size_t)SIDE * SIDE + p) * 3 + k] = (uint8_t)lroundf((real[f * frame_size + k * (size_t)SIDE * SIDE + p] + 1) * 127.5f);
        vd_eval_clip a, b;
        assert_int_equal(vd_eval_clip_frames(t, real, FRAMES, SIDE, SIDE, NULL, &a, err, sizeof err), 0);
        assert_int_equal(vd_eval_clip_rgb8(t, rgb, FRAMES, SIDE, SIDE, NULL, &b, err, sizeof err), 0);
        for (int r = 0; r < VD_RATE_COUNT; r++) {
            assert_float_equal(a.trials[r], b.trials[r], 0);
            assert_true(fabs(a.hits[r] - b.hits[r]) <= 0.02 * a.trials[r] + 1e-9);
        }
    }
    vd_eval_clip clip;
    assert_int_equal(vd_eval_clip_frames(t, real, FRAMES - 1, SIDE, SIDE, NULL, &clip, err, sizeof err), -1);
    assert_non_null(strstr(err, "frames"));
    assert_int_equal(vd_eval_clip_rgb8(t, rgb, FRAMES, SIDE / 2, SIDE * 2, NULL, &clip, err, sizeof err), -1);
    free(real);
    free(rgb);
    free(t);
}

/* The summary's Markdown table (malloc'd). */
static char *markdown_of(const vd_eval_summary *s)
{
    char *table = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&table, &len);
    vd_eval_print_markdown(s, out);
    fclose(out);
    return table;
}

static void test_summary_names_every_figure(void **state)
{
    (void)state;
    char *json = vd_eval_summary_json(&summaries[REAL]);
    const char *keys[] = {"\"clips\": 24", "\"content_score\"", "\"motion_score\"", "\"frechet_distance\"", "\"speed_error\"",
                          "\"first_frame_psnr\": null"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strstr(json, keys[i])) fail_msg("%s missing from %s", keys[i], json);
    for (int r = 0; r < VD_RATE_COUNT; r++) {
        char key[64];
        snprintf(key, sizeof key, "\"%s\"", vd_rate_name((vd_rate)r));
        assert_non_null(strstr(json, key));
    }
    free(json);
    char *table = markdown_of(&summaries[REAL]);
    assert_non_null(strstr(table, "| content_score |"));
    assert_non_null(strstr(table, "| frame_order_ok |"));
    free(table);
}

/* The breakdowns count what their rates count: the shape confusion's diagonal over its sum is the
 * shape rate, so is each of the shape rate's breakdowns (by size, object count, prompted motion)
 * summed over its groups, and the direction by prompted motion sums to the direction rate, for
 * real clips, for noise (shapes mostly "none") and for damaged clips alike. */
static void test_breakdowns_count_their_rates(void **state)
{
    (void)state;
    const clip_kind kinds[] = {REAL, NOISE, WRONG_COLOUR, BLURRED, REVERSED};
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        const vd_eval_summary *s = &summaries[kinds[k]];
        double correct = 0, objects = 0;
        for (int m = 0; m < VD_MOTION_COUNT; m++)
            correct += s->direction_by_motion[m][0], objects += s->direction_by_motion[m][1];
        assert_true(objects > 0);
        assert_float_equal(correct / objects, s->rate[VD_RATE_DIRECTION], 1e-12);
        double diagonal = 0, total = 0, none = 0;
        for (int a = 0; a < VD_SHAPE_COUNT; a++) {
            for (int j = 0; j <= VD_SHAPE_COUNT; j++) total += s->shape_confusion[a][j];
            diagonal += s->shape_confusion[a][a];
            none += s->shape_confusion[a][VD_SHAPE_COUNT];
        }
        assert_true(total > 0);
        assert_float_equal(diagonal / total, s->rate[VD_RATE_SHAPE], 1e-12);
        if (kinds[k] == NOISE) assert_true(none > diagonal);
        double by_size[2] = {0}, by_objects[2] = {0}, by_motion[2] = {0};
        for (int j = 0; j < 2; j++) {
            for (int z = 0; z < VD_SIZE_COUNT; z++) by_size[j] += s->shape_by_size[z][j];
            for (int n = 0; n < VD_WORLD_MAX_OBJECTS; n++) by_objects[j] += s->shape_by_objects[n][j];
            for (int m = 0; m < VD_MOTION_COUNT; m++) by_motion[j] += s->shape_by_motion[m][j];
        }
        assert_float_equal(by_size[1], total, 1e-9);
        assert_float_equal(by_objects[1], total, 1e-9);
        assert_float_equal(by_motion[1], total, 1e-9);
        assert_float_equal(by_size[0], diagonal, 1e-9);
        assert_float_equal(by_objects[0], diagonal, 1e-9);
        assert_float_equal(by_motion[0], diagonal, 1e-9);
        for (int j = 0; j < 2; j++) { /* the gaps split the object-frames of clips of 2 or 3 objects */
            double by_gap = 0;
            for (int g = 0; g < VD_GAP_COUNT; g++) by_gap += s->shape_by_gap[g][j];
            assert_float_equal(by_gap, s->shape_by_objects[1][j] + s->shape_by_objects[2][j], 1e-9);
        }
    }
    char *json = vd_eval_summary_json(&summaries[REAL]);
    assert_non_null(strstr(json, "\"shape_confusion\""));
    assert_non_null(strstr(json, "\"direction_by_motion\""));
    assert_non_null(strstr(json, "\"shape_by_size\""));
    assert_non_null(strstr(json, "\"shape_by_objects\""));
    assert_non_null(strstr(json, "\"shape_by_motion\""));
    assert_non_null(strstr(json, "\"shape_misbound\""));
    assert_non_null(strstr(json, "\"shape_by_gap\""));
    free(json);
    char *table = markdown_of(&summaries[REAL]);
    assert_non_null(strstr(table, "| shape judged as → |"));
    assert_non_null(strstr(table, "| object-frames of | shape correct |"));
    assert_non_null(strstr(table, "| prompted motion |"));
    free(table);
}

/* Judges clips of two and three objects drawn with other shapes than their truth says: each
 * object drawn with the next object's shape (the prompt's shapes bound to the wrong objects), or
 * with a shape no object of the clip has. */
static void judge_reshaped(int swap, vd_eval_summary *out)
{
    const float count_odds[VD_WORLD_MAX_OBJECTS] = {0, 1, 1};
    float *video = vd_malloc(FRAMES * frame_size * sizeof(float));
    vd_clip_truth *t = vd_malloc(sizeof *t), *drawn = vd_malloc(sizeof *drawn);
    vd_eval_set *set = vd_eval_set_new();
    char err[256];
    for (int i = 0; i < CLIPS; i++) {
        vd_world_sample_odds(4242, (uint64_t)i, SIDE, SIDE, FRAMES, count_odds, t);
        *drawn = *t;
        int absent = 0;
        for (int used = 1; used;) {
            used = 0;
            for (int o = 0; o < t->object_count; o++) used |= (int)t->objects[o].shape == absent;
            absent += used;
        }
        for (int o = 0; o < t->object_count; o++)
            drawn->objects[o].shape = swap ? t->objects[(o + 1) % t->object_count].shape : (vd_shape)absent;
        vd_world_render(drawn, video);
        vd_eval_clip clip;
        assert_int_equal(vd_eval_clip_frames(t, video, FRAMES, SIDE, SIDE, NULL, &clip, err, sizeof err), 0);
        vd_eval_set_add(set, &clip);
    }
    vd_eval_summarize(set, NULL, out);
    vd_eval_set_free(set);
    free(video);
    free(t);
    free(drawn);
}

/* shape_misbound tells shapes bound to the wrong objects from other wrong shapes: nearly every
 * wrong shape of the swapped clips is another object's, far above chance, and next to none of
 * the clips drawn with an absent shape; real clips have next to no wrong shapes. */
static void test_misbound_shapes_are_told_from_other_errors(void **state)
{
    (void)state;
    vd_eval_summary swapped, absent;
    judge_reshaped(1, &swapped);
    judge_reshaped(0, &absent);
    const double *m = swapped.shape_misbound, *a = absent.shape_misbound, *r = summaries[REAL].shape_misbound;
    printf("misbound: swapped %.0f of %.0f wrong (chance %.1f), absent shape %.0f of %.0f (chance %.1f), real %.0f wrong\n",
           m[1], m[0], m[2], a[1], a[0], a[2], r[0]);
    assert_true(m[0] >= 100 && a[0] >= 100);
    assert_true(m[1] >= 0.9 * m[0] && m[2] <= 0.35 * m[0]);
    assert_true(a[1] <= 0.1 * a[0] && a[2] >= 0.15 * a[0]);
    assert_true(r[0] <= 0.05 * m[0]);
}

/* Two medium objects held still, their centres 0.8, 1.25 and 2 times the sum of their radii apart:
 * every judged object-frame of the three clips falls under "close", "near" and "apart" in turn, and
 * all have the right shape (in the first the objects overlap, and only the one in front is
 * judged). */
static void test_gap_of_the_nearest_object(void **state)
{
    (void)state;
    const float count_odds[VD_WORLD_MAX_OBJECTS] = {0, 1, 0};
    float *video = vd_malloc(FRAMES * frame_size * sizeof(float));
    vd_clip_truth *t = vd_malloc(sizeof *t);
    char err[256];
    float r = vd_size_radius(VD_SIZE_MEDIUM, SIDE);
    const float gaps[VD_GAP_COUNT] = {0.8f, 1.25f, 2.0f};
    for (int k = 0; k < VD_GAP_COUNT; k++) {
        vd_world_sample_odds(77, 0, SIDE, SIDE, FRAMES, count_odds, t);
        for (int o = 0; o < 2; o++) {
            t->objects[o].size = VD_SIZE_MEDIUM;
            for (int f = 0; f < FRAMES; f++)
                t->objects[o].track[f] = (vd_track_point){.x = SIDE / 2 + (o ? 1 : -1) * gaps[k] * r, .y = SIDE / 2,
                                                          .scale = 1, .angle = 0, .visible = k || o ? 1 : 0.5f};
        }
        vd_world_render(t, video);
        vd_eval_clip clip;
        assert_int_equal(vd_eval_clip_frames(t, video, FRAMES, SIDE, SIDE, NULL, &clip, err, sizeof err), 0);
        for (int g = 0; g < VD_GAP_COUNT; g++) {
            assert_float_equal(clip.shape_by_gap[g][1], g == k ? (k ? 2 : 1) * FRAMES : 0, 0);
            assert_float_equal(clip.shape_by_gap[g][0], clip.shape_by_gap[g][1], 0);
        }
    }
    free(video);
    free(t);
}

/* The standard error of a rate over clips, on counts made by hand: three clips with 1 of 2, 2 of 2
 * and 0 of 1 hits give the rate 3/5 and the residuals -0.2, 0.8 and -0.6, so the error is
 * sqrt(3/2 * 1.04) / 5; a rate that one clip alone judged has none; the table and the JSON carry
 * it. A set whose clips all score alike has error 0. */
static void test_standard_error_over_clips(void **state)
{
    (void)state;
    const double hits[3] = {1, 2, 0}, trials[3] = {2, 2, 1};
    vd_eval_set *set = vd_eval_set_new();
    for (int c = 0; c < 3; c++) {
        vd_eval_clip clip;
        memset(&clip, 0, sizeof clip);
        clip.psnr = NAN;
        clip.hits[VD_RATE_SHAPE] = hits[c], clip.trials[VD_RATE_SHAPE] = trials[c];
        clip.hits[VD_RATE_COLOUR] = trials[c], clip.trials[VD_RATE_COLOUR] = trials[c];
        if (c == 0) clip.hits[VD_RATE_DIRECTION] = 1, clip.trials[VD_RATE_DIRECTION] = 1;
        vd_eval_set_add(set, &clip);
    }
    vd_eval_summary s;
    vd_eval_summarize(set, NULL, &s);
    assert_float_equal(s.rate[VD_RATE_SHAPE], 0.6, 1e-12);
    assert_float_equal(s.rate_se[VD_RATE_SHAPE], sqrt(1.5 * 1.04) / 5, 1e-12);
    assert_float_equal(s.rate_se[VD_RATE_COLOUR], 0.0, 1e-12);
    assert_true(isnan(s.rate_se[VD_RATE_DIRECTION]) && s.rate[VD_RATE_DIRECTION] == 1.0);
    assert_true(isnan(s.rate_se[VD_RATE_SPEED]) && isnan(s.rate[VD_RATE_SPEED]));
    char *table = markdown_of(&s), *json = vd_eval_summary_json(&s);
    assert_non_null(strstr(table, "| shape_correct | 0.6000 | 0.2498 |"));
    assert_non_null(strstr(table, "| direction_correct | 1.0000 | – |"));
    assert_non_null(strstr(json, "\"standard_error\""));
    free(table), free(json);
    vd_eval_set_free(set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_clips_score_high),
        cmocka_unit_test(test_noise_scores_low_everywhere),
        cmocka_unit_test(test_frozen_frame_fails_motion_not_content),
        cmocka_unit_test(test_shuffled_frames_fail_motion_not_content),
        cmocka_unit_test(test_wrong_colour_fails_content_not_motion),
        cmocka_unit_test(test_reversed_motion_fails_direction_not_content),
        cmocka_unit_test(test_blur_fails_sharpness_only),
        cmocka_unit_test(test_frechet_separates_real_from_degraded),
        cmocka_unit_test(test_image_to_video),
        cmocka_unit_test(test_bytes_judge_like_floats_and_sizes_are_checked),
        cmocka_unit_test(test_summary_names_every_figure),
        cmocka_unit_test(test_breakdowns_count_their_rates),
        cmocka_unit_test(test_misbound_shapes_are_told_from_other_errors),
        cmocka_unit_test(test_gap_of_the_nearest_object),
        cmocka_unit_test(test_standard_error_over_clips),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
