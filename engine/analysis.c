/* analysis.c: the block-importance analysis (see analysis.h). */
#include "analysis.h"
#include "common.h"
#include "evaluator.h"
#include "flop_count.h"
#include "model.h"
#include "prune.h"
#include "rng.h"
#include "world.h"

#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    double content, motion, direction, video_ms, change;
} variant_result;

/* Generates the option's prompts with the model file and scores them. With reference NULL the
 * frames are kept in *keep (the teacher's run); else change is measured against reference. */
static int run_variant(const char *model_path, const char *ae_path, const vd_analysis_options *o,
                       const float *reference, float **keep, variant_result *res, char *err, size_t errlen)
{
    char eerr[VD_ERR_LEN];
    vd_engine *e = vd_engine_open(model_path, ae_path, o->device, o->bf16, eerr);
    if (!e) return vd_fail(err, errlen, "%s", eerr);
    vd_model_limits lim;
    vd_engine_limits(e, &lim);
    int side = lim.image_size, frames = lim.default_frames, rc = 0;
    size_t clip_floats = (size_t)frames * 3 * side * side;
    float *video = vd_malloc(clip_floats * sizeof(float));
    if (keep) *keep = vd_malloc((size_t)o->prompts * clip_floats * sizeof(float));
    vd_clip_truth *truth = vd_malloc(sizeof *truth);
    vd_eval_set *set = vd_eval_set_new();
    double diff = 0, power = 0, time_ms = INFINITY;
    { /* one untimed one-step video first: buffers, weight copies and thread pools warm up */
        vd_world_sample(o->seed, 0, side, side, frames, truth);
        vd_gen_params warm = {.prompt = truth->prompt, .frames = frames, .width = side, .height = side, .steps = 1,
                              .guidance = o->guidance, .sampler = VD_SAMPLER_DDIM, .seed = o->seed};
        if (vd_generate(e, &warm, video, NULL, NULL, eerr)) rc = vd_fail(err, errlen, "%s", eerr);
    }
    for (int i = 0; i < o->prompts && rc == 0; i++) {
        vd_world_sample(o->seed, (uint64_t)i, side, side, frames, truth);
        vd_gen_params p = {.prompt = truth->prompt, .frames = frames, .width = side, .height = side,
                           .steps = o->steps, .guidance = o->guidance, .sampler = VD_SAMPLER_DDIM,
                           .seed = o->seed + (uint64_t)i};
        double start = vd_now();
        vd_video *v = vd_video_begin(e, &p, eerr);
        if (!v) {
            rc = vd_fail(err, errlen, "prompt %d: %s", i, eerr);
            break;
        }
        while (vd_video_step_index(v) < vd_video_steps(v)) vd_step(e, &v, 1);
        vd_video_decode(e, v, video); /* waits for the device */
        vd_video_free(e, v);
        time_ms = fmin(time_ms, (vd_now() - start) * 1000.0);
        vd_eval_clip clip;
        if (vd_eval_clip_frames(truth, video, frames, side, side, NULL, &clip, err, errlen)) {
            rc = -1;
            break;
        }
        vd_eval_set_add(set, &clip);
        if (keep) memcpy(*keep + (size_t)i * clip_floats, video, clip_floats * sizeof(float));
        for (size_t k = 0; reference && k < clip_floats; k++) {
            double ref = reference[(size_t)i * clip_floats + k], d = video[k] - ref;
            diff += d * d, power += ref * ref;
        }
    }
    if (rc == 0) {
        vd_eval_summary s;
        vd_eval_summarize(set, NULL, &s);
        res->content = isnan(s.content_score) ? 0 : s.content_score;
        res->motion = isnan(s.motion_score) ? 0 : s.motion_score;
        res->direction = isnan(s.rate[VD_RATE_DIRECTION]) ? 0 : s.rate[VD_RATE_DIRECTION];
        res->video_ms = time_ms;
        res->change = power > 0 ? diff / power : 0;
    }
    vd_eval_set_free(set);
    free(truth);
    free(video);
    vd_engine_close(e);
    return rc;
}

/* Step latency: the teacher's and a student's UNet step on the same random inputs (one video with
 * guidance: 2 rows), every step synchronised, timed in turns over LATENCY_ROUNDS rounds of
 * LATENCY_STEPS steps each; the fastest step of each model counts. Taking turns makes drift over
 * the run (clocks, other work on the machine) hit both alike. */
#define LATENCY_ROUNDS 3
#define LATENCY_STEPS 3

typedef struct {
    vd_backend *be;
    float *x, *t, *ctx, *out;
    int L, T, h, w;
} step_timer;

static int step_timer_open(step_timer *st, const vd_model_config *cfg, const vd_analysis_options *o, char *err,
                           size_t errlen)
{
    char berr[VD_ERR_LEN];
    memset(st, 0, sizeof *st);
    if (!(st->be = vd_open_backend(o->device, o->bf16, berr))) return vd_fail(err, errlen, "%s", berr);
    const vd_unet_config *u = &cfg->unet;
    st->L = cfg->text.max_tokens, st->T = u->frames, st->h = u->latent_h, st->w = u->latent_w;
    size_t plane = (size_t)st->T * st->h * st->w;
    st->x = vd_backend_random_normal(st->be, 2 * plane * u->in_channels, 1, 1.0f);
    st->ctx = vd_backend_random_normal(st->be, (size_t)2 * st->L * u->context_dim, 2, 1.0f);
    float t_host[2] = {500, 500};
    st->t = st->be->alloc(st->be, sizeof t_host);
    st->be->upload(st->be, st->t, t_host, sizeof t_host);
    st->out = st->be->alloc(st->be, 2 * plane * u->out_channels * sizeof(float));
    return 0;
}

static void step_timer_close(step_timer *st)
{
    if (!st->be) return;
    st->be->release(st->be, st->x), st->be->release(st->be, st->ctx);
    st->be->release(st->be, st->t), st->be->release(st->be, st->out);
    st->be->destroy(st->be);
    st->be = NULL;
}

/* The fastest of n synchronised steps of m (attached to st->be), in ms. */
static double fastest_step_ms(vd_model *m, step_timer *st, int n)
{
    double best = INFINITY;
    for (int i = 0; i < n; i++) {
        double start = vd_now();
        vd_unet_forward(m, st->x, st->t, st->ctx, st->L, 2, st->T, st->h, st->w, st->out);
        st->be->synchronize(st->be);
        best = fmin(best, (vd_now() - start) * 1000.0);
    }
    return best;
}

/* One minus the student's step time over the teacher's (both attached to st->be). */
static double measured_latency_share(vd_model *teacher, vd_model *student, step_timer *st)
{
    fastest_step_ms(student, st, 1); /* untimed: its scratch buffers and kernels warm up */
    double teacher_ms = INFINITY, student_ms = INFINITY;
    for (int r = 0; r < LATENCY_ROUNDS; r++) {
        teacher_ms = fmin(teacher_ms, fastest_step_ms(teacher, st, LATENCY_STEPS));
        student_ms = fmin(student_ms, fastest_step_ms(student, st, LATENCY_STEPS));
    }
    return 1.0 - student_ms / teacher_ms;
}

static int is_temporal_unit(const char *name) { return strncmp(name, "temporal.", 9) == 0; }

/* A unit's parameters: a block's (or a block's attention part's) are those under its name; a
 * temporal unit's are spread over its level's blocks, and are what the student without it lacks
 * (removing one changes no other shape). */
static double unit_params(const vd_model *teacher, const vd_model *student, const char *name)
{
    if (is_temporal_unit(name))
        return (double)vd_model_count_params(teacher, "unet.") - (double)vd_model_count_params(student, "unet.");
    char prefix[32];
    snprintf(prefix, sizeof prefix, "unet.%s.", name);
    return (double)vd_model_count_params(teacher, prefix);
}

/* Keeps those of the count units in names that the comma-separated list names, in their order;
 * every listed name must be one of them. */
static int select_units(const char *list, char names[][16], int *count, char *err, size_t errlen)
{
    int keep[VD_ANALYSIS_MAX_BLOCKS] = {0};
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        int found = 0;
        for (int b = 0; b < *count; b++)
            if (strlen(names[b]) == len && strncmp(names[b], p, len) == 0) keep[b] = found = 1;
        if (!found) return vd_fail(err, errlen, "unit \"%.*s\": not a unit the teacher's UNet can remove", (int)len, p);
        p += len + (p[len] == ',');
    }
    int n = 0;
    for (int b = 0; b < *count; b++)
        if (keep[b]) memmove(names[n++], names[b], sizeof names[0]);
    if (n == 0) return vd_fail(err, errlen, "units: empty list");
    *count = n;
    return 0;
}

int vd_analyze(const char *teacher_path, const char *ae_path, const char *tmp_dir, const vd_analysis_options *o,
               vd_analysis_progress_fn progress, void *user, vd_analysis *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (o->prompts < 1 || o->steps < 1) return vd_fail(err, errlen, "prompts and steps must be at least 1");
    vd_model teacher;
    if (vd_model_load(&teacher, teacher_path, err, errlen)) return -1;
    char ae_beside[4096];
    if (!ae_path && !teacher.cfg.ae.present) { /* the students live elsewhere: name the teacher's */
        char *copy = strdup(teacher_path);
        snprintf(ae_beside, sizeof ae_beside, "%s/ae.safetensors", dirname(copy));
        free(copy);
        ae_path = ae_beside;
    }
    char names[VD_ANALYSIS_MAX_BLOCKS][16];
    out->count = vd_unet_removable_units(&teacher.cfg.unet, names, VD_ANALYSIS_MAX_BLOCKS);
    if (o->units && select_units(o->units, names, &out->count, err, errlen)) {
        vd_model_free(&teacher);
        return -1;
    }
    out->prompts = o->prompts, out->steps = o->steps, out->levels = teacher.cfg.unet.levels;
    double unet_params = (double)vd_model_count_params(&teacher, "unet.");
    double unet_flops = vd_unet_step_flops(&teacher.cfg, 1);
    float *reference = NULL;
    variant_result base = {0};
    int rc = 0;
    if (progress && progress(user, 0, out->count + 1, "teacher")) rc = vd_fail(err, errlen, "cancelled");
    if (rc == 0) rc = run_variant(teacher_path, ae_path, o, NULL, &reference, &base, err, errlen);
    out->content = base.content, out->motion = base.motion, out->video_ms = base.video_ms;
    out->direction = base.direction, out->has_direction = 1;
    step_timer timer = {0};
    if (rc == 0) rc = step_timer_open(&timer, &teacher.cfg, o, err, errlen);
    if (rc == 0) { /* pruning reads the host weights, which attaching keeps */
        vd_model_attach(&teacher, timer.be);
        fastest_step_ms(&teacher, &timer, 1);
    }
    char student_path[4096];
    snprintf(student_path, sizeof student_path, "%s/vdmini-analysis-%ld.safetensors", tmp_dir, (long)getpid());
    for (int b = 0; b < out->count && rc == 0; b++) {
        vd_block_importance *bi = &out->blocks[b];
        snprintf(bi->name, sizeof bi->name, "%s", names[b]);
        if (progress && progress(user, b + 1, out->count + 1, bi->name)) {
            rc = vd_fail(err, errlen, "cancelled");
            break;
        }
        char *remove[] = {bi->name};
        vd_model student;
        vd_prune_report report;
        rc = vd_prune(&teacher, remove, 1, 0, &student, &report, err, errlen);
        if (rc == 0) {
            bi->param_share = unit_params(&teacher, &student, bi->name) / unet_params;
            bi->flop_share = unet_flops > 0 ? 1.0 - vd_unet_step_flops(&student.cfg, 1) / unet_flops : 0;
            rc = vd_model_save(&student, student_path, VD_ST_F32, err, errlen);
            if (rc == 0) {
                vd_model_attach(&student, timer.be);
                bi->latency_share = measured_latency_share(&teacher, &student, &timer);
            }
            vd_model_free(&student);
        }
        variant_result r;
        if (rc == 0) rc = run_variant(student_path, ae_path, o, reference, NULL, &r, err, errlen);
        if (rc == 0) {
            bi->content = r.content, bi->motion = r.motion, bi->direction = r.direction;
            bi->content_drop = base.content - r.content, bi->motion_drop = base.motion - r.motion;
            bi->direction_drop = base.direction - r.direction;
            bi->output_change = r.change;
        }
    }
    vd_model_detach(&teacher); /* before its backend goes */
    step_timer_close(&timer);
    unlink(student_path);
    free(reference);
    vd_model_free(&teacher);
    return rc;
}

/* The level a unit belongs to: down.L.b, up.L.b, their attention parts and temporal.L to L, mid
 * and mid.attn to the deepest. */
static int block_level(const char *name, int levels)
{
    int l = levels - 1;
    if (sscanf(name, "down.%d.", &l) != 1 && sscanf(name, "up.%d.", &l) != 1) sscanf(name, "temporal.%d", &l);
    return l;
}

char *vd_analysis_json(const vd_analysis *a)
{
    int levels = a->levels;
    json_t *blocks = json_array();
    /* The paper's observation, in our terms: removing a shallow block (level 0, the finest)
     * costs more content than removing a deep one (the coarsest level and mid), and removing a
     * deep one costs more motion. It is about blocks: the temporal units are reported beside
     * them but left out of it. */
    double sum[2][3] = {{0, 0, 0}, {0, 0, 0}};
    int n[2] = {0, 0};
    for (int b = 0; b < a->count; b++) {
        const vd_block_importance *bi = &a->blocks[b];
        int level = block_level(bi->name, levels);
        json_t *row = json_pack("{s:s, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "block", bi->name, "level",
                                level, "content", bi->content, "motion", bi->motion, "content_drop",
                                bi->content_drop, "motion_drop", bi->motion_drop, "output_change",
                                bi->output_change, "param_share", bi->param_share, "flop_share", bi->flop_share,
                                "latency_share", bi->latency_share);
        if (a->has_direction) {
            json_object_set_new(row, "direction", json_real(bi->direction));
            json_object_set_new(row, "direction_drop", json_real(bi->direction_drop));
        }
        json_array_append_new(blocks, row);
        int group = level == 0 ? 0 : level == levels - 1 ? 1 : -1;
        if (group < 0 || !vd_unet_unit_is_block(bi->name)) continue;
        sum[group][0] += bi->content_drop, sum[group][1] += bi->motion_drop, sum[group][2] += bi->direction_drop;
        n[group]++;
    }
    double shallow_content = n[0] ? sum[0][0] / n[0] : 0, shallow_motion = n[0] ? sum[0][1] / n[0] : 0;
    double deep_content = n[1] ? sum[1][0] / n[1] : 0, deep_motion = n[1] ? sum[1][1] / n[1] : 0;
    int holds = n[0] && n[1] && shallow_content > deep_content && deep_motion > shallow_motion;
    json_t *root = json_pack("{s:i, s:i, s:i, s:{s:f, s:f, s:f}, s:o, s:{s:f, s:f, s:f, s:f, s:b}}", "prompts",
                             a->prompts, "steps", a->steps, "levels", levels, "teacher", "content", a->content, "motion", a->motion, "video_ms",
                             a->video_ms, "blocks", blocks, "observation", "shallow_content_drop", shallow_content,
                             "shallow_motion_drop", shallow_motion, "deep_content_drop", deep_content,
                             "deep_motion_drop", deep_motion, "holds", holds);
    if (a->has_direction) {
        json_t *observation = json_object_get(root, "observation");
        json_object_set_new(json_object_get(root, "teacher"), "direction", json_real(a->direction));
        json_object_set_new(observation, "shallow_direction_drop", json_real(n[0] ? sum[0][2] / n[0] : 0));
        json_object_set_new(observation, "deep_direction_drop", json_real(n[1] ? sum[1][2] / n[1] : 0));
    }
    char *text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    return text;
}

static int get_number(json_t *obj, const char *key, double *out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_number(v)) return -1;
    *out = json_number_value(v);
    return 0;
}

int vd_analysis_from_json(const char *text, vd_analysis *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    if (!root) return vd_fail(err, errlen, "analysis: line %d: %s", jerr.line, jerr.text);
    json_t *teacher = json_object_get(root, "teacher"), *blocks = json_object_get(root, "blocks");
    int rc = 0;
    if (!json_is_integer(json_object_get(root, "prompts")) || !json_is_integer(json_object_get(root, "steps")) ||
        !json_is_integer(json_object_get(root, "levels")) || !json_is_object(teacher) || !json_is_array(blocks) ||
        json_array_size(blocks) == 0 || json_array_size(blocks) > VD_ANALYSIS_MAX_BLOCKS ||
        get_number(teacher, "content", &out->content) || get_number(teacher, "motion", &out->motion) ||
        get_number(teacher, "video_ms", &out->video_ms)) {
        rc = vd_fail(err, errlen, "analysis: not a vdmini analysis report");
    } else {
        out->prompts = (int)json_integer_value(json_object_get(root, "prompts"));
        out->steps = (int)json_integer_value(json_object_get(root, "steps"));
        out->levels = (int)json_integer_value(json_object_get(root, "levels"));
        out->count = (int)json_array_size(blocks);
        out->has_direction = get_number(teacher, "direction", &out->direction) == 0;
        if (out->levels < 1 || out->levels > VD_MAX_LEVELS) rc = vd_fail(err, errlen, "analysis: levels: out of range");
    }
    for (int b = 0; rc == 0 && b < out->count; b++) {
        json_t *e = json_array_get(blocks, (size_t)b);
        vd_block_importance *bi = &out->blocks[b];
        const char *name = json_string_value(json_object_get(e, "block"));
        int level = name ? block_level(name, out->levels) : -1;
        if (!name || strlen(name) >= sizeof bi->name || level < 0 || level >= out->levels ||
            get_number(e, "content", &bi->content) || get_number(e, "motion", &bi->motion) || get_number(e, "content_drop", &bi->content_drop) ||
            get_number(e, "motion_drop", &bi->motion_drop) || get_number(e, "output_change", &bi->output_change) ||
            get_number(e, "param_share", &bi->param_share) || get_number(e, "flop_share", &bi->flop_share) ||
            get_number(e, "latency_share", &bi->latency_share) ||
            (out->has_direction &&
             (get_number(e, "direction", &bi->direction) || get_number(e, "direction_drop", &bi->direction_drop))))
            rc = vd_fail(err, errlen, "analysis: blocks[%d]: incomplete", b);
        else
            snprintf(bi->name, sizeof bi->name, "%s", name);
    }
    json_decref(root);
    return rc;
}

/* How much a row matters to a plan: its content and motion drops, and its direction drop again on
 * top of the motion score that already counts it (0 in reports without it): in docs/vdmini.md
 * the heading is what a pruned student loses first. */
static double importance(const vd_block_importance *b) { return b->content_drop + b->motion_drop + b->direction_drop; }

static double plan_share(const vd_block_importance *b, vd_plan_measure measure)
{
    return measure == VD_PLAN_LATENCY ? b->latency_share : measure == VD_PLAN_FLOPS ? b->flop_share : b->param_share;
}

/* The part of a level's temporal unit that `blocks` of its `level_blocks` blocks hold. */
static double temporal_part(int blocks, int level_blocks) { return level_blocks ? (double)blocks / level_blocks : 0; }

static int compare_doubles(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

typedef struct {
    int block;
    double key[3]; /* ordered by key[0], then key[1], then key[2] */
} plan_candidate;

static int compare_candidates(const void *x, const void *y)
{
    const plan_candidate *a = x, *b = y;
    for (int k = 0; k < 3; k++)
        if (a->key[k] != b->key[k]) return a->key[k] < b->key[k] ? -1 : 1;
    return a->block - b->block;
}

int vd_plan_make(const vd_analysis *a, vd_plan_rule rule, vd_plan_measure measure, double target, uint64_t seed,
                 char names[][16], int *count, char *err, size_t errlen)
{
    *count = 0;
    if (!(target > 0 && target < 1)) return vd_fail(err, errlen, "target %g: must be a fraction in (0, 1)", target);
    if (a->levels < 1 || a->levels > VD_MAX_LEVELS) return vd_fail(err, errlen, "analysis: levels: out of range");
    for (int b = 0; b < a->count; b++) {
        int level = block_level(a->blocks[b].name, a->levels);
        if (level < 0 || level >= a->levels)
            return vd_fail(err, errlen, "analysis: \"%s\": no level of the UNet", a->blocks[b].name);
    }
    double scores[VD_ANALYSIS_MAX_BLOCKS];
    for (int b = 0; b < a->count; b++) scores[b] = importance(&a->blocks[b]);
    qsort(scores, (size_t)a->count, sizeof *scores, compare_doubles);
    double median = scores[a->count / 2];
    plan_candidate cand[VD_ANALYSIS_MAX_BLOCKS];
    int n = 0, deepest = a->levels - 1;
    for (int b = 0; b < a->count; b++) {
        const vd_block_importance *bi = &a->blocks[b];
        int level = block_level(bi->name, a->levels);
        int mid = strcmp(bi->name, "mid") == 0 || strcmp(bi->name, "mid.attn") == 0;
        plan_candidate c = {.block = b, .key = {0, importance(bi), bi->output_change}};
        if (rule == VD_PLAN_SHALLOW) {
            if (mid && importance(bi) > median) continue;
            if (!mid && level == deepest) continue;
            c.key[0] = mid ? -1 : level;
        } else if (rule == VD_PLAN_DEEP) {
            c.key[0] = mid ? -1 : deepest - level;
        } else if (rule == VD_PLAN_COST) {
            double share = plan_share(bi, measure);
            c.key[0] = share > 0 ? importance(bi) / share : HUGE_VAL;
        } else {
            c.key[0] = vd_rng_uniform(seed, (uint64_t)b); /* a seeded shuffle */
        }
        cand[n++] = c;
    }
    qsort(cand, (size_t)n, sizeof *cand, compare_candidates);
    /* A temporal unit's layers sit in its level's blocks, an equal part in each: a block taken
     * with it takes its part too, which is counted once. A block's attention part goes with the
     * block: an attention unit whose block is taken is passed over, and a block taken after its
     * attention unit replaces it in the plan, its share counted once. */
    int level_blocks[VD_MAX_LEVELS] = {0}, taken_blocks[VD_MAX_LEVELS] = {0}, temporal_taken[VD_MAX_LEVELS];
    for (int l = 0; l < VD_MAX_LEVELS; l++) temporal_taken[l] = -1;
    for (int b = 0; b < a->count; b++)
        if (vd_unet_unit_is_block(a->blocks[b].name)) level_blocks[block_level(a->blocks[b].name, a->levels)]++;
    double removed = 0;
    for (int i = 0; i < n && removed < target; i++) {
        const vd_block_importance *bi = &a->blocks[cand[i].block];
        int level = block_level(bi->name, a->levels);
        double share = plan_share(bi, measure);
        if (is_temporal_unit(bi->name)) {
            if (level_blocks[level] && taken_blocks[level] == level_blocks[level]) continue; /* gone with them */
            removed += share * (1.0 - temporal_part(taken_blocks[level], level_blocks[level]));
            temporal_taken[level] = cand[i].block;
        } else if (!vd_unet_unit_is_block(bi->name)) { /* "<block>.attn" */
            int gone = 0;
            for (int k = 0; k < *count; k++) gone |= vd_unet_is_attention_of(bi->name, names[k]);
            if (gone) continue;
            removed += share;
        } else {
            taken_blocks[level]++;
            removed += share;
            if (temporal_taken[level] >= 0)
                removed -= plan_share(&a->blocks[temporal_taken[level]], measure) * temporal_part(1, level_blocks[level]);
            for (int k = 0; k < *count; k++) {
                if (!vd_unet_is_attention_of(names[k], bi->name)) continue;
                for (int b = 0; b < a->count; b++)
                    if (strcmp(a->blocks[b].name, names[k]) == 0) removed -= plan_share(&a->blocks[b], measure);
                memmove(names[k], names[k + 1], (size_t)(*count - k - 1) * sizeof names[0]);
                (*count)--;
                break;
            }
        }
        snprintf(names[(*count)++], 16, "%s", bi->name);
    }
    if (removed < target)
        return vd_fail(err, errlen, "the rule's blocks remove %.1f%% of the %s, short of the %.1f%% asked", 100 * removed,
                       measure == VD_PLAN_LATENCY ? "latency" : measure == VD_PLAN_FLOPS ? "FLOPs" : "parameters",
                       100 * target);
    return 0;
}
