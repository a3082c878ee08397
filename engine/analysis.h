/* analysis.h: VDMini's block-importance analysis. For every removable unit of the teacher's UNet
 * (vd_unet_removable_units: each ResBlock+attention pair, the mid block, the temporal layers of
 * each level, "temporal.l", and each block's attention part, "<block>.attn"), the teacher is pruned of that unit alone (prune.h), a fixed set
 * of world prompts is generated with it, and the evaluator scores the videos; a unit's importance
 * for content and for motion is how far the content and motion scores fall against the intact
 * teacher on the same prompts and seeds. Beside them: how far the direction rate (one of the
 * motion rates, the one a student loses first) falls, how much the frames change (mean squared
 * difference from the teacher's frames over their mean square: it ranks units even where the
 * scores cannot tell them apart), the unit's share of the UNet's parameters and of a UNet step's
 * matrix-product FLOPs, and its share of a denoiser step's latency (one minus the time of a step
 * without it over the teacher's, both measured on the same inputs, synchronised, in turns: see
 * analysis.c). The rows are called blocks below; a temporal or attention unit's row is one of
 * them. */
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
    const char *units; /* comma-separated unit names to analyse, in the UNet's order; NULL: all */
} vd_analysis_options;

typedef struct {
    char name[16];
    double content, motion, direction;               /* the teacher without this block: scores and
                                                        the direction rate (0 where none was judged) */
    double content_drop, motion_drop, direction_drop; /* the teacher's minus these */
    double output_change;             /* mean squared frame difference over the teacher's mean square */
    double param_share;               /* the block's parameters over the UNet's */
    double flop_share;                /* its matrix-product FLOPs over a UNet step's (counted) */
    double latency_share;             /* 1 - step time without the block / the teacher's (measured) */
} vd_block_importance;

typedef struct {
    int prompts, steps, levels; /* levels: the UNet's */
    double content, motion;     /* the intact teacher */
    double direction;           /* its direction rate */
    int has_direction;          /* 0 for a report from before the direction rate was recorded */
    double video_ms;        /* the teacher's fastest video: denoising steps and decode */
    int count;
    vd_block_importance blocks[VD_ANALYSIS_MAX_BLOCKS]; /* the blocks in the UNet's execution order,
                                                          * then temporal.0, temporal.1, ..., then
                                                          * the blocks' attention parts */
} vd_analysis;

/* Called before each model is run (done of total, starting with the intact teacher, what = the
 * block name or "teacher"); return non-zero to stop (the analysis then fails with "cancelled"). */
typedef int (*vd_analysis_progress_fn)(void *user, int done, int total, const char *what);

/* Runs the analysis of the teacher file (its autoencoder: the file's own, else ae_path, else
 * ae.safetensors beside it). Temporary student files go to tmp_dir. 0, or -1 with a message. */
int vd_analyze(const char *teacher_path, const char *ae_path, const char *tmp_dir, const vd_analysis_options *o,
               vd_analysis_progress_fn progress, void *user, vd_analysis *out, char *err, size_t errlen);

/* The analysis as a JSON object (malloc'd string): the options, the teacher's scores and one
 * entry per row (with its level: temporal.l's is l, mid's the deepest), and a verdict on the
 * paper's observation, over the block rows alone (see analysis.c). */
char *vd_analysis_json(const vd_analysis *a);

/* Reads a report written by vd_analysis_json back. 0, or -1 with a message. */
int vd_analysis_from_json(const char *text, vd_analysis *out, char *err, size_t errlen);

/* How a pruning plan picks rows (blocks, temporal and attention units) from an analysis (the
 * ablation compares them). A temporal unit temporal.l belongs to level l, like that level's blocks
 * and their attention parts (mid and mid.attn belong to the deepest level):
 *   SHALLOW, the paper's rule: never the deepest level's blocks nor their attention parts nor its
 *     temporal unit (motion); mid and mid.attn first, each when its importance (content drop +
 *     motion drop + direction drop; see analysis.c) is at most the median row's;
 *     then level 0, level 1, ... up to the one before the deepest, each level's blocks and
 *     temporal unit together, least important first (ties: least output change first);
 *   DEEP: the mirror, the deepest level and mid first, then shallower levels, least important
 *     first within a level;
 *   RANDOM: a seeded shuffle of all the rows;
 *   COST: every row of every level, the least importance per share of the target's measure
 *     first (a row whose share is not positive last: it brings the target no nearer). With the
 *     attention parts in the report this is how docs/vdmini.md's students D and E come out.
 * A temporal unit's layers live in its level's blocks, an equal part in each (every block of a
 * level has the same temporal layers; mid counts as one block of the deepest level): when a
 * plan takes a temporal unit and blocks of its level, the part those blocks hold counts once, and
 * a temporal unit whose level's blocks are all taken already is passed over. A block's attention
 * part goes with the block: one whose block is taken is passed over, and a block taken after it
 * replaces it in the plan, counted once. The temporal self-attention inside an attention part is
 * counted in both that part's and its level's temporal unit's share when a plan takes both (a
 * small part: `vdmini prune` prints the student's true parameters and FLOPs). */
typedef enum { VD_PLAN_SHALLOW, VD_PLAN_DEEP, VD_PLAN_RANDOM, VD_PLAN_COST } vd_plan_rule;

/* What a plan's target is a fraction of. */
typedef enum { VD_PLAN_PARAMS, VD_PLAN_FLOPS, VD_PLAN_LATENCY } vd_plan_measure;

/* Picks rows by rule until their summed share of the measure reaches target (in (0, 1)). names
 * gets the units to remove (VD_ANALYSIS_MAX_BLOCKS at most), *count their number. 0, or -1 with a
 * message when the rule's rows cannot reach the target. */
int vd_plan_make(const vd_analysis *a, vd_plan_rule rule, vd_plan_measure measure, double target, uint64_t seed,
                 char names[][16], int *count, char *err, size_t errlen);

#endif
