/* test_batching.c: step-level batching gives each video the result it would get alone. Video A
 * runs two steps alone, then B joins the batch (guided and unguided, DDIM with fresh noise and
 * Euler, different step counts), A leaves when done and B finishes alone; both must match their
 * solo runs. And a
 * video started from a clip (video-to-video) runs the last share of its steps from that clip. */
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

#include "common.h"
#include "vdmini.h"

static char model_path[] = "/tmp/vdmini-batch-XXXXXX";

static int setup(void **state)
{
    (void)state;
    int fd = mkstemp(model_path);
    if (fd < 0) return -1;
    close(fd);
    char err[VD_ERR_LEN];
    return vd_init_preset("tiny", NULL, 0, 11, model_path, err);
}

static int teardown(void **state)
{
    (void)state;
    unlink(model_path);
    return 0;
}

static double rel_error(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d, den += (double)b[i] * b[i];
    }
    return sqrt(num) / (sqrt(den) + 1e-30);
}

static void test_join_and_leave(void **state)
{
    (void)state;
    char err[VD_ERR_LEN];
    vd_engine *e = vd_engine_open(model_path, NULL, VD_DEVICE_CPU, 0, err);
    assert_non_null(e);
    vd_gen_params a = {.prompt = "a red circle moves left", .frames = 3, .width = 64, .height = 64, .steps = 4,
                       .guidance = 5.0f, .sampler = VD_SAMPLER_DDIM, .eta = 1.0f, .seed = 1};
    vd_gen_params b = {.prompt = "a blue square moves up", .frames = 3, .width = 64, .height = 64, .steps = 3,
                       .guidance = 1.0f, .sampler = VD_SAMPLER_EULER, .seed = 2};
    size_t n = (size_t)3 * 3 * 64 * 64;
    float *a_solo = vd_malloc(n * sizeof(float)), *b_solo = vd_malloc(n * sizeof(float));
    float *a_batch = vd_malloc(n * sizeof(float)), *b_batch = vd_malloc(n * sizeof(float));
    assert_int_equal(vd_generate(e, &a, a_solo, NULL, NULL, err), 0);
    assert_int_equal(vd_generate(e, &b, b_solo, NULL, NULL, err), 0);

    vd_video *va = vd_video_begin(e, &a, err), *vb = NULL;
    assert_non_null(va);
    vd_step(e, &va, 1);
    vd_step(e, &va, 1);
    vb = vd_video_begin(e, &b, err);
    assert_non_null(vb);
    assert_true(vd_video_compatible(va, vb));
    vd_video *both[2] = {va, vb};
    vd_step(e, both, 2);
    vd_step(e, both, 2);
    assert_int_equal(vd_video_step_index(va), 4);
    assert_int_equal(vd_video_step_index(vb), 2);
    vd_step(e, &vb, 1);
    assert_int_equal(vd_video_step_index(vb), vd_video_steps(vb));
    vd_video_decode(e, va, a_batch);
    vd_video_decode(e, vb, b_batch);
    double ea = rel_error(a_batch, a_solo, n), eb = rel_error(b_batch, b_solo, n);
    printf("batched vs solo: A %.2e, B %.2e\n", ea, eb);
    assert_true(ea < 1e-4);
    assert_true(eb < 1e-4);
    /* and the two videos really differ */
    assert_true(rel_error(a_solo, b_solo, n) > 1e-2);

    /* a video of another size is not compatible */
    vd_gen_params c = b;
    c.width = 128;
    vd_video *vc = vd_video_begin(e, &c, err);
    assert_non_null(vc);
    assert_false(vd_video_compatible(va, vc));
    vd_video_free(e, vc);

    /* bad parameters are refused with a message */
    c.steps = 0;
    assert_null(vd_video_begin(e, &c, err));
    assert_non_null(strstr(err, "steps"));
    c.steps = 3, c.eta = 0.5f; /* c is Euler, which takes no fresh noise */
    assert_null(vd_video_begin(e, &c, err));
    assert_non_null(strstr(err, "eta"));
    c.sampler = VD_SAMPLER_DDIM, c.eta = 1.5f;
    assert_null(vd_video_begin(e, &c, err));
    assert_non_null(strstr(err, "eta"));

    vd_video_free(e, va);
    vd_video_free(e, vb);
    free(a_solo), free(b_solo), free(a_batch), free(b_batch);
    vd_engine_close(e);
}

/* Video-to-video: strength 1 starts from pure noise (the schedule ends at zero SNR), so it makes
 * exactly the plain video; strength 0.25 of 4 steps starts at step 3 and its result follows the
 * clip it started from; a strength outside (0, 1] is refused. */
static void test_video_to_video(void **state)
{
    (void)state;
    char err[VD_ERR_LEN];
    vd_engine *e = vd_engine_open(model_path, NULL, VD_DEVICE_CPU, 0, err);
    assert_non_null(e);
    size_t n = (size_t)3 * 3 * 64 * 64;
    float *clip_a = vd_malloc(n * sizeof(float)), *clip_b = vd_malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        clip_a[i] = (float)((i * 7919) % 200) / 100.0f - 1.0f;
        clip_b[i] = (float)((i / 64) % 2) - 0.5f;
    }
    float *plain = vd_malloc(n * sizeof(float)), *full = vd_malloc(n * sizeof(float));
    float *from_a = vd_malloc(n * sizeof(float)), *from_b = vd_malloc(n * sizeof(float));
    vd_gen_params p = {.prompt = "a red circle moves left", .frames = 3, .width = 64, .height = 64, .steps = 4,
                       .guidance = 4.0f, .sampler = VD_SAMPLER_DDIM, .seed = 5};
    assert_int_equal(vd_generate(e, &p, plain, NULL, NULL, err), 0);
    vd_gen_params q = p;
    q.video = clip_a, q.strength = 1.0f;
    assert_int_equal(vd_generate(e, &q, full, NULL, NULL, err), 0);
    assert_memory_equal(full, plain, n * sizeof(float));

    q.strength = 0.25f;
    vd_video *v = vd_video_begin(e, &q, err);
    assert_non_null(v);
    assert_int_equal(vd_video_step_index(v), 3);
    vd_video_free(e, v);
    assert_int_equal(vd_generate(e, &q, from_a, NULL, NULL, err), 0);
    q.video = clip_b;
    assert_int_equal(vd_generate(e, &q, from_b, NULL, NULL, err), 0);
    double a_b = rel_error(from_a, from_b, n), a_plain = rel_error(from_a, plain, n);
    printf("video-to-video at 0.25: from A vs from B %.3f, from A vs plain %.3f\n", a_b, a_plain);
    assert_true(a_b > 1e-2 && a_plain > 1e-2);

    const float bad[] = {0.0f, -0.5f, 1.5f, NAN};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        q.strength = bad[i];
        assert_null(vd_video_begin(e, &q, err));
        assert_non_null(strstr(err, "strength"));
    }
    free(clip_a), free(clip_b), free(plain), free(full), free(from_a), free(from_b);
    vd_engine_close(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_join_and_leave), cmocka_unit_test(test_video_to_video)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
