/* test_batching.c: step-level batching gives each video the result it would get alone. Video A
 * runs two steps alone, then B joins the batch (guided and unguided, DDIM and Euler, different
 * step counts), A leaves when done and B finishes alone; both must match their solo runs. */
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
                       .guidance = 5.0f, .sampler = VD_SAMPLER_DDIM, .seed = 1};
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

    vd_video_free(e, va);
    vd_video_free(e, vb);
    free(a_solo), free(b_solo), free(a_batch), free(b_batch);
    vd_engine_close(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_join_and_leave)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
