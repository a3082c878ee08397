/* test_distill.c: VDMini's ICMD distillation loss (engine/distill.c) on the CPU with a very small
 * teacher — ICD is zero and adds nothing when the student is the teacher, and the task term takes
 * the loss weights; the student's gradient of task + ICD + MCA and the discriminator heads'
 * gradient of the hinge loss agree with central finite differences; a few steps on ICD lower it;
 * and the training driver distils: the CSV has the terms, a stopped run's checkpoint carries the
 * discriminator and resumes, and the student's weights are written at the end; spread over two
 * backends it computes the same. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "common.h"
#include "config.h"
#include "denoiser_train.h"
#include "distill.h"
#include "model.h"
#include "prune.h"
#include "rng.h"
#include "sampler.h"
#include "small_model.h"
#include "train.h"

#define N 2    /* clips */
#define T 2    /* frames */
#define SIDE 8 /* latent side */

static char work_dir[] = "vdmini-distill-XXXXXX";
static char teacher_path[256];
static vd_model teacher;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* The teacher: small_model.h's small_teacher, 2 frames of 8x8 latents, saved as the teacher's
 * file. */
static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(work_dir) || small_teacher(&teacher, T, SIDE, 11)) return -1;
    char err[256];
    snprintf(teacher_path, sizeof teacher_path, "%s/teacher.safetensors", work_dir);
    return vd_model_save(&teacher, teacher_path, VD_ST_F32, err, sizeof err);
}

static int teardown(void **state)
{
    (void)state;
    vd_model_free(&teacher);
    return nftw(work_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void student_of(char *const *remove, int count, vd_model *student, vd_backend *be)
{
    char err[256];
    vd_prune_report report;
    int rc = vd_prune(&teacher, remove, count, 5, student, &report, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    vd_model_attach(student, be);
}

static vd_distill *open_distill(const vd_model *student, vd_backend *be, float lambda_icd, float lambda_mca)
{
    char err[256];
    vd_distill *d = vd_distill_open(teacher_path, student, be, lambda_icd, lambda_mca, 1e-3f, 9, err, sizeof err);
    if (!d) fprintf(stderr, "%s\n", err);
    assert_non_null(d);
    return d;
}

/* One micro-batch: random noisy inputs with condition channels, timesteps, token ids, targets. */
typedef struct {
    int32_t *ids;
    float *x, *t, *v, *eps;
    float t_host[N], t2_host[N];
    double *abar;
} batch;

static float *random_on(vd_backend *be, size_t n, uint64_t seed)
{
    float *host = vd_malloc(n * sizeof(float)), *dev = be->alloc(be, n * sizeof(float));
    vd_rng_normal(seed, 0, host, n);
    be->upload(be, dev, host, n * sizeof(float));
    free(host);
    return dev;
}

static void make_batch(batch *b, vd_backend *be)
{
    const vd_unet_config *u = &teacher.cfg.unet;
    int L = teacher.cfg.text.max_tokens;
    b->x = random_on(be, (size_t)N * T * u->in_channels * SIDE * SIDE, 1);
    b->v = random_on(be, (size_t)N * T * u->out_channels * SIDE * SIDE, 2);
    b->eps = random_on(be, (size_t)N * T * u->out_channels * SIDE * SIDE, 4);
    b->t_host[0] = 150, b->t_host[1] = 720;
    b->t2_host[0] = 430, b->t2_host[1] = 60;
    b->t = be->alloc(be, sizeof b->t_host);
    be->upload(be, b->t, b->t_host, sizeof b->t_host);
    int32_t ids[N * 64];
    for (int i = 0; i < N * L; i++) ids[i] = i % L < 5 ? 2 + (int32_t)(vd_rng_u64(3, (uint64_t)i) % 20) : 0;
    b->ids = be->alloc(be, (size_t)N * L * sizeof(int32_t));
    be->upload(be, b->ids, ids, (size_t)N * L * sizeof(int32_t));
    b->abar = vd_alphas_cumprod(&teacher.cfg.diffusion);
}

static void free_batch(batch *b, vd_backend *be)
{
    be->release(be, b->x), be->release(be, b->v), be->release(be, b->t), be->release(be, b->ids), be->release(be, b->eps);
    free(b->abar);
}

static float distill_loss(vd_distill *d, vd_model *student, float *grads, const batch *b, vd_distill_terms *terms)
{
    vd_distill_renoise renoise = {.t_host = b->t2_host, .eps = b->eps};
    return vd_distill_loss_and_grads(d, student, grads, b->ids, b->x, b->t, b->t_host, b->abar, b->v, NULL, N, T, SIDE,
                                     SIDE, &renoise, terms);
}

static float *zeroed_grads(vd_backend *be, size_t n)
{
    float *g = be->alloc(be, n * sizeof(float));
    be->zero(be, g, n * sizeof(float));
    return g;
}

/* The teacher as its own student, distilled with ICD on and MCA off, and one micro-batch. */
static vd_distill *open_teacher_as_student(vd_backend *be, vd_model *student, batch *b)
{
    student_of(NULL, 0, student, be);
    make_batch(b, be);
    return open_distill(student, be, 0.1f, 0.0f);
}

static void close_teacher_as_student(vd_backend *be, vd_distill *d, vd_model *student, batch *b)
{
    free_batch(b, be);
    vd_distill_free(d);
    vd_model_free(student);
    be->destroy(be);
}

static void test_icd_zero_for_the_teacher_itself(void **state)
{
    (void)state;
    vd_backend *be = vd_backend_cpu_reference();
    vd_model student;
    batch b;
    vd_distill *d = open_teacher_as_student(be, &student, &b);
    float *g1 = zeroed_grads(be, student.total), *g2 = zeroed_grads(be, student.total);
    vd_distill_terms terms;
    float loss = distill_loss(d, &student, g1, &b, &terms);
    float task = vd_denoiser_loss_and_grads(&student, g2, b.ids, b.x, b.t, b.v, NULL, N, T, SIDE, SIDE);
    assert_true(terms.icd == 0.0f);
    assert_true(loss == task && terms.task == task);
    assert_memory_equal(g1, g2, student.total * sizeof(float)); /* ICD's gradient adds exact zeros */
    be->release(be, g1), be->release(be, g2);
    close_teacher_as_student(be, d, &student, &b);
}

/* |analytic - numeric| within 5% of the larger, or 2e-4. */
static void expect_close(const char *what, size_t i, double analytic, double numeric)
{
    double tol = fmax(2e-4, 0.05 * fmax(fabs(analytic), fabs(numeric)));
    if (fabs(analytic - numeric) > tol)
        fail_msg("%s[%zu]: gradient %.6g, finite difference %.6g", what, i, analytic, numeric);
}

/* The task term's loss weights: with the teacher as its own student and MCA off, the weighted
 * distillation loss and its gradients are the weighted denoiser loss's, and differ from the plain
 * ones. */
static void test_task_term_weighted(void **state)
{
    (void)state;
    vd_backend *be = vd_backend_cpu_reference();
    vd_model student;
    batch b;
    vd_distill *d = open_teacher_as_student(be, &student, &b);
    size_t n = (size_t)N * T * teacher.cfg.unet.out_channels * SIDE * SIDE;
    float *host = vd_malloc(n * sizeof(float)), *weight = be->alloc(be, n * sizeof(float));
    for (size_t i = 0; i < n; i++) host[i] = i % 3 == 0 ? 4.0f : 1.0f;
    be->upload(be, weight, host, n * sizeof(float));
    float *g1 = zeroed_grads(be, student.total), *g2 = zeroed_grads(be, student.total);
    float *g3 = zeroed_grads(be, student.total);
    vd_distill_terms terms;
    vd_distill_renoise renoise = {.t_host = b.t2_host, .eps = b.eps};
    float loss = vd_distill_loss_and_grads(d, &student, g1, b.ids, b.x, b.t, b.t_host, b.abar, b.v, weight, N, T, SIDE,
                                           SIDE, &renoise, &terms);
    float task = vd_denoiser_loss_and_grads(&student, g2, b.ids, b.x, b.t, b.v, weight, N, T, SIDE, SIDE);
    float plain = vd_denoiser_loss_and_grads(&student, g3, b.ids, b.x, b.t, b.v, NULL, N, T, SIDE, SIDE);
    fprintf(stderr, "task term %.9g weighted, %.9g plain\n", terms.task, plain);
    assert_true(loss == task && terms.task == task);
    assert_true(task > 1.5f * plain);
    assert_memory_equal(g1, g2, student.total * sizeof(float));
    free(host);
    be->release(be, weight), be->release(be, g1), be->release(be, g2), be->release(be, g3);
    close_teacher_as_student(be, d, &student, &b);
}

static void test_gradients_match_finite_differences(void **state)
{
    (void)state;
    vd_backend *be = vd_backend_cpu_reference();
    char *remove[] = {"down.0.1"};
    vd_model student;
    student_of(remove, 1, &student, be);
    vd_distill *d = open_distill(&student, be, 1.0f, 1.0f);
    batch b;
    make_batch(&b, be);
    float *grads = zeroed_grads(be, student.total), *scratch = zeroed_grads(be, student.total);
    vd_distill_terms terms;
    distill_loss(d, &student, grads, &b, &terms);
    assert_true(terms.icd > 0 && isfinite(terms.mca) && terms.disc > 0);
    float *g = vd_malloc(student.total * sizeof(float));
    be->download(be, g, grads, student.total * sizeof(float));
    size_t nd = vd_distill_disc_size(d);
    float *heads = vd_malloc(nd * sizeof(float)), *hg = vd_malloc(nd * sizeof(float));
    vd_distill_disc_get(d, heads, hg);

    /* the student: the largest-gradient element of a few tensors, in float64 differences */
    static const char *const tensors[] = {"unet.conv_out.weight", "unet.down.0.0.res.conv2.weight",
                                          "unet.up.1.0.attn.attn_t.to_v.weight", "text.layers.0.ff.fc1.weight"};
    for (size_t k = 0; k < sizeof tensors / sizeof *tensors; k++) {
        const vd_param *p = vd_model_param(&student, tensors[k]);
        assert_non_null(p);
        size_t best = p->offset;
        for (size_t i = p->offset; i < p->offset + p->numel; i++)
            if (fabsf(g[i]) > fabsf(g[best])) best = i;
        float w0;
        be->download(be, &w0, student.weights + best, sizeof w0);
        float h = 1e-2f * fmaxf(fabsf(w0), 0.1f), wp = w0 + h, wm = w0 - h;
        be->upload(be, student.weights + best, &wp, sizeof wp);
        double lp = distill_loss(d, &student, scratch, &b, &terms);
        be->upload(be, student.weights + best, &wm, sizeof wm);
        double lm = distill_loss(d, &student, scratch, &b, &terms);
        be->upload(be, student.weights + best, &w0, sizeof w0);
        expect_close(tensors[k], best - p->offset, g[best], (lp - lm) / (2.0 * h));
    }

    /* the heads: the hinge loss, at the heads' three largest gradients */
    for (int k = 0; k < 3; k++) {
        size_t best = 0;
        for (size_t i = 0; i < nd; i++)
            if (fabsf(hg[i]) > fabsf(hg[best])) best = i;
        float w0 = heads[best], h = 1e-2f * fmaxf(fabsf(w0), 0.1f);
        heads[best] = w0 + h, vd_distill_disc_set(d, heads);
        distill_loss(d, &student, scratch, &b, &terms);
        double lp = terms.disc;
        heads[best] = w0 - h, vd_distill_disc_set(d, heads);
        distill_loss(d, &student, scratch, &b, &terms);
        double lm = terms.disc;
        heads[best] = w0, vd_distill_disc_set(d, heads);
        expect_close("heads", best, hg[best], (lp - lm) / (2.0 * h));
        hg[best] = 0; /* next: the next largest */
    }
    free(g), free(heads), free(hg);
    be->release(be, grads), be->release(be, scratch);
    free_batch(&b, be);
    vd_distill_free(d);
    vd_model_free(&student);
    be->destroy(be);
}

static void test_steps_lower_icd(void **state)
{
    (void)state;
    vd_backend *be = vd_backend_cpu();
    char *remove[] = {"down.0.1"};
    vd_model student;
    student_of(remove, 1, &student, be);
    vd_distill *d = open_distill(&student, be, 1.0f, 0.0f);
    batch b;
    make_batch(&b, be);
    size_t bytes = student.total * sizeof(float);
    float *grads = zeroed_grads(be, student.total), *m = zeroed_grads(be, student.total), *v = zeroed_grads(be, student.total);
    vd_distill_terms terms;
    float first = 0;
    for (int step = 1; step <= 8; step++) {
        be->zero(be, grads, bytes);
        distill_loss(d, &student, grads, &b, &terms);
        if (step == 1) first = terms.icd;
        be->adamw(be, student.weights, grads, m, v, student.total, 2e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, step, 1.0f);
    }
    distill_loss(d, &student, grads, &b, &terms);
    assert_true(first > 0);
    if (!(terms.icd < 0.8f * first)) fail_msg("ICD %.6g after 8 steps, %.6g before", terms.icd, first);
    be->release(be, grads), be->release(be, m), be->release(be, v);
    free_batch(&b, be);
    vd_distill_free(d);
    vd_model_free(&student);
    be->destroy(be);
}

/* ---- the training driver ---- */

static int stop_after_two(void *user, const vd_train_stats *st, int total, double steps_per_s)
{
    (void)total, (void)steps_per_s;
    *(vd_train_stats *)user = *st;
    return st->step == 2;
}

/* A distillation run in work_dir/NAME: small_model.h's whole model (with its autoencoder) as the
 * teacher, down.0.0 removed as the student, 3 steps of grad_accum micro-batches of one clip; extra
 * is more of the config's fields (", ..." or ""). */
static void driver_config_with(vd_train_config *c, const char *name, int grad_accum, const char *extra)
{
    char err[512], model_path[300], student_path[300], json[4096];
    snprintf(model_path, sizeof model_path, "%s/full.safetensors", work_dir);
    snprintf(student_path, sizeof student_path, "%s/student.safetensors", work_dir);
    if (access(student_path, F_OK) != 0) {
        vd_model_config mc;
        assert_int_equal(small_model_config(&mc), 0);
        vd_model full, student;
        assert_int_equal(vd_model_build(&full, &mc, err, sizeof err), 0);
        vd_config_free(&mc);
        vd_model_init_random(&full, 3);
        assert_int_equal(vd_model_save(&full, model_path, VD_ST_F32, err, sizeof err), 0);
        char *remove[] = {"down.0.0"};
        vd_prune_report report;
        assert_int_equal(vd_prune(&full, remove, 1, 5, &student, &report, err, sizeof err), 0);
        assert_int_equal(vd_model_save(&student, student_path, VD_ST_F32, err, sizeof err), 0);
        vd_model_free(&student), vd_model_free(&full);
    }
    snprintf(json, sizeof json,
             "{\"steps\": 3, \"batch\": 4, \"lr\": 0.002, \"warmup_steps\": 1, \"loader_threads\": 1, \"seed\": 5,"
             " \"grad_accum\": %d, \"out_dir\": \"%s/%s\", \"ae\": \"%s\", \"init\": \"%s\", \"teacher\": \"%s\","
             " \"lambda_icd\": 0.5%s}",
             grad_accum, work_dir, name, model_path, student_path, model_path, extra);
    vd_train_config_defaults(c);
    c->target = VD_TRAIN_DENOISER;
    int rc = vd_train_config_parse(json, c, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
}

static void driver_config(vd_train_config *c, const char *name, int grad_accum)
{
    driver_config_with(c, name, grad_accum, "");
}

/* Resumes run NAME from its checkpoint of step STEP and runs it to the end. */
static void finish_from_checkpoint(vd_train_config *c, vd_backend *be, const char *name, int step)
{
    char err[512], path[400];
    snprintf(path, sizeof path, "%s/%s/step-%06d", work_dir, name, step);
    int rc = vd_train(c, be, path, NULL, NULL, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
}

/* The EMA student that run NAME wrote at its end. */
static void load_final_student(const char *name, vd_model *out)
{
    char err[512], path[400];
    snprintf(path, sizeof path, "%s/%s/student-ema.safetensors", work_dir, name);
    assert_int_equal(vd_model_load(out, path, err, sizeof err), 0);
}

static void test_driver_distils_and_resumes(void **state)
{
    (void)state;
    char err[512], path[400];
    vd_train_config c;
    driver_config(&c, "run", 1);
    assert_true(c.lambda_icd == 0.5f && c.lambda_mca == 1.0f && c.disc_lr == c.lr);
    vd_backend *be = vd_backend_cpu();
    vd_train_stats st;
    int rc = vd_train(&c, be, NULL, stop_after_two, &st, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(st.step, 2);
    assert_true(st.icd > 0 && st.disc > 0 && isfinite(st.mca) && st.task > 0);
    assert_true(fabsf(st.loss - (st.task + 0.5f * st.icd + st.mca)) <= 1e-4f * fabsf(st.loss) + 1e-6f);
    snprintf(path, sizeof path, "%s/run/step-000002/discriminator.safetensors", work_dir);
    assert_int_equal(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/run/student-ema.safetensors", work_dir);
    assert_int_not_equal(access(path, F_OK), 0); /* stopped: no final weights yet */

    finish_from_checkpoint(&c, be, "run", 2);
    vd_model out;
    load_final_student("run", &out);
    assert_int_equal(out.cfg.unet.removed_count, 1);
    vd_model_free(&out);
    snprintf(path, sizeof path, "%s/run/train.csv", work_dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char header[128] = "";
    assert_non_null(fgets(header, sizeof header, f));
    fclose(f);
    assert_string_equal(header, "step,loss,lr,grad_norm,clips_per_s,task,icd,mca,disc\n");
    be->destroy(be);
}

/* Records the first step's stats and stops after the second. */
static int first_step_then_stop(void *user, const vd_train_stats *st, int total, double steps_per_s)
{
    (void)total, (void)steps_per_s;
    if (st->step == 1) *(vd_train_stats *)user = *st;
    return st->step == 2;
}

/* Guidance distillation through the driver: the task term's target is the teacher's guided
 * prediction (the student file standing in as the guide), so the first step's task loss differs
 * from plain distillation's on the same clips, and the student it writes records that it samples
 * at guidance 1; the config's guide fields are refused without a guidance above 1. */
static void test_driver_guidance_distils(void **state)
{
    (void)state;
    char err[512], extra[400];
    vd_train_config plain, guided;
    driver_config(&plain, "plain-target", 1);
    snprintf(extra, sizeof extra,
             ", \"teacher_guidance\": 3, \"teacher_guide\": \"%s/student.safetensors\", \"teacher_guide_scale\": 1",
             work_dir);
    driver_config_with(&guided, "guided-target", 1, extra);
    assert_true(guided.teacher_guidance == 3.0f && guided.teacher_guide_scale == 1.0f);
    vd_backend *be = vd_backend_cpu();
    vd_train_stats st_plain, st_guided;
    plain.steps = 1;
    assert_int_equal(vd_train(&plain, be, NULL, stop_after_two, &st_plain, err, sizeof err), 0);
    int rc = vd_train(&guided, be, NULL, first_step_then_stop, &st_guided, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    fprintf(stderr, "first step's task loss: plain target %.6g, guided target %.6g\n", st_plain.task, st_guided.task);
    assert_true(isfinite(st_guided.task) && st_guided.task > 0);
    assert_true(fabsf(st_guided.task - st_plain.task) > 1e-3f * st_plain.task);
    finish_from_checkpoint(&guided, be, "guided-target", 2);
    vd_model out;
    load_final_student("guided-target", &out);
    assert_true(out.cfg.sampling.guidance == 1.0f);
    vd_model_free(&out);
    load_final_student("plain-target", &out);
    assert_true(out.cfg.sampling.guidance == 0.0f);
    vd_model_free(&out);
    be->destroy(be);

    static const struct {
        const char *fields, *message;
    } bad[] = {
        {"\"teacher_guide\": \"g.safetensors\"", "teacher_guide: needs a teacher_guidance above 1"},
        {"\"teacher_guidance\": 2, \"teacher_guide_scale\": 1", "teacher_guide_scale: needs a teacher_guide"},
        {"\"teacher_guidance\": 1", "teacher_guidance: must be above 1"},
        {"\"teacher_guidance\": 0.5", "teacher_guidance"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char json[300];
        vd_train_config c;
        snprintf(json, sizeof json, "{\"out_dir\": \"x\", \"ae\": \"a\", %s}", bad[i].fields);
        vd_train_config_defaults(&c);
        c.target = VD_TRAIN_DENOISER;
        err[0] = 0;
        assert_int_equal(vd_train_config_parse(json, &c, err, sizeof err), -1);
        if (!strstr(err, bad[i].message)) fail_msg("%s: message \"%s\" lacks \"%s\"", json, err, bad[i].message);
    }
}

/* The steps' stats and the final student weights of driver_config's run with two micro-batches a
 * step, on `devices` CPU backends. */
static void parallel_run(const char *name, int devices, vd_train_stats *st, float **weights, size_t *n)
{
    vd_train_config c;
    char err[512];
    driver_config(&c, name, 2);
    vd_backend *be[2] = {vd_backend_cpu(), devices > 1 ? vd_backend_cpu() : NULL};
    vd_train_run *r = vd_train_open_on(&c, be, devices, NULL, err, sizeof err);
    if (!r) fprintf(stderr, "%s\n", err);
    assert_non_null(r);
    for (int s = 0; s < c.steps; s++) vd_train_step(r, &st[s]);
    *n = vd_train_param_count(r);
    *weights = vd_malloc(*n * sizeof(float));
    vd_train_weights(r, 0, *weights);
    vd_train_close(r);
    for (int i = 0; i < devices; i++) be[i]->destroy(be[i]);
}

/* A distillation spread over two backends computes what it computes on one: every loss term of
 * every step, the discriminator's hinge loss (its heads are stepped on gradients added across the
 * backends) and the student's weights, but for the order of the sums. */
static void test_driver_on_two_backends(void **state)
{
    (void)state;
    vd_train_stats one[3], two[3];
    float *w1, *w2;
    size_t n1, n2;
    parallel_run("parallel-one", 1, one, &w1, &n1);
    parallel_run("parallel-two", 2, two, &w2, &n2);
    assert_int_equal(n1, n2);
    for (int s = 0; s < 3; s++) {
        const float a[] = {one[s].loss, one[s].task, one[s].icd, one[s].mca, one[s].disc};
        const float b[] = {two[s].loss, two[s].task, two[s].icd, two[s].mca, two[s].disc};
        fprintf(stderr, "step %d: loss %.7g / %.7g, disc %.7g / %.7g\n", s + 1, a[0], b[0], a[4], b[4]);
        for (int k = 0; k < 5; k++) assert_true(fabsf(a[k] - b[k]) <= 1e-4f * fabsf(a[k]) + 1e-6f);
    }
    double worst = 0;
    for (size_t i = 0; i < n1; i++) worst = fmax(worst, fabs(w1[i] - w2[i]));
    fprintf(stderr, "largest weight difference %.3g\n", worst);
    assert_true(worst < 1e-5);
    free(w1), free(w2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_icd_zero_for_the_teacher_itself),
        cmocka_unit_test(test_task_term_weighted),
        cmocka_unit_test(test_gradients_match_finite_differences),
        cmocka_unit_test(test_steps_lower_icd),
        cmocka_unit_test(test_driver_distils_and_resumes),
        cmocka_unit_test(test_driver_guidance_distils),
        cmocka_unit_test(test_driver_on_two_backends),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
