/* check_train.c: the autoencoder's training pass against PyTorch autograd, on cases written by
 * tools/reference/make_train_cases.py — the loss and the gradient of every autoencoder
 * parameter — on both CPU backends; then a few AdamW steps on the same batch must lower the
 * loss.
 *
 *   check_train WEIGHTS.safetensors CASES.safetensors
 *
 * Prints one line per check and "N passed, M failed"; exits 1 when anything failed. */
#include "ae_train.h"
#include "backend.h"
#include "common.h"
#include "model.h"
#include "safetensors.h"

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

static void check_backend(vd_model *m, vd_backend *be, const vd_st_file *cases)
{
    vd_model_attach(m, be);
    const vd_st_tensor *in = vd_st_find(cases, "ae.train.in"), *want_loss = vd_st_find(cases, "ae.train.loss");
    int B = (int)in->shape[0], H = (int)in->shape[2], W = (int)in->shape[3];
    size_t n = (size_t)vd_st_numel(in);
    float *host = vd_malloc(n * sizeof(float));
    vd_st_to_f32(in, host);
    float *img = be->alloc(be, n * sizeof(float));
    be->upload(be, img, host, n * sizeof(float));
    free(host);

    vd_ae_trainer t;
    vd_ae_trainer_init(&t, m);
    vd_ae_zero_grads(&t);
    float loss = vd_ae_loss_and_grads(&t, img, B, H, W), expected;
    vd_st_to_f32(want_loss, &expected);
    double loss_err = fabs(loss - expected) / fabs(expected);
    report(be->name, "loss", loss_err, loss_err <= TOLERANCE);

    float *grads = vd_malloc(m->total * sizeof(float));
    be->download(be, grads, t.grads, m->total * sizeof(float));
    double num = 0, den = 0, worst = 0;
    const char *worst_name = "";
    int compared = 0;
    for (int i = 0; i < m->nparams; i++) {
        const vd_param *p = &m->params[i];
        if (strncmp(p->name, "ae.", 3) != 0) continue;
        char name[200];
        snprintf(name, sizeof name, "grad.%s", p->name);
        const vd_st_tensor *g = vd_st_find(cases, name);
        if (!g || (size_t)vd_st_numel(g) != p->numel) {
            report(be->name, name, 0, 0);
            continue;
        }
        float *want = vd_malloc(p->numel * sizeof(float));
        vd_st_to_f32(g, want);
        double pn = 0, pd = 0;
        for (size_t j = 0; j < p->numel; j++) {
            double d = (double)grads[p->offset + j] - want[j];
            pn += d * d, pd += (double)want[j] * want[j];
        }
        num += pn, den += pd;
        double rel = sqrt(pn) / (sqrt(pd) + 1e-30);
        if (pd > 1e-24 && rel > worst) worst = rel, worst_name = p->name;
        free(want);
        compared++;
    }
    double all = sqrt(num) / (sqrt(den) + 1e-30);
    char what[96];
    snprintf(what, sizeof what, "gradients of %d parameters", compared);
    report(be->name, what, all, all <= TOLERANCE);
    printf("%-14s worst single parameter: %s %.3e\n", be->name, worst_name, worst);
    free(grads);

    /* a few optimizer steps on this batch lower the loss */
    vd_adamw_config opt = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f,
                           .clip_norm = 1.0f};
    float first = loss, last = loss;
    for (int s = 0; s < 8; s++) {
        vd_ae_optimizer_step(&t, &opt);
        vd_ae_zero_grads(&t);
        last = vd_ae_loss_and_grads(&t, img, B, H, W);
    }
    printf("%-14s loss over 8 AdamW steps: %.6f -> %.6f\n", be->name, first, last);
    report(be->name, "8 AdamW steps lower the loss", last / first, last < 0.9f * first);

    vd_ae_trainer_free(&t);
    be->release(be, img);
    for (int i = 0; i < m->pool_count; i++) be->release(be, m->pool[i].ptr);
    m->pool_count = 0;
    be->release(be, m->weights);
    m->weights = NULL;
    m->be = NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: check_train WEIGHTS.safetensors CASES.safetensors\n");
        return 2;
    }
    char err[512];
    vd_st_file cases;
    if (vd_st_read(argv[2], &cases, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (!vd_st_find(&cases, "ae.train.in") || !vd_st_find(&cases, "ae.train.loss")) {
        fprintf(stderr, "%s: not a training cases file\n", argv[2]);
        return 1;
    }
    vd_backend *backends[2] = {vd_backend_cpu(), vd_backend_cpu_reference()};
    for (int i = 0; i < 2; i++) {
        vd_model m; /* loaded afresh for each backend: the optimizer steps change the weights */
        if (vd_model_load(&m, argv[1], err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        check_backend(&m, backends[i], &cases);
        vd_model_free(&m);
        backends[i]->destroy(backends[i]);
    }
    vd_st_free(&cases);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
