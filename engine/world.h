/* world.h: the synthetic world the model is trained on and judged against. From a seed it draws
 * short clips of one to three simple objects (shape, named colour, size, motion) over a named
 * background, anti-aliased, with each clip's ground truth (every object's track, frame by frame)
 * and an English prompt with paraphrases. The words those prompts use are the tokenizer's
 * vocabulary. A loader renders clips on worker threads for training.
 *
 * Coordinates are pixels, x to the right and y down, with pixel (i, j) centred on (i + 0.5,
 * j + 0.5). An object's size is the radius of the circle with its area, so every shape of one
 * size class covers the same area. Frames are the engine's layout: (frames, 3, height, width)
 * floats in [-1, 1]. */
#ifndef VD_WORLD_H
#define VD_WORLD_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    VD_SHAPE_CIRCLE, VD_SHAPE_SQUARE, VD_SHAPE_TRIANGLE, VD_SHAPE_STAR, VD_SHAPE_RING, VD_SHAPE_CROSS,
    VD_SHAPE_COUNT
} vd_shape;

typedef enum {
    VD_COLOUR_RED, VD_COLOUR_GREEN, VD_COLOUR_BLUE, VD_COLOUR_YELLOW, VD_COLOUR_ORANGE, VD_COLOUR_PURPLE,
    VD_COLOUR_PINK, VD_COLOUR_CYAN, VD_COLOUR_WHITE, VD_COLOUR_BLACK, VD_COLOUR_COUNT
} vd_colour;

typedef enum { VD_SIZE_SMALL, VD_SIZE_MEDIUM, VD_SIZE_LARGE, VD_SIZE_COUNT } vd_size;

typedef enum {
    VD_MOTION_LEFT, VD_MOTION_RIGHT, VD_MOTION_UP, VD_MOTION_DOWN, VD_MOTION_UP_LEFT, VD_MOTION_UP_RIGHT,
    VD_MOTION_DOWN_LEFT, VD_MOTION_DOWN_RIGHT, VD_MOTION_BOUNCE, VD_MOTION_GROW, VD_MOTION_SHRINK,
    VD_MOTION_ROTATE, VD_MOTION_ORBIT, VD_MOTION_STAY, VD_MOTION_COUNT
} vd_motion;

typedef enum {
    VD_BACKGROUND_BLACK, VD_BACKGROUND_WHITE, VD_BACKGROUND_GRAY, VD_BACKGROUND_BLUE, VD_BACKGROUND_GREEN,
    VD_BACKGROUND_GRADIENT, VD_BACKGROUND_STRIPED, VD_BACKGROUND_CHECKERED, VD_BACKGROUND_COUNT
} vd_background;

#define VD_WORLD_MAX_OBJECTS 3
#define VD_WORLD_MAX_FRAMES 256
#define VD_WORLD_MAX_SIDE 1024
#define VD_WORLD_PROMPT_LEN 192
/* Every prompt the world writes has at most this many words (the tiny model's max_tokens). */
#define VD_WORLD_MAX_WORDS 16

/* The world's fixed kinematics, per frame, as fractions of the shorter side of the frame. */
#define VD_WORLD_SPEED 0.025      /* straight-line motions */
#define VD_WORLD_ORBIT_RADIUS 0.2 /* orbit: radius; angular speed 2*pi/24 per frame, anticlockwise */
#define VD_WORLD_ORBIT_RATE (6.283185307179586 / 24.0)
#define VD_WORLD_BOUNCE_HEIGHT 0.3 /* bounce: height of each hop; one hop per 12 frames */
#define VD_WORLD_BOUNCE_PERIOD 12.0
#define VD_WORLD_GROWTH_RATE 0.03 /* grow and shrink: log-size change per frame */
#define VD_WORLD_SPIN_RATE 0.09   /* rotate: radians per frame, clockwise on screen */

/* One object's state in one frame. */
typedef struct {
    float x, y;    /* centre, pixels */
    float scale;   /* size multiplier (grow, shrink); the radius is size_radius * scale */
    float angle;   /* radians, clockwise on screen */
    float visible; /* fraction of the object's area that is in the frame and not covered */
} vd_track_point;

typedef struct {
    vd_shape shape;
    vd_colour colour;
    vd_size size;
    vd_motion motion;
    float start_x, start_y; /* centre in frame 0 (orbit: the orbit's centre), fractions of width, height */
    float angle0;           /* orientation in frame 0, radians */
    float phase;            /* bounce and orbit: where in the cycle frame 0 falls, in [0, 1) */
    vd_track_point track[VD_WORLD_MAX_FRAMES];
} vd_world_object;

/* A clip's ground truth: everything needed to render it again and to judge a video of it. */
typedef struct {
    uint64_t seed, index; /* the clip is draw number `index` of the world with `seed` */
    int width, height, frames;
    vd_background background;
    int object_count; /* objects are drawn in order: later ones cover earlier ones */
    vd_world_object objects[VD_WORLD_MAX_OBJECTS];
    char prompt[VD_WORLD_PROMPT_LEN];
} vd_clip_truth;

/* Names as they appear in prompts and in the ground truth's JSON. */
const char *vd_shape_name(vd_shape s);
const char *vd_colour_name(vd_colour c);
const char *vd_size_name(vd_size s);
const char *vd_motion_name(vd_motion m);
const char *vd_background_name(vd_background b);
void vd_colour_rgb(vd_colour c, float rgb[3]); /* in [0, 1] */
/* Radius (pixels) of a size class in a frame whose shorter side is `side` pixels. */
float vd_size_radius(vd_size s, int side);
/* Whether an object of colour c is ever drawn on background b (it must stand out clearly). */
int vd_world_colour_allowed(vd_colour c, vd_background b);
/* Whether motion m is ever given to shape s (a turning circle or ring shows nothing). */
int vd_world_motion_allowed(vd_motion m, vd_shape s);

/* Draws clip number `index` of the world with `seed`: background, objects, tracks, visibility
 * and prompt. width and height are in [8, VD_WORLD_MAX_SIDE], frames in [1, VD_WORLD_MAX_FRAMES]. */
void vd_world_sample(uint64_t seed, uint64_t index, int width, int height, int frames, vd_clip_truth *t);
/* The same with other odds of one, two and three objects (count_odds[k] for k + 1 objects, each
 * >= 0, summing to more than 0); NULL is the world's own, 0.40, 0.35 and 0.25, with which it
 * draws exactly vd_world_sample's clip. Every other draw of the clip stays as it would be. */
void vd_world_sample_odds(uint64_t seed, uint64_t index, int width, int height, int frames,
                          const float *count_odds, vd_clip_truth *t);

/* Recomputes every object's track (positions, scale, angle and visibility) from the description
 * fields; vd_world_sample and the JSON reader call it. */
void vd_world_compute_tracks(vd_clip_truth *t);

/* Renders the clip into frames (frames, 3, height, width) in [-1, 1]. */
void vd_world_render(const vd_clip_truth *t, float *frames);

/* The background alone, (height, width, 3) in [0, 1]. */
void vd_world_render_background(vd_background b, int width, int height, float *rgb);

/* Coverage in [0, 1] of pixel centre (px, py) by a shape of radius r (pixels) centred on
 * (cx, cy) and turned by angle: the anti-aliasing the renderer uses. */
float vd_world_shape_coverage(vd_shape s, float px, float py, float cx, float cy, float r, float angle);

/* Paraphrase number `variant` of the clip's prompt (variant 0 is t->prompt). Every paraphrase
 * names every object's size (no size word means medium), colour, shape and motion and the
 * background, in at most VD_WORLD_MAX_WORDS words of the vocabulary. */
void vd_world_prompt(const vd_clip_truth *t, uint64_t variant, char *buf, size_t len);

/* The vocabulary: every word any prompt can use, after "<pad>" and "<unk>". Static storage. */
const char *const *vd_world_vocabulary(int *count);

/* Ground truth as one line of JSON (no newline), malloc'd. video and image name the clip's
 * files and may be NULL. */
char *vd_world_truth_to_json(const vd_clip_truth *t, const char *video, const char *image);
/* Reads a line written by vd_world_truth_to_json; the tracks are recomputed from the description.
 * video receives the "video" field (may be NULL). Returns 0, or -1 with a message. */
int vd_world_truth_from_json(const char *json, vd_clip_truth *t, char *video, size_t video_len, char *err,
                             size_t errlen);

/* ---- the training loader: clips rendered ahead on worker threads ----
 * Clip k handed out is vd_world_sample(seed, k, ...), in order, whatever the number of threads,
 * so a seed gives the same stream of clips on every machine. */
typedef struct vd_loader vd_loader;

/* threads >= 1 workers keep up to depth >= 1 clips rendered ahead. NULL for bad arguments. */
vd_loader *vd_loader_new(uint64_t seed, int width, int height, int frames, int threads, int depth);
/* Same, handing out runs of `group` consecutive clips that start `stride` clips apart: first,
 * first + 1, ..., first + group - 1, then first + stride, ... (a resumed training run picks up
 * where it was; one of several replicas of a run takes every replicas-th micro-batch).
 * group >= 1, stride >= group; group = stride hands out first, first + 1, ... Each clip is drawn
 * with vd_world_sample_odds's count_odds (copied; NULL: the world's own odds). */
vd_loader *vd_loader_new_strided(uint64_t seed, uint64_t first, int group, int stride, int width, int height,
                                 int frames, int threads, int depth, const float *count_odds);
/* Blocks until the next clip is ready and lends its frames (frames, 3, height, width) where a
 * worker rendered them, with its ground truth copied when truth is not NULL. The frames stay
 * valid until vd_loader_give_back, which must come before the next clip is borrowed. */
const float *vd_loader_borrow(vd_loader *l, vd_clip_truth *truth);
void vd_loader_give_back(vd_loader *l);
/* vd_loader_borrow with the frames copied to frames, then vd_loader_give_back. */
void vd_loader_next(vd_loader *l, float *frames, vd_clip_truth *truth);
/* Stops the workers and frees everything. */
void vd_loader_free(vd_loader *l);

#endif
