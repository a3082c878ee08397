/* evaluator.h: judges a video of the synthetic world against its ground truth (world.h).
 *
 * Each frame is segmented against the expected background: pixels far from it are foreground,
 * split into blobs by connected components and by the named colour of their inner pixels. Each
 * blob gets an area (anti-aliased coverage), a centroid, a size, a named colour, a shape class
 * (nearest prototype of the world's own shapes on a rotation-invariant radial profile) and an
 * edge width. Blobs are matched to the truth's objects by colour, shape, size and continuity.
 * Object tracks give the motion metrics. Counted object-frames are those where the truth shows
 * at least 90% of the object (97% for shape class and size).
 *
 * Content rates (per object-frame): object found; colour, shape class and size class correct;
 * edges sharp (coverage ramps at most 2.2 pixels wide per pixel of outline); and per frame the
 * background correct.
 * Motion rates: direction correct and speed within 30% of the truth (per object); smooth
 * (per object: median deviation of |acceleration| from the truth's below 1.2% of the frame
 * side); flicker free (per frame pair: background change and object colour change small);
 * identity kept (per frame pair and object: same colour, no jump); frame order plausible (per
 * frame triple and object: a frame is never farther from the next one than from the one after,
 * unless the truth's is too). Image-to-video adds the first frame's PSNR against the given image
 * and whether each object starts where the image shows it and then moves as prompted.
 * Every rate counts a missing object as a failure. */
#ifndef VD_EVALUATOR_H
#define VD_EVALUATOR_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "world.h"

typedef enum {
    VD_RATE_OBJECT_FOUND, VD_RATE_COLOUR, VD_RATE_SHAPE, VD_RATE_SIZE, VD_RATE_SHARPNESS, VD_RATE_BACKGROUND,
    VD_RATE_DIRECTION, VD_RATE_SPEED, VD_RATE_SMOOTHNESS, VD_RATE_NO_FLICKER, VD_RATE_IDENTITY, VD_RATE_FRAME_ORDER,
    VD_RATE_I2V_MOTION, VD_RATE_COUNT
} vd_rate;
#define VD_RATE_CONTENT_END VD_RATE_DIRECTION /* rates before it are content, then motion */
#define VD_RATE_MOTION_END VD_RATE_I2V_MOTION

/* Plain names: "object_found", "colour_correct", ... as in the JSON and the table. */
const char *vd_rate_name(vd_rate r);

#define VD_EVAL_FEATURES 32

/* In clips of two or three objects, how near the nearest other object is in a frame: the distance
 * between the centres over the sum of the radii; below 1 (the outlines overlap) close, below 1.5
 * near, else apart (about a third of the world's judged object-frames each). */
typedef enum { VD_GAP_CLOSE, VD_GAP_NEAR, VD_GAP_APART, VD_GAP_COUNT } vd_gap;
const char *vd_gap_name(vd_gap g);

/* One clip's counts; rates are hits / trials summed over a set. */
typedef struct {
    double hits[VD_RATE_COUNT], trials[VD_RATE_COUNT];
    double speed_error_sum; /* relative speed error, summed over judged objects */
    int speed_error_count;
    double edge_width_sum; /* pixels of coverage ramp per pixel of outline */
    int edge_width_count;
    double psnr; /* image-to-video: first frame against the given image, dB; NAN otherwise */
    float features[VD_EVAL_FEATURES]; /* for the Fréchet distance */
    /* the object-frames judged for shape: [true shape][judged shape, or VD_SHAPE_COUNT where no
     * blob was found or it was too small to tell] */
    double shape_judged[VD_SHAPE_COUNT][VD_SHAPE_COUNT + 1];
    double direction_by_motion[VD_MOTION_COUNT][2]; /* objects moving the prompted way, objects judged */
    /* the same object-frames, judged the right shape and judged, by the object's size, by the
     * clip's object count (index count - 1) and by the object's prompted motion */
    double shape_by_size[VD_SIZE_COUNT][2];
    double shape_by_objects[VD_WORLD_MAX_OBJECTS][2];
    double shape_by_motion[VD_MOTION_COUNT][2];
    double shape_by_gap[VD_GAP_COUNT][2]; /* clips of two or three objects, by the nearest other */
    /* In clips of two or three objects, the object-frames found in the right colour but judged
     * another shape: [0] all of them, [1] those judged the shape of another object of the clip
     * (the prompt's shapes bound to the wrong objects), [2] how many of [0] would be so by chance
     * if the error ignored the other objects (the world draws each object's shape uniformly and
     * independently: 1 - (1 - 1/shapes)^(others) each) */
    double shape_misbound[3];
} vd_eval_clip;

/* Judges frames (frames, 3, height, width) in [-1, 1], the engine's layout. image is the
 * image-to-video condition (3, height, width) in [-1, 1], or NULL for text-to-video. The
 * video must have the truth's frame count and size. Returns 0, or -1 with a message. */
int vd_eval_clip_frames(const vd_clip_truth *t, const float *frames, int count, int width, int height,
                        const float *image, vd_eval_clip *out, char *err, size_t errlen);
/* The same on 8-bit RGB frames (frames, height, width, 3), as an MP4 decodes. */
int vd_eval_clip_rgb8(const vd_clip_truth *t, const uint8_t *rgb, int count, int width, int height,
                      const float *image, vd_eval_clip *out, char *err, size_t errlen);

/* A set of judged clips. */
typedef struct vd_eval_set vd_eval_set;
vd_eval_set *vd_eval_set_new(void);
void vd_eval_set_add(vd_eval_set *s, const vd_eval_clip *c);
void vd_eval_set_free(vd_eval_set *s);

/* Fréchet distance between the Gaussians fitted to two sets' clip features (our FVD). */
double vd_eval_frechet(const vd_eval_set *a, const vd_eval_set *b);

typedef struct {
    int clips;
    double rate[VD_RATE_COUNT];     /* NAN where nothing was judged */
    /* each rate's standard error over the clips: a clip's object-frames (and objects) are judged
     * together, so the clip is the unit, sqrt(C / (C - 1) sum_c (hits_c - rate trials_c)^2) over
     * the summed trials for the C clips that judged it; NAN for fewer than two */
    double rate_se[VD_RATE_COUNT];
    double content_score;           /* mean of the content rates */
    double motion_score;            /* mean of the motion rates (image-to-video excluded) */
    double speed_error, edge_width; /* means */
    double psnr;                    /* mean first-frame PSNR; NAN for text-to-video */
    double frechet;                 /* against the reference set; NAN without one */
    double frechet_real;            /* the reference against another real set as large (the floor
                                       of this set size); NAN where none was made */
    double shape_confusion[VD_SHAPE_COUNT][VD_SHAPE_COUNT + 1]; /* vd_eval_clip's shape_judged, summed */
    double direction_by_motion[VD_MOTION_COUNT][2];             /* vd_eval_clip's, summed */
    double shape_by_size[VD_SIZE_COUNT][2];                     /* the same */
    double shape_by_objects[VD_WORLD_MAX_OBJECTS][2];
    double shape_by_motion[VD_MOTION_COUNT][2];
    double shape_by_gap[VD_GAP_COUNT][2];
    double shape_misbound[3];                                   /* vd_eval_clip's, summed */
} vd_eval_summary;

/* Aggregates a set; reference (may be NULL) is the real clips for the Fréchet distance. */
void vd_eval_summarize(const vd_eval_set *s, const vd_eval_set *reference, vd_eval_summary *out);
/* A Markdown table of the summary (each rate with its standard error), then, where objects were
 * judged, the shape confusion, the shape rate by size, object count, prompted motion and (in
 * clips of two or three objects) the nearest other object's gap, the wrong shapes of those clips
 * that were another object's, and the direction rate by prompted motion. */
void vd_eval_print_markdown(const vd_eval_summary *s, FILE *out);
/* The same figures as a JSON object under plain names (malloc'd string; NAN becomes null). */
char *vd_eval_summary_json(const vd_eval_summary *s);

#endif
