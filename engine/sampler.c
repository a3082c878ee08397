/* sampler.c: schedule and sampler plans (see sampler.h). */
#include "sampler.h"
#include "common.h"
#include "rng.h"

#include <math.h>
#include <stdlib.h>

/* Keys the per-step noise streams apart from anything else drawn from a video's seed. */
#define STEP_NOISE_STREAM 0x6e6f697365ull

double *vd_alphas_cumprod(const vd_diffusion_config *d)
{
    int n = d->train_steps;
    double *ab = vd_malloc((size_t)n * sizeof *ab);
    double s0 = sqrt((double)d->beta_start), s1 = sqrt((double)d->beta_end), prod = 1.0;
    double k2 = (double)d->snr_shift * d->snr_shift;
    for (int i = 0; i < n; i++) {
        double s = s0 + (s1 - s0) * i / (n - 1);
        prod *= 1.0 - s * s;
        ab[i] = prod / (prod + k2 * (1.0 - prod)); /* SNR / shift^2 */
    }
    if (d->zero_terminal_snr) { /* sqrt(abar) moved and stretched: the first kept, the last 0 */
        double first = sqrt(ab[0]), last = sqrt(ab[n - 1]);
        for (int i = 0; i < n; i++) {
            double r = (sqrt(ab[i]) - last) * first / (first - last);
            ab[i] = r * r;
        }
        ab[n - 1] = 0.0;
    }
    return ab;
}

/* Fractional training index whose sigma is sigma: linear in log sigma between neighbours. */
static double sigma_to_timestep(const double *log_sigmas, int n, double sigma)
{
    double ls = log(sigma);
    if (ls <= log_sigmas[0]) return 0.0;
    if (ls >= log_sigmas[n - 1]) return (double)(n - 1);
    int lo = 0, hi = n - 1;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (log_sigmas[mid] <= ls) lo = mid; else hi = mid;
    }
    return lo + (ls - log_sigmas[lo]) / (log_sigmas[hi] - log_sigmas[lo]);
}

int vd_sampler_plan_make(const vd_diffusion_config *d, vd_sampler_kind kind, int steps, float eta,
                         vd_sampler_plan *plan)
{
    if (steps < 1 || steps > d->train_steps || !(eta >= 0.0f && eta <= 1.0f)) return -1;
    if (eta > 0.0f && kind != VD_SAMPLER_DDIM) return -1;
    int n = d->train_steps;
    double *ab = vd_alphas_cumprod(d);
    double *alpha = vd_malloc((size_t)(steps + 1) * sizeof *alpha); /* ᾱ at each step, then 1 */
    plan->steps = steps;
    plan->timestep = vd_malloc((size_t)steps * sizeof(float));
    plan->coef_z = vd_malloc((size_t)steps * sizeof(float));
    plan->coef_v = vd_malloc((size_t)steps * sizeof(float));
    plan->pin_c = vd_malloc((size_t)steps * sizeof(float));
    plan->pin_z = vd_malloc((size_t)steps * sizeof(float));
    plan->pin_v = vd_malloc((size_t)steps * sizeof(float));
    plan->sigma = vd_malloc((size_t)steps * sizeof(float));
    if (kind == VD_SAMPLER_DDIM) {
        for (int k = 0; k < steps; k++) {
            int t = (int)lround((double)(steps - k) * n / steps) - 1;
            plan->timestep[k] = (float)t;
            alpha[k] = ab[t];
        }
    } else {
        /* With a zero terminal SNR the last timestep's sigma is infinite: the first step is
         * taken there (pure noise), and the grid of the remaining steps spans the finite ones. */
        int pure = ab[n - 1] == 0.0, finite = n - pure, first = 0;
        if (pure) {
            plan->timestep[0] = (float)(n - 1);
            alpha[0] = 0.0;
            first = 1;
        }
        double *log_sigmas = vd_malloc((size_t)finite * sizeof *log_sigmas);
        for (int i = 0; i < finite; i++) log_sigmas[i] = 0.5 * log((1.0 - ab[i]) / ab[i]);
        double rho = 7.0, smax = exp(log_sigmas[finite - 1]), smin = exp(log_sigmas[0]);
        int grid = steps - first;
        for (int k = 0; k < grid; k++) {
            double frac = grid > 1 ? (double)k / (grid - 1) : 0.0;
            double sigma = pow(pow(smax, 1.0 / rho) + frac * (pow(smin, 1.0 / rho) - pow(smax, 1.0 / rho)), rho);
            plan->timestep[first + k] = (float)sigma_to_timestep(log_sigmas, finite, sigma);
            alpha[first + k] = 1.0 / (1.0 + sigma * sigma);
        }
        free(log_sigmas);
    }
    alpha[steps] = 1.0;
    for (int k = 0; k < steps; k++) {
        double sa = sqrt(alpha[k]), sb = sqrt(1.0 - alpha[k]);
        double na = sqrt(alpha[k + 1]), nb = sqrt(1.0 - alpha[k + 1]);
        /* DDIM's sigma = eta sqrt((1 - a') / (1 - a)) sqrt(1 - a / a'), at most nb for eta <= 1 */
        double sigma = eta > 0.0f ? eta * (nb / sb) * sqrt(1.0 - alpha[k] / alpha[k + 1]) : 0.0;
        double keep = sqrt(fmax(0.0, nb * nb - sigma * sigma)); /* the share of eps kept */
        plan->sigma[k] = (float)sigma;
        /* z' = na*(sa z - sb v) + keep*(sb z + sa v) (+ sigma xi) */
        plan->coef_z[k] = (float)(na * sa + keep * sb);
        plan->coef_v[k] = (float)(keep * sa - na * sb);
        /* the pinned frame: z' = na*c + keep*(sb z + sa v) (+ sigma xi) */
        plan->pin_c[k] = (float)na;
        plan->pin_z[k] = (float)(keep * sb);
        plan->pin_v[k] = (float)(keep * sa);
    }
    free(alpha);
    free(ab);
    return 0;
}

void vd_sampler_plan_free(vd_sampler_plan *plan)
{
    free(plan->timestep);
    free(plan->coef_z);
    free(plan->coef_v);
    free(plan->pin_c), free(plan->pin_z), free(plan->pin_v), free(plan->sigma);
    plan->steps = 0;
}

/* The stream of the fresh noise of step `step` of a video whose noise seed is seed. */
static uint64_t step_noise_stream(uint64_t seed, int step)
{
    return vd_rng_u64(seed, STEP_NOISE_STREAM + (uint64_t)step);
}

/* The input rows of one forward: each video's latent beside its condition, its timestep and a
 * text. The model's rows (guide_rows 0): each video's prompt, followed by its empty prompt when
 * guided; the guide's (guide_rows 1): the guide's encoding of the prompt, for the videos that
 * have one. */
static void fill_rows(vd_backend *be, const vd_latent_video *videos, int n, int guide_rows, float *x_in, float *ctx,
                     float *t, int lc, int S, int T, size_t row_in, size_t row_ctx)
{
    float *t_host = vd_malloc((size_t)2 * n * sizeof(float));
    int r = 0;
    for (int i = 0; i < n; i++) {
        const vd_latent_video *vv = &videos[i];
        const float *texts[2] = {guide_rows ? vv->ctx_guide : vv->ctx, guide_rows ? NULL : vv->ctx_uncond};
        for (int u = 0; u < 2; u++) {
            if (!texts[u]) continue;
            t_host[r] = vv->plan->timestep[vv->step];
            be->concat_channels(be, x_in + r * row_in, vv->z, lc, vv->cond, lc + 1, T, S);
            be->copy(be, ctx + r * row_ctx, texts[u], row_ctx * sizeof(float));
            r++;
        }
    }
    be->upload(be, t, t_host, (size_t)r * sizeof(float));
    free(t_host);
}

void vd_denoise_step(vd_model *m, vd_model *guide, vd_latent_video *videos, int n, int L, int T, int h, int w)
{
    vd_backend *be = m->be;
    int S = h * w, in_ch = m->cfg.unet.in_channels, lc = m->cfg.unet.out_channels, D = m->cfg.unet.context_dim;
    size_t video = (size_t)T * lc * S, row_in = (size_t)T * in_ch * S, row_ctx = (size_t)L * D;
    int R = 0, G = 0;
    for (int i = 0; i < n; i++) R += videos[i].ctx_uncond ? 2 : 1, G += guide && videos[i].ctx_guide ? 1 : 0;
    int rows = R > G ? R : G;
    float *x_in = vd_model_scratch(m, (size_t)rows * row_in), *v = vd_model_scratch(m, (size_t)R * video);
    float *ctx = vd_model_scratch(m, (size_t)rows * row_ctx), *t = vd_model_scratch(m, (size_t)rows);
    float *v_guide = G ? vd_model_scratch(m, (size_t)G * video) : NULL;
    if (G) {
        fill_rows(be, videos, n, 1, x_in, ctx, t, lc, S, T, row_in, row_ctx);
        vd_unet_forward_recorded(guide, x_in, t, ctx, L, G, T, h, w, v_guide);
    }
    fill_rows(be, videos, n, 0, x_in, ctx, t, lc, S, T, row_in, row_ctx);
    vd_unet_forward_recorded(m, x_in, t, ctx, L, R, T, h, w, v);
    for (int i = 0, r = 0, g = 0; i < n; i++) {
        vd_latent_video *vv = &videos[i];
        float *vr = v + r * video, *vg = NULL;
        if (guide && vv->ctx_guide) { /* vg = v_c - v_guide, before vr becomes the guided v */
            vg = v_guide + (size_t)g++ * video;
            be->axpby(be, vg, 1.0f, vr, -1.0f, video);
        }
        int rescale = vv->guidance_rescale > 0.0f && (vv->ctx_uncond || vg);
        double cond_ss = 0.0, guided_ss = 0.0;
        if (rescale) be->sum_squares(be, &cond_ss, vr, video);
        if (vv->ctx_uncond) /* v = v_u + g (v_c - v_u) */
            be->axpby(be, vr, 1.0f - vv->guidance, vr + video, vv->guidance, video);
        if (vg) be->axpby(be, vr, vv->guide_scale, vg, 1.0f, video);
        if (rescale) { /* scaled back toward v_c's size */
            be->sum_squares(be, &guided_ss, vr, video);
            float phi = vv->guidance_rescale;
            float scale = guided_ss > 0.0 ? phi * (float)sqrt(cond_ss / guided_ss) + 1.0f - phi : 1.0f;
            be->axpby(be, vr, 0.0f, vr, scale, video);
        }
        const vd_sampler_plan *pl = vv->plan;
        int k = vv->step;
        size_t first = vv->pin_first_frame ? (size_t)lc * S : 0; /* frame 0's values */
        if (first) {
            be->axpby(be, vv->z, pl->pin_v[k], vr, pl->pin_z[k], first);
            be->axpby(be, vv->z, pl->pin_c[k], vv->cond, 1.0f, first); /* cond's frame 0 starts with c */
        }
        be->axpby(be, vv->z + first, pl->coef_v[k], vr + first, pl->coef_z[k], video - first);
        if (pl->sigma[k] > 0.0f) /* DDIM's fresh noise, over every frame, drawn where z lives */
            be->add_random_normal(be, vv->z, pl->sigma[k], step_noise_stream(vv->noise_seed, k), video);
        vv->step++;
        r += vv->ctx_uncond ? 2 : 1;
    }
    /* given back in the reverse order of taking, so that the next step, taking the same sizes,
     * gets the same buffers: its forwards then replay the recordings of this one's */
    if (v_guide) vd_model_scratch_done(m, v_guide);
    vd_model_scratch_done(m, t), vd_model_scratch_done(m, ctx);
    vd_model_scratch_done(m, v), vd_model_scratch_done(m, x_in);
}

int vd_sample(vd_model *m, const vd_sampler_plan *plan, float *z, const float *cond, const float *ctx,
              int L, int N, int T, int h, int w, float guidance, float guidance_rescale, vd_model *guide,
              float guide_scale, uint64_t noise_seed, vd_progress_fn progress, void *user)
{
    int S = h * w, lc = m->cfg.unet.out_channels, guided = guidance > 1.0f;
    size_t row_ctx = (size_t)L * m->cfg.unet.context_dim;
    vd_latent_video *videos = vd_calloc((size_t)N, sizeof *videos);
    for (int i = 0; i < N; i++) {
        const float *c = cond + (size_t)i * T * (lc + 1) * S;
        float mask;
        m->be->download(m->be, &mask, c + (size_t)lc * S, sizeof mask); /* frame 0's mask channel */
        videos[i] = (vd_latent_video){.z = z + (size_t)i * T * lc * S, .cond = c, .ctx = ctx + i * row_ctx,
                                      .ctx_uncond = guided ? ctx + (N + i) * row_ctx : NULL,
                                      .ctx_guide = guide && guide_scale > 0.0f ? ctx + i * row_ctx : NULL,
                                      .plan = plan, .guidance = guidance, .guidance_rescale = guidance_rescale,
                                      .guide_scale = guide_scale,
                                      .pin_first_frame = mask == 1.0f, .noise_seed = noise_seed + (uint64_t)i};
    }
    int rc = 0;
    for (int k = 0; k < plan->steps && rc == 0; k++) {
        vd_denoise_step(m, guide, videos, N, L, T, h, w);
        if (progress && progress(user, k + 1, plan->steps)) rc = 1;
    }
    free(videos);
    return rc;
}
