/* check_train.c: the training passes against PyTorch autograd, on cases written by
 * tools/reference/make_train_cases.py, on both CPU backends: the autoencoder's loss and the
 * gradient of every autoencoder parameter, then a few AdamW steps on the same batch must lower
 * the loss; the denoiser's weighted v-prediction loss and the gradient of every text encoder and UNet
 * parameter (when the cases have them).
 *
 *   check_train WEIGHTS.safetensors CASES.safetensors
 *
 * Prints one line per check and "N passed, M failed"; exits 1 when anything failed. */
#include "ae_train.h"
#include "backend.h"
#include "common.h"
#include "denoiser_train.h"
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

static float *upload_f32(vd_backend *be, const vd_st_tensor *t)
{
    size_t n = (size_t)vd_st_numel(t);
    float *host = vd_malloc(n * sizeof(float)), *dev = be->alloc(be, n * sizeof(float));
    vd_st_to_f32(t, host);
    be->upload(be, dev, host, n * sizeof(float));
    free(host);
    return dev;
}

static void check_loss(const char *backend, const vd_st_tensor *want_loss, float loss)
{
    float expected;
    vd_st_to_f32(want_loss, &expected);
    double err = fabs(loss - expected) / fabs(expected);
    report(backend, "loss", err, err <= TOLERANCE);
}

/* The gradients (backend memory, the model's layout) of every parameter whose name starts with
 * one of prefixes against the cases' "grad.<name>": the aggregate relative error, and the worst
 * single parameter printed. */
static void check_grads(vd_model *m, const float *dev_grads, const vd_st_file *cases, const char *const *prefixes,
                        int nprefixes)
{
    vd_backend *be = m->be;
    float *grads = vd_malloc(m->total * sizeof(float));
    be->download(be, grads, dev_grads, m->total * sizeof(float));
    double num = 0, den = 0, worst = 0;
    const char *worst_name = "";
    int compared = 0;
    for (int i = 0; i < m->nparams; i++) {
        const vd_param *p = &m->params[i];
        int wanted = 0;
        for (int k = 0; k < nprefixes && !wanted; k++) wanted = strncmp(p->name, prefixes[k], strlen(prefixes[k])) == 0;
        if (!wanted) continue;
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
}

static void check_autoencoder(vd_model *m, const vd_st_file *cases)
{
    vd_backend *be = m->be;
    const vd_st_tensor *in = vd_st_find(cases, "ae.train.in");
    int B = (int)in->shape[0], H = (int)in->shape[2], W = (int)in->shape[3];
    float *img = upload_f32(be, in);

    vd_ae_trainer t;
    vd_ae_trainer_init(&t, m);
    vd_ae_zero_grads(&t);
    float loss = vd_ae_loss_and_grads(&t, img, B, H, W);
    check_loss(be->name, vd_st_find(cases, "ae.train.loss"), loss);
    check_grads(m, t.grads, cases, (const char *const[]){"ae."}, 1);

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
}

static void check_denoiser(vd_model *m, const vd_st_file *cases)
{
    vd_backend *be = m->be;
    const vd_st_tensor *ids_t = vd_st_find(cases, "unet.train.ids"), *x_t = vd_st_find(cases, "unet.train.x");
    int N = (int)x_t->shape[0], T = (int)x_t->shape[1], h = (int)x_t->shape[3], w = (int)x_t->shape[4];
    int32_t *ids = be->alloc(be, ids_t->nbytes);
    be->upload(be, ids, ids_t->data, ids_t->nbytes);
    float *x = upload_f32(be, x_t), *t = upload_f32(be, vd_st_find(cases, "unet.train.t"));
    float *v = upload_f32(be, vd_st_find(cases, "unet.train.v"));
    float *weight = upload_f32(be, vd_st_find(cases, "unet.train.weight"));
    float *grads = be->alloc(be, m->total * sizeof(float));
    be->zero(be, grads, m->total * sizeof(float));

    float loss = vd_denoiser_loss_and_grads(m, grads, ids, x, t, v, weight, N, T, h, w);
    check_loss(be->name, vd_st_find(cases, "unet.train.loss"), loss);
    check_grads(m, grads, cases, (const char *const[]){"text.", "unet."}, 2);

    be->release(be, ids), be->release(be, x), be->release(be, t), be->release(be, v), be->release(be, weight);
    be->release(be, grads);
}

static int has(const vd_st_file *cases, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (!vd_st_find(cases, names[i])) return 0;
    return 1;
}

static const char *const ae_cases[] = {"ae.train.in", "ae.train.loss"};
static const char *const denoiser_cases[] = {"unet.train.ids", "unet.train.x", "unet.train.t", "unet.train.v",
                                             "unet.train.weight", "unet.train.loss"};

static void check_backend(vd_model *m, vd_backend *be, const vd_st_file *cases)
{
    vd_model_attach(m, be);
    if (has(cases, ae_cases, 2)) check_autoencoder(m, cases);
    /* the denoiser is checked second: the autoencoder's optimizer steps do not touch its weights */
    if (has(cases, denoiser_cases, 6)) check_denoiser(m, cases);
    vd_model_detach(m);
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
    if (!has(&cases, ae_cases, 2) && !has(&cases, denoiser_cases, 6)) {
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
