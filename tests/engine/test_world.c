/* test_world.c: the synthetic world: its vocabulary is the presets' and covers every prompt,
 * prompts fit the tiny model's 16 tokens and name every object, clips are deterministic and
 * varied, rendering is anti-aliased with the right areas and backgrounds, tracks follow the
 * world's kinematics with visibility for leaving the frame and being covered, the ground truth
 * survives JSON, and the threaded loader hands out exactly the clips of the seed, in order. */
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
#include "config.h"
#include "tokenizer.h"
#include "world.h"

static int count_words(const char *text)
{
    int n = 0, in_word = 0;
    for (const char *p = text; *p; p++) {
        int letter = ((*p | 32) >= 'a' && (*p | 32) <= 'z');
        n += letter && !in_word;
        in_word = letter;
    }
    return n;
}

static int has_word(const char *text, const char *word)
{
    size_t len = strlen(word);
    for (const char *p = strstr(text, word); p; p = strstr(p + 1, word))
        if ((p == text || p[-1] == ' ') && (p[len] == 0 || p[len] == ' ' || p[len] == ',')) return 1;
    return 0;
}

static void test_vocabulary_is_the_presets(void **state)
{
    (void)state;
    int count;
    const char *const *vocab = vd_world_vocabulary(&count);
    assert_true(count > 50);
    assert_string_equal(vocab[0], "<pad>");
    assert_string_equal(vocab[1], "<unk>");
    for (int i = 2; i < count; i++) {
        for (const char *p = vocab[i]; *p; p++) assert_true(*p >= 'a' && *p <= 'z');
        for (int j = 0; j < i; j++) assert_string_not_equal(vocab[i], vocab[j]);
    }
    vd_model_config cfg;
    assert_int_equal(vd_config_preset("tiny", &cfg), 0);
    assert_int_equal(cfg.text.vocab_size, count);
    for (int i = 0; i < count; i++) assert_string_equal(cfg.text.vocab[i], vocab[i]);
    vd_config_free(&cfg);
}

static void test_prompts_fit_and_name_everything(void **state)
{
    (void)state;
    vd_model_config cfg;
    assert_int_equal(vd_config_preset("tiny", &cfg), 0);
    int32_t ids[64];
    char unknown[256], prompt[VD_WORLD_PROMPT_LEN];
    int longest = 0, differing = 0;
    vd_clip_truth *t = vd_malloc(sizeof *t);
    for (int i = 0; i < 1500; i++) {
        vd_world_sample(21, (uint64_t)i, 32, 32, 2, t);
        for (int variant = 0; variant < 3; variant++) {
            vd_world_prompt(t, (uint64_t)variant, prompt, sizeof prompt);
            if (variant == 0) assert_string_equal(prompt, t->prompt);
            else differing += strcmp(prompt, t->prompt) != 0;
            int words = count_words(prompt);
            if (words > longest) longest = words;
            assert_true(words <= VD_WORLD_MAX_WORDS && words <= cfg.text.max_tokens);
            if (vd_tokenize(&cfg.text, prompt, ids, unknown, sizeof unknown) != 0) fail_msg("unknown words \"%s\" in \"%s\"", unknown, prompt);
            for (int o = 0; o < t->object_count; o++)
                if (!has_word(prompt, vd_colour_name(t->objects[o].colour))) fail_msg("\"%s\" lacks object %d's colour", prompt, o);
            int and_count = 0;
            for (const char *p = prompt; (p = strstr(p, " and ")); p++) and_count++;
            assert_int_equal(and_count, t->object_count > 1);
        }
    }
    assert_true(longest >= VD_WORLD_MAX_WORDS - 2); /* three-object prompts use nearly the whole budget */
    assert_true(differing > 2 * 1500 * 8 / 10);    /* paraphrases really differ */
    free(t);
    vd_config_free(&cfg);
}

static void test_clips_are_deterministic_and_varied(void **state)
{
    (void)state;
    vd_clip_truth *a = vd_malloc(sizeof *a), *b = vd_malloc(sizeof *b);
    int shapes[VD_SHAPE_COUNT] = {0}, colours[VD_COLOUR_COUNT] = {0}, sizes[VD_SIZE_COUNT] = {0};
    int motions[VD_MOTION_COUNT] = {0}, backgrounds[VD_BACKGROUND_COUNT] = {0}, counts[4] = {0};
    for (int i = 0; i < 800; i++) {
        vd_world_sample(5, (uint64_t)i, 48, 40, 3, a);
        vd_world_sample(5, (uint64_t)i, 48, 40, 3, b);
        assert_memory_equal(a, b, sizeof *a);
        backgrounds[a->background]++, counts[a->object_count]++;
        for (int o = 0; o < a->object_count; o++) {
            const vd_world_object *ob = &a->objects[o];
            shapes[ob->shape]++, colours[ob->colour]++, sizes[ob->size]++, motions[ob->motion]++;
            assert_true(vd_world_colour_allowed(ob->colour, a->background));
            assert_true(vd_world_motion_allowed(ob->motion, ob->shape));
            for (int p = 0; p < o; p++) assert_int_not_equal(ob->colour, a->objects[p].colour);
        }
    }
    for (int i = 0; i < VD_SHAPE_COUNT; i++) assert_true(shapes[i] > 0);
    for (int i = 0; i < VD_COLOUR_COUNT; i++) assert_true(colours[i] > 0);
    for (int i = 0; i < VD_SIZE_COUNT; i++) assert_true(sizes[i] > 0);
    for (int i = 0; i < VD_MOTION_COUNT; i++) assert_true(motions[i] > 0);
    for (int i = 0; i < VD_BACKGROUND_COUNT; i++) assert_true(backgrounds[i] > 0);
    for (int i = 1; i <= 3; i++) assert_true(counts[i] > 0);
    /* other odds of the object count: NULL is the world's draw; odds for one count alone give it
     * always, with the clip's background drawn as before; 0:1:3 gives two and three objects about
     * a quarter and three quarters of the time */
    int by_odds[4] = {0};
    for (int i = 0; i < 800; i++) {
        vd_world_sample(5, (uint64_t)i, 48, 40, 3, a);
        vd_world_sample_odds(5, (uint64_t)i, 48, 40, 3, NULL, b);
        assert_memory_equal(a, b, sizeof *a);
        for (int k = 0; k < VD_WORLD_MAX_OBJECTS; k++) {
            float odds[VD_WORLD_MAX_OBJECTS] = {0};
            odds[k] = 2.0f;
            vd_world_sample_odds(5, (uint64_t)i, 48, 40, 3, odds, b);
            assert_int_equal(b->object_count, k + 1);
            assert_int_equal(b->background, a->background);
        }
        const float crowded[VD_WORLD_MAX_OBJECTS] = {0, 1, 3};
        vd_world_sample_odds(5, (uint64_t)i, 48, 40, 3, crowded, b);
        by_odds[b->object_count]++;
    }
    assert_int_equal(by_odds[1], 0);
    assert_true(by_odds[2] > 150 && by_odds[2] < 250 && by_odds[3] > 550 && by_odds[3] < 650);
    vd_world_sample(5, 1, 48, 40, 3, b);
    assert_true(memcmp(a, b, sizeof *a) != 0);
    free(a);
    free(b);
}

/* One object, described by hand. */
static void single_object(vd_clip_truth *t, vd_shape shape, vd_motion motion, float x, float y, int side, int frames)
{
    memset(t, 0, sizeof *t);
    t->width = t->height = side, t->frames = frames, t->background = VD_BACKGROUND_BLACK, t->object_count = 1;
    t->objects[0] = (vd_world_object){.shape = shape, .colour = VD_COLOUR_WHITE, .size = VD_SIZE_LARGE,
                                      .motion = motion, .start_x = x, .start_y = y};
    vd_world_compute_tracks(t);
}

static void test_render_areas_antialiasing_and_backgrounds(void **state)
{
    (void)state;
    const int side = 96;
    vd_clip_truth *t = vd_malloc(sizeof *t);
    float *frames = vd_malloc((size_t)3 * side * side * sizeof(float));
    float white[3], black[3];
    vd_colour_rgb(VD_COLOUR_WHITE, white);
    vd_colour_rgb(VD_COLOUR_BLACK, black);
    for (int s = 0; s < VD_SHAPE_COUNT; s++) {
        single_object(t, (vd_shape)s, VD_MOTION_STAY, 0.5f, 0.5f, side, 1);
        vd_world_render(t, frames);
        double area = 0;
        int partial = 0;
        for (int i = 0; i < side * side; i++) {
            float v = (frames[i] + 1) / 2; /* red channel: coverage between black and white */
            assert_true(frames[i] >= -1.0f && frames[i] <= 1.0f);
            double a = (v - black[0]) / (white[0] - black[0]);
            area += a;
            partial += a > 0.05 && a < 0.95;
        }
        double r = vd_size_radius(VD_SIZE_LARGE, side);
        assert_float_equal(area, M_PI * r * r, 0.01 * M_PI * r * r); /* every shape of a size has its area */
        assert_true(partial > 10);                                   /* edges are anti-aliased */
        assert_float_equal(t->objects[0].track[0].visible, 1.0, 0.01);
    }
    for (int b = 0; b < VD_BACKGROUND_COUNT; b++) {
        float *bg = vd_malloc((size_t)side * side * 3 * sizeof(float));
        vd_world_render_background((vd_background)b, side, side, bg);
        double lo = 1, hi = 0;
        for (int i = 0; i < side * side * 3; i++) lo = fmin(lo, bg[i]), hi = fmax(hi, bg[i]);
        assert_true(lo >= 0 && hi <= 1);
        if (b >= VD_BACKGROUND_GRADIENT) assert_true(hi - lo > 0.1); /* not solid */
        free(bg);
    }
    free(frames);
    free(t);
}

static void test_tracks_follow_the_kinematics(void **state)
{
    (void)state;
    const int side = 64, frames = 40;
    vd_clip_truth *t = vd_malloc(sizeof *t);
    single_object(t, VD_SHAPE_SQUARE, VD_MOTION_LEFT, 0.5f, 0.5f, side, frames);
    for (int f = 1; f < frames; f++) {
        assert_float_equal(t->objects[0].track[f - 1].x - t->objects[0].track[f].x, VD_WORLD_SPEED * side, 1e-3);
        assert_float_equal(t->objects[0].track[f].y, 32.0, 1e-4);
        assert_true(t->objects[0].track[f].visible <= t->objects[0].track[f - 1].visible + 1e-6); /* leaving */
    }
    assert_float_equal(t->objects[0].track[0].visible, 1.0, 1e-3);
    assert_true(t->objects[0].track[frames - 1].visible < 0.01); /* gone past the left edge */

    single_object(t, VD_SHAPE_STAR, VD_MOTION_GROW, 0.5f, 0.5f, side, 10);
    assert_float_equal(t->objects[0].track[9].scale, exp(9 * VD_WORLD_GROWTH_RATE), 1e-4);
    single_object(t, VD_SHAPE_TRIANGLE, VD_MOTION_ROTATE, 0.5f, 0.5f, side, 10);
    assert_float_equal(t->objects[0].track[9].angle, 9 * VD_WORLD_SPIN_RATE, 1e-4);
    single_object(t, VD_SHAPE_CIRCLE, VD_MOTION_ORBIT, 0.5f, 0.5f, side, 10);
    for (int f = 0; f < 10; f++)
        assert_float_equal(hypot(t->objects[0].track[f].x - 32, t->objects[0].track[f].y - 32), VD_WORLD_ORBIT_RADIUS * side, 1e-3);

    /* A second object on top of the first covers part of it. */
    single_object(t, VD_SHAPE_CIRCLE, VD_MOTION_STAY, 0.5f, 0.5f, side, 1);
    t->object_count = 2;
    t->objects[1] = t->objects[0];
    t->objects[1].colour = VD_COLOUR_RED;
    t->objects[1].start_x = 0.6f;
    vd_world_compute_tracks(t);
    assert_true(t->objects[0].track[0].visible < 0.7f);
    assert_float_equal(t->objects[1].track[0].visible, 1.0, 1e-3);
    free(t);
}

static void test_truth_survives_json(void **state)
{
    (void)state;
    vd_clip_truth *a = vd_malloc(sizeof *a), *b = vd_malloc(sizeof *b);
    char video[64], err[256];
    for (int i = 0; i < 20; i++) {
        vd_world_sample(77, (uint64_t)i, 64, 48, 6, a);
        char *json = vd_world_truth_to_json(a, "clip.mp4", "clip.png");
        assert_int_equal(vd_world_truth_from_json(json, b, video, sizeof video, err, sizeof err), 0);
        free(json);
        assert_string_equal(video, "clip.mp4");
        assert_string_equal(a->prompt, b->prompt);
        assert_true(a->seed == b->seed && a->index == b->index);
        assert_int_equal(a->background, b->background);
        assert_int_equal(a->object_count, b->object_count);
        for (int o = 0; o < a->object_count; o++)
            for (int f = 0; f < a->frames; f++) {
                const vd_track_point *p = &a->objects[o].track[f], *q = &b->objects[o].track[f];
                assert_float_equal(p->x, q->x, 1e-3);
                assert_float_equal(p->y, q->y, 1e-3);
                assert_float_equal(p->scale, q->scale, 1e-5);
                assert_float_equal(p->visible, q->visible, 1e-3);
            }
    }
    const char *bad[] = {"not json", "{\"width\":64,\"height\":64,\"frames\":4,\"background\":\"plaid\",\"objects\":[]}",
                         "{\"width\":64,\"height\":64,\"frames\":4,\"background\":\"black\",\"objects\":[]}",
                         "{\"width\":64,\"height\":64,\"frames\":0,\"background\":\"black\",\"objects\":[]}",
                         "{\"width\":64,\"height\":64,\"frames\":4,\"background\":\"black\",\"objects\":[{\"shape\":\"blob\"}]}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        assert_int_equal(vd_world_truth_from_json(bad[i], b, NULL, 0, err, sizeof err), -1);
        assert_true(strlen(err) > 0);
    }
    free(a);
    free(b);
}

/* In order, and strided: runs of clips spaced apart, as a replica of a training run takes them. */
static void test_loader_hands_out_the_seeds_clips_in_order(void **state)
{
    (void)state;
    const int w = 32, h = 24, frames = 4, clips = 9;
    size_t n = (size_t)frames * 3 * w * h;
    float *want = vd_malloc(n * sizeof(float)), *got = vd_malloc(n * sizeof(float));
    vd_clip_truth *expected = vd_malloc(sizeof *expected), *truth = vd_malloc(sizeof *truth);
    assert_null(vd_loader_new(1, w, h, 0, 2, 2));
    assert_null(vd_loader_new(1, w, h, frames, 0, 2));
    assert_null(vd_loader_new_strided(1, 0, 0, 1, w, h, frames, 2, 2, NULL));
    assert_null(vd_loader_new_strided(1, 0, 3, 2, w, h, frames, 2, 2, NULL));
    for (int threads = 1; threads <= 3; threads += 2) {
        vd_loader *l = vd_loader_new(123, w, h, frames, threads, 3);
        assert_non_null(l);
        for (int i = 0; i < clips; i++) {
            vd_world_sample(123, (uint64_t)i, w, h, frames, expected);
            vd_world_render(expected, want);
            vd_loader_next(l, got, truth);
            assert_memory_equal(got, want, n * sizeof(float));
            assert_memory_equal(truth, expected, sizeof *truth);
        }
        vd_loader_free(l); /* with workers still rendering ahead */
    }
    /* runs of 2 clips, 6 apart, from clip 5: 5, 6, 11, 12, 17, ...; lent in place, as training
     * takes them, and checked while the workers render the next ones into the other slots */
    for (int threads = 1; threads <= 3; threads += 2) {
        vd_loader *l = vd_loader_new_strided(123, 5, 2, 6, w, h, frames, threads, 3, NULL);
        assert_non_null(l);
        for (int i = 0; i < clips; i++) {
            vd_world_sample(123, (uint64_t)(5 + i / 2 * 6 + i % 2), w, h, frames, expected);
            vd_world_render(expected, want);
            const float *lent = vd_loader_borrow(l, truth);
            assert_memory_equal(lent, want, n * sizeof(float));
            assert_memory_equal(truth, expected, sizeof *truth);
            vd_loader_give_back(l);
        }
        vd_loader_free(l); /* with workers still rendering ahead */
    }
    /* with odds of the object count: the same clips vd_world_sample_odds draws; bad odds refused */
    const float two_or_three[VD_WORLD_MAX_OBJECTS] = {0, 1, 1}, none[VD_WORLD_MAX_OBJECTS] = {0, 0, 0};
    const float negative[VD_WORLD_MAX_OBJECTS] = {1, -1, 1};
    assert_null(vd_loader_new_strided(1, 0, 1, 1, w, h, frames, 2, 2, none));
    assert_null(vd_loader_new_strided(1, 0, 1, 1, w, h, frames, 2, 2, negative));
    vd_loader *l = vd_loader_new_strided(123, 5, 2, 6, w, h, frames, 2, 3, two_or_three);
    assert_non_null(l);
    for (int i = 0; i < clips; i++) {
        vd_world_sample_odds(123, (uint64_t)(5 + i / 2 * 6 + i % 2), w, h, frames, two_or_three, expected);
        vd_world_render(expected, want);
        vd_loader_next(l, got, truth);
        assert_true(truth->object_count >= 2);
        assert_memory_equal(got, want, n * sizeof(float));
        assert_memory_equal(truth, expected, sizeof *truth);
    }
    vd_loader_free(l);
    free(want);
    free(got);
    free(expected);
    free(truth);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vocabulary_is_the_presets),
        cmocka_unit_test(test_prompts_fit_and_name_everything),
        cmocka_unit_test(test_clips_are_deterministic_and_varied),
        cmocka_unit_test(test_render_areas_antialiasing_and_backgrounds),
        cmocka_unit_test(test_tracks_follow_the_kinematics),
        cmocka_unit_test(test_truth_survives_json),
        cmocka_unit_test(test_loader_hands_out_the_seeds_clips_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
