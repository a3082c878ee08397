/* check_distill.c: the ICMD distillation loss (engine/distill.h) against PyTorch autograd, on a
 * case written by tools/reference/make_distill_cases.py, on both CPU backends: the terms task, ICD,
 * MCA and the discriminator's hinge loss, the gradient of the student's loss for every student
 * parameter, and the hinge loss's gradient for the discriminator heads (relative to the larger of
 * its norm and its two sides' norm, since the sides nearly cancel). A case with distill.guided has
 * the teacher's guided prediction as the task's target, moved away from GUIDE where given.
 *
 *   check_distill TEACHER.safetensors STUDENT.safetensors CASES.safetensors [GUIDE.safetensors]
 *
 * Prints one line per check and "N passed, M failed"; exits 1 when anything failed. */
#include "ae_train.h"
#include "backend.h"
#include "common.h"
#include "distill.h"
#include "model.h"
#include "safetensors.h"
#include "sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOLERANCE 1e-4

static int passed, failed;

static void report(const char *backend, const char *what, double value, int ok)
{
    printf("%-14s %-34s %.3e  %s\n", backend, what, value, ok ? "ok" : "FAIL");
    ok ? passed++ : failed++;
}

static const vd_st_tensor *need(const vd_st_file *f, const char *name)
{
    const vd_st_tensor *t = vd_st_find(f, name);
    if (!t) {
        fprintf(stderr, "check_distill: the cases have no %s\n", name);
        exit(2);
    }
    return t;
}

static float *host_f32(const vd_st_file *f, const char *name, size_t *n)
{
    const vd_st_tensor *t = need(f, name);
    size_t count = (size_t)vd_st_numel(t);
    float *host = vd_malloc(count * sizeof(float));
    vd_st_to_f32(t, host);
    if (n) *n = count;
    return host;
}

static void *upload(vd_backend *be, const void *host, size_t bytes)
{
    void *dev = be->alloc(be, bytes);
    be->upload(be, dev, host, bytes);
    return dev;
}

/* sqrt(sum (got - want)^2 / sum want^2) */
static double relative_error(const float *got, const float *want, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        num += d * d, den += (double)want[i] * want[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void check_backend(vd_backend *be, const char *teacher_path, const char *student_path, const char *guide_path,
                          const vd_st_file *cases)
{
    char err[512];
    vd_model student;
    if (vd_model_load(&student, student_path, err, sizeof err)) {
        fprintf(stderr, "check_distill: %s\n", err);
        exit(2);
    }
    vd_model_attach(&student, be);
    float *lambdas = host_f32(cases, "distill.lambdas", NULL);
    vd_distill *d = vd_distill_open(teacher_path, &student, be, lambdas[0], lambdas[1], 1e-3f, 1, err, sizeof err);
    if (!d) {
        fprintf(stderr, "check_distill: %s\n", err);
        exit(2);
    }
    if (vd_st_find(cases, "distill.guided")) { /* the task's target is the teacher's guided prediction */
        float *guided = host_f32(cases, "distill.guided", NULL);
        if (vd_distill_set_guided_target(d, guided[0], guide_path, guided[1], err, sizeof err)) {
            fprintf(stderr, "check_distill: %s\n", err);
            exit(2);
        }
        free(guided);
    }
    size_t nheads;
    float *heads = host_f32(cases, "distill.heads", &nheads);
    if (nheads != vd_distill_disc_size(d)) {
        report(be->name, "heads' parameter count", (double)nheads, 0);
        exit(1);
    }
    vd_distill_disc_set(d, heads);

    const vd_st_tensor *x_t = need(cases, "distill.x");
    int N = (int)x_t->shape[0], T = (int)x_t->shape[1], h = (int)x_t->shape[3], w = (int)x_t->shape[4];
    size_t nx, nv, ne, nids = (size_t)vd_st_numel(need(cases, "distill.ids"));
    float *x = host_f32(cases, "distill.x", &nx), *v = host_f32(cases, "distill.v", &nv);
    size_t nw;
    float *weight = host_f32(cases, "distill.weight", &nw);
    if (nw != nv) {
        report(be->name, "task weights' count", (double)nw, 0);
        exit(1);
    }
    float *eps = host_f32(cases, "distill.eps", &ne), *t = host_f32(cases, "distill.t", NULL);
    float *t2 = host_f32(cases, "distill.t2", NULL), *terms_want = host_f32(cases, "distill.terms", NULL);
    const int32_t *ids = (const int32_t *)need(cases, "distill.ids")->data;
    float *x_dev = upload(be, x, nx * sizeof(float)), *v_dev = upload(be, v, nv * sizeof(float));
    float *weight_dev = upload(be, weight, nv * sizeof(float));
    float *eps_dev = upload(be, eps, ne * sizeof(float)), *t_dev = upload(be, t, (size_t)N * sizeof(float));
    int32_t *ids_dev = upload(be, ids, nids * sizeof(int32_t));
    float *grads = be->alloc(be, student.total * sizeof(float));
    be->zero(be, grads, student.total * sizeof(float));
    double *abar = vd_alphas_cumprod(&student.cfg.diffusion);

    vd_distill_terms terms;
    vd_distill_renoise renoise = {.t_host = t2, .eps = eps_dev};
    vd_distill_loss_and_grads(d, &student, grads, ids_dev, x_dev, t_dev, t, abar, v_dev, weight_dev, N, T, h, w, &renoise,
                              &terms);
    const float got[] = {terms.task, terms.icd, terms.mca, terms.disc};
    static const char *const names[] = {"task loss", "ICD", "MCA", "discriminator hinge loss"};
    for (int i = 0; i < 4; i++) {
        double e = fabs(got[i] - terms_want[i]) / fmax(fabs(terms_want[i]), 1e-2);
        report(be->name, names[i], e, e <= TOLERANCE);
    }

    /* every student parameter's gradient, and the worst tensor's */
    float *g = vd_malloc(student.total * sizeof(float)), *want = vd_malloc(student.total * sizeof(float));
    be->download(be, g, grads, student.total * sizeof(float));
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < student.nparams; i++) {
        const vd_param *p = &student.params[i];
        if (strncmp(p->name, "ae.", 3) == 0) continue; /* the autoencoder is not trained */
        char name[200];
        snprintf(name, sizeof name, "grad.%s", p->name);
        const vd_st_tensor *gt = vd_st_find(cases, name);
        if (!gt || (size_t)vd_st_numel(gt) != p->numel) {
            report(be->name, name, 0, 0);
            continue;
        }
        vd_st_to_f32(gt, want + p->offset);
        double e = relative_error(g + p->offset, want + p->offset, p->numel);
        if (e > worst) worst = e, worst_name = p->name;
    }
    static const char *const trained[] = {"text.", "unet."};
    size_t begin, end;
    vd_param_range(&student, trained, 2, &begin, &end);
    double all = relative_error(g + begin, want + begin, end - begin);
    report(be->name, "student gradients", all, all <= TOLERANCE);
    printf("%-14s   worst tensor %s: %.3e\n", be->name, worst_name, worst);

    /* the hinge gradient is the sum of a real side and a fake side that nearly cancel when the
     * student is close to the teacher (norms about 10 each and 0.01 together for some seeds):
     * float32 rounding is measured against the sides' size, grad.heads_scale, when that is larger */
    float *hg = vd_malloc(nheads * sizeof(float)), *hg_want = host_f32(cases, "grad.heads", NULL);
    float *scale = host_f32(cases, "grad.heads_scale", NULL);
    vd_distill_disc_get(d, NULL, hg);
    double diff = 0, norm = 0;
    for (size_t i = 0; i < nheads; i++) {
        double e = (double)hg[i] - hg_want[i];
        diff += e * e, norm += (double)hg_want[i] * hg_want[i];
    }
    double he = sqrt(diff) / fmax(sqrt(norm), scale[0]);
    report(be->name, "heads' hinge gradients", he, he <= TOLERANCE);
    free(scale);

    free(g), free(want), free(hg), free(hg_want), free(heads), free(lambdas);
    free(x), free(v), free(weight), free(eps), free(t), free(t2), free(terms_want), free(abar);
    be->release(be, x_dev), be->release(be, v_dev), be->release(be, weight_dev), be->release(be, eps_dev);
    be->release(be, t_dev);
    be->release(be, ids_dev), be->release(be, grads);
    vd_distill_free(d);
    vd_model_free(&student);
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: check_distill TEACHER.safetensors STUDENT.safetensors CASES.safetensors [GUIDE.safetensors]\n");
        return 2;
    }
    vd_st_file cases;
    char err[512];
    if (vd_st_read(argv[3], &cases, err, sizeof err)) {
        fprintf(stderr, "check_distill: %s\n", err);
        return 2;
    }
    vd_backend *backends[] = {vd_backend_cpu_reference(), vd_backend_cpu()};
    for (int i = 0; i < 2; i++) {
        check_backend(backends[i], argv[1], argv[2], argc == 5 ? argv[4] : NULL, &cases);
        backends[i]->destroy(backends[i]);
    }
    vd_st_free(&cases);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
