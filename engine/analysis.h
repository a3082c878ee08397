/* analysis.h: VDMini's block-importance analysis. For every block of the teacher's UNet (each
 * ResBlock+attention pair, and the mid block), the teacher is pruned of that block alone
 * (prune.h), a fixed set of world prompts is generated with it, and the evaluator scores the
 * videos; a block's importance for content and for motion is how far the content and motion
 * scores fall against the intact teacher on the same prompts and seeds. Beside them: how much the
 * frames change (mean squared difference from the teacher's frames over their mean square: it
 * ranks blocks even where the scores cannot tell them apart), the block's share of the UNet's
 * parameters and of a UNet step's matrix-product FLOPs, and its share of a video's latency (one minus the time of a video without it over
 * the teacher's, both measured: the fastest video of the set, which other work on the machine
 * disturbs least). */
#ifndef VD_ANALYSIS_H
#define VD_ANALYSIS_H

#include <stddef.h>
#include <stdint.h>

#include "vdmini.h"

#define VD_ANALYSIS_MAX_BLOCKS 64

typedef struct {
    int prompts, steps; /* world prompts 0..prompts-1 of seed; DDIM steps */
    uint64_t seed;
    float guidance;
    vd_device device;
    int bf16;
} vd_analysis_options;

typedef struct {
    char name[16];
    double content, motion;           /* scores of the teacher without this block */
    double content_drop, motion_drop; /* the teacher's scores minus these */
    double output_change;             /* mean squared frame difference over the teacher's mean square */
    double param_share;               /* the block's parameters over the UNet's */
    double flop_share;                /* its matrix-product FLOPs over a UNet step's (counted) */
    double latency_share;             /* 1 - video time without the block / the teacher's */
} vd_block_importance;

typedef struct {
    int prompts, steps, levels; /* levels: the UNet's */
    double content, motion;     /* the intact teacher */
    double video_ms;        /* the teacher's fastest video: denoising steps and decode */
    int count;
    vd_block_importance blocks[VD_ANALYSIS_MAX_BLOCKS]; /* in the UNet's execution order */
} vd_analysis;

/* Called before each model is run (done of total, starting with the intact teacher, what = the
 * block name or "teacher"); return non-zero to stop (the analysis then fails with "cancelled"). */
typedef int (*vd_analysis_progress_fn)(void *user, int done, int total, const char *what);

/* Runs the analysis of the teacher file (its autoencoder: the file's own, else ae_path, else
 * ae.safetensors beside it). Temporary student files go to tmp_dir. 0, or -1 with a message. */
int vd_analyze(const char *teacher_path, const char *ae_path, const char *tmp_dir, const vd_analysis_options *o,
               vd_analysis_progress_fn progress, void *user, vd_analysis *out, char *err, size_t errlen);

/* The analysis as a JSON object (malloc'd string): the options, the teacher's scores and one
 * entry per block, and a verdict on the paper's observation (see analysis.c). */
char *vd_analysis_json(const vd_analysis *a);

/* Reads a report written by vd_analysis_json back. 0, or -1 with a message. */
int vd_analysis_from_json(const char *text, vd_analysis *out, char *err, size_t errlen);

/* How a pruning plan picks blocks from an analysis (the ablation compares them):
 *   SHALLOW, the paper's rule: never the deepest level's blocks (motion); mid first when its
 *     importance (content drop + motion drop) is at most the median block's; then level 0, level
 *     1, ... up to the one before the deepest, each level's blocks least important first (ties:
 *     least output change first);
 *   DEEP: the mirror, the deepest level and mid first, then shallower levels, least important
 *     first within a level;
 *   RANDOM: a seeded shuffle of all the blocks. */
typedef enum { VD_PLAN_SHALLOW, VD_PLAN_DEEP, VD_PLAN_RANDOM } vd_plan_rule;

/* What a plan's target is a fraction of. */
typedef enum { VD_PLAN_PARAMS, VD_PLAN_FLOPS, VD_PLAN_LATENCY } vd_plan_measure;

/* Picks blocks by rule until their summed share of the measure reaches target (in (0, 1)). names
 * gets the blocks (VD_ANALYSIS_MAX_BLOCKS at most), *count their number. 0, or -1 with a message
 * when the rule's blocks cannot reach the target. */
int vd_plan_make(const vd_analysis *a, vd_plan_rule rule, vd_plan_measure measure, double target, uint64_t seed,
                 char names[][16], int *count, char *err, size_t errlen);

#endif
