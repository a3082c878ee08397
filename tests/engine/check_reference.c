/* check_reference.c: compares the C model with the PyTorch reference on cases written by
 * tools/reference/make_model_cases.py: the tokenizer (exact ids and unknown words), the text
 * encoder, autoencoder encode and decode, one UNet forward, and whole DDIM and Euler sampling
 * runs with guidance (DDIM also with the guided v rescaled, and, given a guide model, moving away
 * from the guide's prediction). Every comparison runs on both CPU backends (fast and reference).
 *
 *   check_reference WEIGHTS.safetensors CASES.safetensors [GUIDE.safetensors]
 *
 * Prints one line per check and "N passed, M failed"; exits 1 when anything failed. */
#include "backend.h"
#include "common.h"
#include "model.h"
#include "safetensors.h"
#include "sampler.h"
#include "tokenizer.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOLERANCE 1e-4

static int passed, failed;

static void report(const char *backend, const char *what, double rel, double tol)
{
    int ok = rel <= tol; /* NaN fails */
    printf("%-14s %-22s rel err %.3e  %s\n", backend, what, rel, ok ? "ok" : "FAIL");
    ok ? passed++ : failed++;
}

static const vd_st_tensor *need(const vd_st_file *f, const char *name)
{
    const vd_st_tensor *t = vd_st_find(f, name);
    if (!t) {
        fprintf(stderr, "cases file has no tensor %s\n", name);
        exit(1);
    }
    return t;
}

/* The tensor as floats in backend memory. */
static float *upload(vd_backend *be, const vd_st_tensor *t)
{
    size_t n = (size_t)vd_st_numel(t);
    float *host = vd_malloc(n * sizeof(float));
    if (vd_st_to_f32(t, host)) {
        fprintf(stderr, "tensor %s is not floating point\n", t->name);
        exit(1);
    }
    float *dev = be->alloc(be, n * sizeof(float));
    be->upload(be, dev, host, n * sizeof(float));
    free(host);
    return dev;
}

/* ‖got − want‖ / ‖want‖ with got in backend memory. */
static double rel_error(vd_backend *be, const float *got, const vd_st_tensor *want)
{
    size_t n = (size_t)vd_st_numel(want);
    float *g = vd_malloc(n * sizeof(float)), *w = vd_malloc(n * sizeof(float));
    be->download(be, g, got, n * sizeof(float));
    vd_st_to_f32(want, w);
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)g[i] - w[i];
        num += d * d;
        den += (double)w[i] * w[i];
    }
    free(g), free(w);
    return sqrt(num) / (sqrt(den) + 1e-30);
}

static void check_tokenizer(const vd_model *m, const vd_st_file *cases, json_t *meta)
{
    json_t *prompts = json_object_get(meta, "prompts"), *unknowns = json_object_get(meta, "unknown_words");
    const vd_st_tensor *ids = need(cases, "text.ids");
    int L = m->cfg.text.max_tokens, bad = 0;
    const int32_t *want = (const int32_t *)ids->data;
    int32_t *got = vd_malloc((size_t)L * sizeof *got);
    for (size_t p = 0; p < json_array_size(prompts); p++) {
        char unknown[1024], expected[1024] = "";
        vd_tokenize(&m->cfg.text, json_string_value(json_array_get(prompts, p)), got, unknown, sizeof unknown);
        json_t *uw = json_array_get(unknowns, p);
        for (size_t i = 0; i < json_array_size(uw); i++) {
            size_t len = strlen(expected);
            snprintf(expected + len, sizeof expected - len, "%s%s", i ? " " : "", json_string_value(json_array_get(uw, i)));
        }
        if (memcmp(got, want + p * (size_t)L, (size_t)L * sizeof *got) != 0 || strcmp(unknown, expected) != 0) {
            printf("tokenizer mismatch for prompt \"%s\" (unknown: got \"%s\", want \"%s\")\n",
                   json_string_value(json_array_get(prompts, p)), unknown, expected);
            bad = 1;
        }
    }
    free(got);
    printf("%-14s %-22s %zu prompts  %s\n", "host", "tokenizer", json_array_size(prompts), bad ? "FAIL" : "ok");
    bad ? failed++ : passed++;
}

static void check_backend(vd_model *m, vd_model *guide, vd_backend *be, const vd_st_file *cases, json_t *meta)
{
    vd_model_attach(m, be);
    if (guide) vd_model_attach(guide, be);
    const char *name = be->name;
    if (m->cfg.text.present && vd_st_find(cases, "text.ids")) {
        const vd_st_tensor *ids_t = need(cases, "text.ids");
        int P = (int)ids_t->shape[0];
        int32_t *ids = be->alloc(be, ids_t->nbytes);
        be->upload(be, ids, ids_t->data, ids_t->nbytes);
        float *out = be->alloc(be, (size_t)P * m->cfg.text.max_tokens * m->cfg.text.dim * sizeof(float));
        vd_text_forward(m, ids, P, out);
        report(name, "text encoder", rel_error(be, out, need(cases, "text.out")), TOLERANCE);
        be->release(be, ids), be->release(be, out);
    }
    if (m->cfg.ae.present && vd_st_find(cases, "ae.enc.in")) {
        const vd_st_tensor *in = need(cases, "ae.enc.in"), *want = need(cases, "ae.enc.out");
        float *x = upload(be, in), *z = be->alloc(be, want->nbytes);
        vd_ae_encode(m, x, (int)in->shape[0], (int)in->shape[2], (int)in->shape[3], z);
        report(name, "autoencoder encode", rel_error(be, z, want), TOLERANCE);
        be->release(be, x), be->release(be, z);
        in = need(cases, "ae.dec.in"), want = need(cases, "ae.dec.out");
        z = upload(be, in), x = be->alloc(be, want->nbytes);
        vd_ae_decode(m, z, (int)in->shape[0], (int)in->shape[2], (int)in->shape[3], x);
        report(name, "autoencoder decode", rel_error(be, x, want), TOLERANCE);
        be->release(be, x), be->release(be, z);
    }
    if (m->cfg.unet.present && vd_st_find(cases, "unet.x")) {
        const vd_st_tensor *xt = need(cases, "unet.x"), *ct = need(cases, "unet.ctx"), *want = need(cases, "unet.out");
        int N = (int)xt->shape[0], T = (int)xt->shape[1], h = (int)xt->shape[3], w = (int)xt->shape[4];
        int L = (int)ct->shape[1];
        float *x = upload(be, xt), *t = upload(be, need(cases, "unet.t")), *ctx = upload(be, ct);
        float *out = be->alloc(be, want->nbytes);
        vd_unet_forward(m, x, t, ctx, L, N, T, h, w, out);
        report(name, "unet forward", rel_error(be, out, want), TOLERANCE);
        be->release(be, x), be->release(be, t), be->release(be, ctx), be->release(be, out);

        json_t *sample = json_object_get(meta, "sample");
        int steps = (int)json_integer_value(json_object_get(sample, "steps"));
        float guidance = (float)json_number_value(json_object_get(sample, "guidance"));
        float rescale = (float)json_number_value(json_object_get(sample, "guidance_rescale"));
        float guide_scale = (float)json_number_value(json_object_get(sample, "guide_scale"));
        float eta = (float)json_number_value(json_object_get(sample, "eta"));
        uint64_t noise_seed = (uint64_t)json_integer_value(json_object_get(sample, "noise_seed"));
        const vd_st_tensor *noise = need(cases, "sample.noise");
        /* DDIM, Euler, DDIM with the guided v rescaled, DDIM with fresh noise (eta), and DDIM
         * with the guide */
        const char *names[5] = {"sample.ddim.out", "sample.euler.out", "sample.ddim_rescaled.out", "sample.ddim_eta.out",
                                "sample.ddim_guided.out"};
        const char *what[5] = {"sampler ddim", "sampler euler", "sampler ddim rescaled", "sampler ddim eta",
                               "sampler ddim guide"};
        for (int s = 0; s < (guide ? 5 : 4); s++) {
            vd_sampler_plan plan;
            if (vd_sampler_plan_make(&m->cfg.diffusion, s == 1 ? VD_SAMPLER_EULER : VD_SAMPLER_DDIM, steps,
                                     s == 3 ? eta : 0.0f, &plan)) {
                fprintf(stderr, "bad sampler settings in the cases file\n");
                exit(1);
            }
            float *z = upload(be, noise), *cond = upload(be, need(cases, "sample.cond"));
            float *sctx = upload(be, need(cases, "sample.ctx"));
            vd_sample(m, &plan, z, cond, sctx, L, (int)noise->shape[0], T, h, w, guidance, s == 2 ? rescale : 0.0f,
                      s == 4 ? guide : NULL, s == 4 ? guide_scale : 0.0f, noise_seed, NULL, NULL);
            report(name, what[s], rel_error(be, z, need(cases, names[s])), TOLERANCE);
            be->release(be, z), be->release(be, cond), be->release(be, sctx);
            vd_sampler_plan_free(&plan);
        }
    }
    vd_model_detach(m); /* the next backend starts clean */
    if (guide) vd_model_detach(guide);
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: check_reference WEIGHTS.safetensors CASES.safetensors [GUIDE.safetensors]\n");
        return 2;
    }
    char err[512];
    vd_model m, guide_model, *guide = argc == 4 ? &guide_model : NULL;
    if (vd_model_load(&m, argv[1], err, sizeof err) || (guide && vd_model_load(guide, argv[3], err, sizeof err))) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    vd_st_file cases;
    if (vd_st_read(argv[2], &cases, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const char *meta_json = vd_st_meta(&cases, "vdmini.cases");
    json_t *meta = meta_json ? json_loads(meta_json, 0, NULL) : NULL;
    if (!meta) {
        fprintf(stderr, "%s: no valid vdmini.cases metadata\n", argv[2]);
        return 1;
    }
    if (m.cfg.text.present) check_tokenizer(&m, &cases, meta);
    vd_backend *backends[2] = {vd_backend_cpu(), vd_backend_cpu_reference()};
    for (int i = 0; i < 2; i++) {
        check_backend(&m, guide, backends[i], &cases, meta);
        backends[i]->destroy(backends[i]);
    }
    json_decref(meta);
    vd_st_free(&cases);
    vd_model_free(&m);
    if (guide) vd_model_free(guide);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
