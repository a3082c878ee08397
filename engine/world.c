/* world.c: the synthetic world (see world.h): drawing clip descriptions from a seed, their
 * tracks, anti-aliased rendering from signed distances, prompts and paraphrases from word tables
 * that are also the vocabulary, the ground truth's JSON form, and the threaded loader. */
#include "world.h"
#include "common.h"
#include "rng.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PI 3.14159265358979323846

/* ---- names and palette ---- */

static const char *const shape_names[VD_SHAPE_COUNT] = {"circle", "square", "triangle", "star", "ring", "cross"};
static const char *const colour_names[VD_COLOUR_COUNT] = {"red", "green", "blue", "yellow", "orange",
                                                          "purple", "pink", "cyan", "white", "black"};
static const char *const size_names[VD_SIZE_COUNT] = {"small", "medium", "large"};
static const char *const motion_names[VD_MOTION_COUNT] = {
    "left", "right", "up", "down", "up_left", "up_right", "down_left", "down_right",
    "bounce", "grow", "shrink", "rotate", "orbit", "stay"};
static const char *const background_names[VD_BACKGROUND_COUNT] = {"black", "white", "gray", "blue", "green",
                                                                  "gradient", "striped", "checkered"};

static const float palette[VD_COLOUR_COUNT][3] = {
    {0.90f, 0.12f, 0.12f}, {0.15f, 0.75f, 0.20f}, {0.15f, 0.30f, 0.95f}, {0.97f, 0.90f, 0.12f},
    {1.00f, 0.55f, 0.08f}, {0.58f, 0.18f, 0.78f}, {1.00f, 0.50f, 0.78f}, {0.12f, 0.85f, 0.90f},
    {0.97f, 0.97f, 0.97f}, {0.05f, 0.05f, 0.05f},
};

/* Radius of each size class as a fraction of the frame's shorter side. */
static const float size_fraction[VD_SIZE_COUNT] = {0.075f, 0.105f, 0.145f};

/* Background colours: solid ones, the gradient's top and bottom, the two stripes, the two
 * checkers. */
static const float solid_background[5][3] = {
    {0.05f, 0.05f, 0.05f}, {0.97f, 0.97f, 0.97f}, {0.50f, 0.50f, 0.50f}, {0.12f, 0.22f, 0.62f}, {0.12f, 0.45f, 0.18f}};
static const float gradient_top[3] = {0.10f, 0.12f, 0.32f}, gradient_bottom[3] = {0.50f, 0.42f, 0.55f};
static const float stripe_colours[2][3] = {{0.20f, 0.20f, 0.24f}, {0.36f, 0.36f, 0.42f}};
static const float checker_colours[2][3] = {{0.56f, 0.56f, 0.50f}, {0.74f, 0.74f, 0.68f}};
/* An object's colour must be at least this far (RGB distance in [0, 1]) from every background
 * colour, and differ in luma too (video codecs keep colour at half resolution, so an edge of
 * colour alone cannot stay sharp). */
#define MIN_CONTRAST 0.35f
#define MIN_LUMA_CONTRAST 0.1f

const char *vd_shape_name(vd_shape s) { return s < VD_SHAPE_COUNT ? shape_names[s] : "?"; }
const char *vd_colour_name(vd_colour c) { return c < VD_COLOUR_COUNT ? colour_names[c] : "?"; }
const char *vd_size_name(vd_size s) { return s < VD_SIZE_COUNT ? size_names[s] : "?"; }
const char *vd_motion_name(vd_motion m) { return m < VD_MOTION_COUNT ? motion_names[m] : "?"; }
const char *vd_background_name(vd_background b) { return b < VD_BACKGROUND_COUNT ? background_names[b] : "?"; }

void vd_colour_rgb(vd_colour c, float rgb[3]) { memcpy(rgb, palette[c], sizeof palette[c]); }

float vd_size_radius(vd_size s, int side) { return size_fraction[s] * (float)side; }

int vd_world_motion_allowed(vd_motion m, vd_shape s)
{
    return !(m == VD_MOTION_ROTATE && (s == VD_SHAPE_CIRCLE || s == VD_SHAPE_RING));
}

/* ---- prompt word tables (also the vocabulary) ---- */

#define MAX_PHRASES 6
typedef struct {
    const char *words[MAX_PHRASES];
} phrase_list;

static const phrase_list shape_words[VD_SHAPE_COUNT] = {
    {{"circle", "ball", "disc"}}, {{"square", "box"}}, {{"triangle"}}, {{"star"}}, {{"ring", "hoop"}}, {{"cross"}}};
/* "" (no word) means medium. */
static const phrase_list size_words[VD_SIZE_COUNT] = {{{"small", "tiny", "little"}}, {{"medium", ""}}, {{"large", "big"}}};
/* Finite verb phrases ("a red circle moves left"). */
static const phrase_list motion_verbs[VD_MOTION_COUNT] = {
    {{"moves left", "slides left", "goes left", "drifts to the left", "moves to the left"}},
    {{"moves right", "slides right", "goes right", "drifts to the right", "moves to the right"}},
    {{"moves up", "rises", "floats up", "goes up"}},
    {{"moves down", "falls", "sinks", "drops", "goes down"}},
    {{"moves to the upper left", "drifts up to the left", "moves northwest"}},
    {{"moves to the upper right", "drifts up to the right", "moves northeast"}},
    {{"moves to the lower left", "drifts down to the left", "moves southwest"}},
    {{"moves to the lower right", "drifts down to the right", "moves southeast"}},
    {{"bounces", "bounces in place", "hops"}},
    {{"grows", "gets bigger", "expands"}},
    {{"shrinks", "gets smaller", "contracts"}},
    {{"rotates", "spins", "turns around"}},
    {{"orbits", "circles around", "moves in a circle"}},
    {{"stays still", "stays in place", "does not move", "rests"}},
};
/* Participles ("red ball sliding to the left"). */
static const phrase_list motion_participles[VD_MOTION_COUNT] = {
    {{"moving left", "sliding to the left", "drifting left"}},
    {{"moving right", "sliding to the right", "drifting right"}},
    {{"moving up", "rising", "floating upward"}},
    {{"moving down", "falling", "sinking"}},
    {{"moving to the upper left", "heading northwest"}},
    {{"moving to the upper right", "heading northeast"}},
    {{"moving to the lower left", "heading southwest"}},
    {{"moving to the lower right", "heading southeast"}},
    {{"bouncing", "hopping"}},
    {{"growing", "expanding"}},
    {{"shrinking", "getting smaller"}},
    {{"rotating", "spinning"}},
    {{"orbiting", "circling"}},
    {{"staying still", "resting"}},
};
/* One word each, for the compact form that always fits three objects. */
static const phrase_list motion_words[VD_MOTION_COUNT] = {
    {{"leftward"}}, {{"rightward"}}, {{"upward"}}, {{"downward"}}, {{"northwest"}}, {{"northeast"}},
    {{"southwest"}}, {{"southeast"}}, {{"bounces"}}, {{"grows"}}, {{"shrinks"}}, {{"spins", "rotates"}},
    {{"orbits", "circles"}}, {{"stays", "rests"}},
};
/* Backgrounds: the adjective ("on a striped background") and a one-word noun ("on stripes"). */
static const phrase_list background_adjectives[VD_BACKGROUND_COUNT] = {
    {{"black"}}, {{"white"}}, {{"gray", "grey"}}, {{"blue"}}, {{"green"}}, {{"gradient"}}, {{"striped"}}, {{"checkered"}}};
static const phrase_list background_nouns[VD_BACKGROUND_COUNT] = {
    {{"black"}}, {{"white"}}, {{"gray", "grey"}}, {{"blue"}}, {{"green"}}, {{"gradient"}}, {{"stripes"}}, {{"checkers"}}};
static const char *const joining_words[] = {"a", "an", "and", "on", "over", "against", "background"};

/* ---- unit shapes, the vocabulary and the contrast table, built once ---- */

#define MAX_VERTICES 12
typedef struct {
    int n;
    float x[MAX_VERTICES], y[MAX_VERTICES];
    float extent; /* largest distance of the area-normalised shape from its centre */
} unit_polygon;

static unit_polygon polygons[VD_SHAPE_COUNT]; /* square, triangle, star, cross; area pi */
static int colour_allowed[VD_COLOUR_COUNT][VD_BACKGROUND_COUNT];
#define MAX_VOCAB 256
static const char *vocabulary[MAX_VOCAB];
static char vocabulary_storage[4096];
static int vocabulary_size;
static size_t vocabulary_used; /* bytes of vocabulary_storage */
static pthread_once_t world_once = PTHREAD_ONCE_INIT;

static void set_polygon(vd_shape s, const float *xy, int n)
{
    unit_polygon *p = &polygons[s];
    double area = 0;
    for (int i = 0, j = n - 1; i < n; j = i++) area += (double)xy[2 * j] * xy[2 * i + 1] - (double)xy[2 * i] * xy[2 * j + 1];
    float k = (float)sqrt(PI / fabs(area / 2));
    p->n = n;
    p->extent = 0;
    for (int i = 0; i < n; i++) {
        p->x[i] = xy[2 * i] * k, p->y[i] = xy[2 * i + 1] * k;
        float d = hypotf(p->x[i], p->y[i]);
        if (d > p->extent) p->extent = d;
    }
}

static void add_words(const char *phrase)
{
    const char *s = phrase;
    while (*s) {
        while (*s == ' ') s++;
        const char *start = s;
        while (*s && *s != ' ') s++;
        size_t len = (size_t)(s - start);
        if (!len) continue;
        int known = 0;
        for (int i = 0; i < vocabulary_size && !known; i++)
            known = strlen(vocabulary[i]) == len && memcmp(vocabulary[i], start, len) == 0;
        if (known) continue;
        if (vocabulary_size >= MAX_VOCAB || vocabulary_used + len + 1 > sizeof vocabulary_storage) abort(); /* tables outgrew the buffers */
        memcpy(vocabulary_storage + vocabulary_used, start, len);
        vocabulary_storage[vocabulary_used + len] = 0;
        vocabulary[vocabulary_size++] = vocabulary_storage + vocabulary_used;
        vocabulary_used += len + 1;
    }
}

static void add_phrase_lists(const phrase_list *lists, int count)
{
    for (int i = 0; i < count; i++)
        for (int j = 0; j < MAX_PHRASES && lists[i].words[j]; j++) add_words(lists[i].words[j]);
}

static void world_init(void)
{
    static const float square[] = {-1, -1, 1, -1, 1, 1, -1, 1};
    float triangle[6], star[20];
    for (int i = 0; i < 3; i++) {
        double a = -PI / 2 + i * 2 * PI / 3;
        triangle[2 * i] = (float)cos(a), triangle[2 * i + 1] = (float)sin(a);
    }
    for (int i = 0; i < 10; i++) {
        double a = -PI / 2 + i * PI / 5, r = i % 2 ? 0.45 : 1.0;
        star[2 * i] = (float)(r * cos(a)), star[2 * i + 1] = (float)(r * sin(a));
    }
    const float w = 0.3f;
    const float cross[] = {w, -1, w, -w, 1, -w, 1, w, w, w, w, 1, -w, 1, -w, w, -1, w, -1, -w, -w, -w, -w, -1};
    set_polygon(VD_SHAPE_SQUARE, square, 4);
    set_polygon(VD_SHAPE_TRIANGLE, triangle, 3);
    set_polygon(VD_SHAPE_STAR, star, 10);
    set_polygon(VD_SHAPE_CROSS, cross, 12);
    polygons[VD_SHAPE_CIRCLE].extent = 1.0f;
    polygons[VD_SHAPE_RING].extent = 1.25f;

    float sample[16 * 16 * 3];
    for (int b = 0; b < VD_BACKGROUND_COUNT; b++) {
        vd_world_render_background((vd_background)b, 16, 16, sample);
        for (int c = 0; c < VD_COLOUR_COUNT; c++) {
            int ok = strcmp(colour_names[c], background_names[b]) != 0;
            for (int i = 0; i < 16 * 16 && ok; i++) {
                float dr = sample[3 * i] - palette[c][0], dg = sample[3 * i + 1] - palette[c][1], db = sample[3 * i + 2] - palette[c][2];
                float luma_gap = 0.299f * dr + 0.587f * dg + 0.114f * db;
                ok = sqrtf(dr * dr + dg * dg + db * db) >= MIN_CONTRAST && fabsf(luma_gap) >= MIN_LUMA_CONTRAST;
            }
            colour_allowed[c][b] = ok;
        }
    }

    vocabulary[vocabulary_size++] = "<pad>";
    vocabulary[vocabulary_size++] = "<unk>";
    for (size_t i = 0; i < VD_ARRAY_LEN(joining_words); i++) add_words(joining_words[i]);
    for (int i = 0; i < VD_COLOUR_COUNT; i++) add_words(colour_names[i]);
    add_phrase_lists(size_words, VD_SIZE_COUNT);
    add_phrase_lists(shape_words, VD_SHAPE_COUNT);
    add_phrase_lists(motion_verbs, VD_MOTION_COUNT);
    add_phrase_lists(motion_participles, VD_MOTION_COUNT);
    add_phrase_lists(motion_words, VD_MOTION_COUNT);
    add_phrase_lists(background_adjectives, VD_BACKGROUND_COUNT);
    add_phrase_lists(background_nouns, VD_BACKGROUND_COUNT);
}

const char *const *vd_world_vocabulary(int *count)
{
    pthread_once(&world_once, world_init);
    *count = vocabulary_size;
    return vocabulary;
}

int vd_world_colour_allowed(vd_colour c, vd_background b)
{
    pthread_once(&world_once, world_init);
    return colour_allowed[c][b];
}

/* ---- rendering ---- */

static float clampf(float x, float lo, float hi) { return x < lo ? lo : x > hi ? hi : x; }

/* Signed distance (negative inside) from (px, py) to a polygon: the nearest edge gives the
 * magnitude, the crossing count of a ray to +x gives the sign. */
static float polygon_distance(const unit_polygon *p, float px, float py)
{
    float best = INFINITY;
    int inside = 0;
    for (int i = 0, j = p->n - 1; i < p->n; j = i++) {
        float ex = p->x[i] - p->x[j], ey = p->y[i] - p->y[j];
        float wx = px - p->x[j], wy = py - p->y[j];
        float t = clampf((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0f, 1.0f);
        float dx = wx - t * ex, dy = wy - t * ey, d = dx * dx + dy * dy;
        if (d < best) best = d;
        if ((p->y[j] > py) != (p->y[i] > py) && px < p->x[j] + (py - p->y[j]) * ex / ey) inside = !inside;
    }
    return inside ? -sqrtf(best) : sqrtf(best);
}

/* Signed distance of the area-pi unit shape. */
static float unit_distance(vd_shape s, float ux, float uy)
{
    float len = sqrtf(ux * ux + uy * uy);
    switch (s) {
    case VD_SHAPE_CIRCLE: return len - 1.0f;
    case VD_SHAPE_RING: return fabsf(len - 1.0f) - 0.25f;
    default: return polygon_distance(&polygons[s], ux, uy);
    }
}

/* Coverage of the pixel centre at offset (dx, dy) from the centre of a shape of radius r turned
 * by the angle whose cosine and sine are c, sn. */
static float coverage(vd_shape s, float dx, float dy, float r, float c, float sn)
{
    float ux = (c * dx + sn * dy) / r, uy = (-sn * dx + c * dy) / r;
    return clampf(0.5f - unit_distance(s, ux, uy) * r, 0.0f, 1.0f);
}

float vd_world_shape_coverage(vd_shape s, float px, float py, float cx, float cy, float r, float angle)
{
    pthread_once(&world_once, world_init);
    return coverage(s, px - cx, py - cy, r, cosf(angle), sinf(angle));
}

/* The pixel box a shape can touch, clipped to the frame; returns 0 when it is empty. */
static int shape_box(vd_shape s, float cx, float cy, float r, int w, int h, int box[4])
{
    float e = polygons[s].extent * r + 1.0f;
    box[0] = (int)floorf(cx - e), box[1] = (int)floorf(cy - e);
    box[2] = (int)ceilf(cx + e), box[3] = (int)ceilf(cy + e);
    if (box[0] < 0) box[0] = 0;
    if (box[1] < 0) box[1] = 0;
    if (box[2] > w) box[2] = w;
    if (box[3] > h) box[3] = h;
    return box[0] < box[2] && box[1] < box[3];
}

static void mix3(float *out, const float *a, const float *b, float t)
{
    for (int k = 0; k < 3; k++) out[k] = a[k] + (b[k] - a[k]) * t;
}

/* A square wave of period `period` smoothed over one pixel: +1 in the first half, -1 in the second. */
static float smooth_square_wave(float u, float period)
{
    float half = period / 2, m = fmodf(u, period);
    float inside = m < half ? fminf(m, half - m) : -fminf(m - half, period - m);
    return clampf(2.0f * inside, -1.0f, 1.0f);
}

void vd_world_render_background(vd_background b, int width, int height, float *rgb)
{
    float side = (float)(width < height ? width : height);
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++) {
            float *px = rgb + 3 * ((size_t)y * width + x), fy = y + 0.5f, fx = x + 0.5f;
            switch (b) {
            case VD_BACKGROUND_GRADIENT: mix3(px, gradient_top, gradient_bottom, fy / height); break;
            case VD_BACKGROUND_STRIPED:
                mix3(px, stripe_colours[0], stripe_colours[1], 0.5f - 0.5f * smooth_square_wave(fy, height / 8.0f));
                break;
            case VD_BACKGROUND_CHECKERED: {
                float cell = side / 4.0f;
                float wave = smooth_square_wave(fx, cell) * smooth_square_wave(fy, cell);
                mix3(px, checker_colours[0], checker_colours[1], 0.5f - 0.5f * wave);
                break;
            }
            default: memcpy(px, solid_background[b], 3 * sizeof(float)); break;
            }
        }
}

void vd_world_render(const vd_clip_truth *t, float *frames)
{
    int w = t->width, h = t->height, side = w < h ? w : h;
    size_t plane = (size_t)w * h;
    float *bg = vd_malloc(plane * 3 * sizeof(float));
    vd_world_render_background(t->background, w, h, bg);
    for (int f = 0; f < t->frames; f++) {
        float *out = frames + (size_t)f * 3 * plane;
        for (size_t i = 0; i < plane; i++)
            for (int k = 0; k < 3; k++) out[k * plane + i] = bg[3 * i + k];
        for (int o = 0; o < t->object_count; o++) {
            const vd_world_object *ob = &t->objects[o];
            const vd_track_point *p = &ob->track[f];
            float r = vd_size_radius(ob->size, side) * p->scale;
            int box[4];
            if (!shape_box(ob->shape, p->x, p->y, r, w, h, box)) continue;
            float c = cosf(p->angle), sn = sinf(p->angle);
            for (int y = box[1]; y < box[3]; y++)
                for (int x = box[0]; x < box[2]; x++) {
                    float a = coverage(ob->shape, x + 0.5f - p->x, y + 0.5f - p->y, r, c, sn);
                    if (a <= 0) continue;
                    size_t i = (size_t)y * w + x;
                    for (int k = 0; k < 3; k++) out[k * plane + i] += (palette[ob->colour][k] - out[k * plane + i]) * a;
                }
        }
        for (size_t i = 0; i < 3 * plane; i++) out[i] = out[i] * 2.0f - 1.0f;
    }
    free(bg);
}

/* ---- tracks ---- */

static void motion_direction(vd_motion m, float *dx, float *dy)
{
    static const float d[8][2] = {{-1, 0}, {1, 0}, {0, -1}, {0, 1}, {-1, -1}, {1, -1}, {-1, 1}, {1, 1}};
    *dx = *dy = 0;
    if (m > VD_MOTION_DOWN_RIGHT) return;
    float n = hypotf(d[m][0], d[m][1]);
    *dx = d[m][0] / n, *dy = d[m][1] / n;
}

static void object_geometry(const vd_world_object *o, int w, int h, int f, vd_track_point *p)
{
    float side = (float)(w < h ? w : h), cx = o->start_x * w, cy = o->start_y * h;
    p->x = cx, p->y = cy, p->scale = 1.0f, p->angle = o->angle0;
    switch (o->motion) {
    case VD_MOTION_BOUNCE:
        p->y = cy - (float)(VD_WORLD_BOUNCE_HEIGHT * side * fabs(sin(PI * (f / VD_WORLD_BOUNCE_PERIOD + o->phase))));
        break;
    case VD_MOTION_ORBIT: {
        double a = 2 * PI * o->phase + VD_WORLD_ORBIT_RATE * f;
        p->x = cx + (float)(VD_WORLD_ORBIT_RADIUS * side * cos(a));
        p->y = cy - (float)(VD_WORLD_ORBIT_RADIUS * side * sin(a));
        break;
    }
    case VD_MOTION_GROW: p->scale = (float)exp(VD_WORLD_GROWTH_RATE * f); break;
    case VD_MOTION_SHRINK: p->scale = (float)exp(-VD_WORLD_GROWTH_RATE * f); break;
    case VD_MOTION_ROTATE: p->angle = o->angle0 + (float)(VD_WORLD_SPIN_RATE * f); break;
    case VD_MOTION_STAY: break;
    default: {
        float dx, dy;
        motion_direction(o->motion, &dx, &dy);
        p->x = cx + dx * (float)(VD_WORLD_SPEED * side) * f;
        p->y = cy + dy * (float)(VD_WORLD_SPEED * side) * f;
    }
    }
}

void vd_world_compute_tracks(vd_clip_truth *t)
{
    pthread_once(&world_once, world_init);
    int w = t->width, h = t->height, side = w < h ? w : h;
    float *cover[VD_WORLD_MAX_OBJECTS];
    for (int o = 0; o < t->object_count; o++) cover[o] = vd_calloc((size_t)w * h, sizeof(float));
    for (int f = 0; f < t->frames; f++) {
        int boxes[VD_WORLD_MAX_OBJECTS][4], any[VD_WORLD_MAX_OBJECTS];
        for (int o = 0; o < t->object_count; o++) {
            vd_world_object *ob = &t->objects[o];
            vd_track_point *p = &ob->track[f];
            object_geometry(ob, w, h, f, p);
            float r = vd_size_radius(ob->size, side) * p->scale;
            any[o] = shape_box(ob->shape, p->x, p->y, r, w, h, boxes[o]);
            if (!any[o]) continue;
            float c = cosf(p->angle), sn = sinf(p->angle);
            for (int y = boxes[o][1]; y < boxes[o][3]; y++)
                for (int x = boxes[o][0]; x < boxes[o][2]; x++)
                    cover[o][(size_t)y * w + x] = coverage(ob->shape, x + 0.5f - p->x, y + 0.5f - p->y, r, c, sn);
        }
        /* Visible area: own coverage times what later objects leave uncovered. */
        for (int o = 0; o < t->object_count; o++) {
            vd_track_point *p = &t->objects[o].track[f];
            float r = vd_size_radius(t->objects[o].size, side) * p->scale;
            double seen = 0;
            if (any[o])
                for (int y = boxes[o][1]; y < boxes[o][3]; y++)
                    for (int x = boxes[o][0]; x < boxes[o][2]; x++) {
                        size_t i = (size_t)y * w + x;
                        double a = cover[o][i];
                        for (int later = o + 1; later < t->object_count; later++) a *= 1.0 - cover[later][i];
                        seen += a;
                    }
            p->visible = (float)fmin(1.0, seen / (PI * r * r));
        }
        for (int o = 0; o < t->object_count; o++)
            if (any[o])
                for (int y = boxes[o][1]; y < boxes[o][3]; y++)
                    memset(cover[o] + (size_t)y * w + boxes[o][0], 0, (size_t)(boxes[o][2] - boxes[o][0]) * sizeof(float));
    }
    for (int o = 0; o < t->object_count; o++) free(cover[o]);
}

/* ---- drawing a clip ---- */

/* Consecutive draws from one counter-based stream. */
typedef struct {
    uint64_t seed, next;
} draw_stream;

static double draw_uniform(draw_stream *s) { return vd_rng_uniform(s->seed, s->next++); }
static int draw_int(draw_stream *s, int n) { return (int)(draw_uniform(s) * n) % n; }
static float draw_range(draw_stream *s, double lo, double hi) { return (float)(lo + (hi - lo) * draw_uniform(s)); }

static void draw_start(draw_stream *s, vd_world_object *o, int w, int h, int frames)
{
    switch (o->motion) {
    case VD_MOTION_BOUNCE:
        o->start_x = draw_range(s, 0.25, 0.75), o->start_y = draw_range(s, 0.7, 0.85);
        break;
    case VD_MOTION_ORBIT:
        o->start_x = draw_range(s, 0.35, 0.65), o->start_y = draw_range(s, 0.35, 0.65);
        break;
    case VD_MOTION_GROW: case VD_MOTION_SHRINK: case VD_MOTION_ROTATE: case VD_MOTION_STAY:
        o->start_x = draw_range(s, 0.25, 0.75), o->start_y = draw_range(s, 0.25, 0.75);
        break;
    default: {
        /* The middle of the path lands in the central part of the frame. */
        float dx, dy, side = (float)(w < h ? w : h);
        motion_direction(o->motion, &dx, &dy);
        float travel = (float)(VD_WORLD_SPEED * side) * (frames - 1) / 2;
        o->start_x = draw_range(s, 0.3, 0.7) - dx * travel / w;
        o->start_y = draw_range(s, 0.3, 0.7) - dy * travel / h;
    }
    }
}

void vd_world_sample(uint64_t seed, uint64_t index, int width, int height, int frames, vd_clip_truth *t)
{
    vd_world_sample_odds(seed, index, width, height, frames, NULL, t);
}

void vd_world_sample_odds(uint64_t seed, uint64_t index, int width, int height, int frames,
                          const float *count_odds, vd_clip_truth *t)
{
    pthread_once(&world_once, world_init);
    draw_stream s = {vd_rng_u64(seed, index), 0};
    memset(t, 0, sizeof *t);
    t->seed = seed, t->index = index, t->width = width, t->height = height, t->frames = frames;
    t->background = (vd_background)draw_int(&s, VD_BACKGROUND_COUNT);
    double u = draw_uniform(&s);
    if (count_odds) {
        double sum = 0, below = 0;
        for (int k = 0; k < VD_WORLD_MAX_OBJECTS; k++) sum += count_odds[k];
        t->object_count = VD_WORLD_MAX_OBJECTS;
        for (int k = 0; k + 1 < VD_WORLD_MAX_OBJECTS; k++) {
            below += count_odds[k];
            if (u < below / sum) {
                t->object_count = k + 1;
                break;
            }
        }
    } else {
        t->object_count = u < 0.4 ? 1 : u < 0.75 ? 2 : 3;
    }
    for (int o = 0; o < t->object_count; o++) {
        vd_world_object *ob = &t->objects[o];
        int colour, clash;
        do {
            colour = draw_int(&s, VD_COLOUR_COUNT);
            clash = !colour_allowed[colour][t->background];
            for (int p = 0; p < o; p++) clash |= (int)t->objects[p].colour == colour;
        } while (clash);
        ob->colour = (vd_colour)colour;
        ob->shape = (vd_shape)draw_int(&s, VD_SHAPE_COUNT);
        ob->size = (vd_size)draw_int(&s, VD_SIZE_COUNT);
        do ob->motion = (vd_motion)draw_int(&s, VD_MOTION_COUNT);
        while (!vd_world_motion_allowed(ob->motion, ob->shape));
        ob->angle0 = draw_range(&s, 0, 2 * PI);
        ob->phase = draw_range(&s, 0, 1);
        draw_start(&s, ob, width, height, frames);
    }
    vd_world_compute_tracks(t);
    vd_world_prompt(t, 0, t->prompt, sizeof t->prompt);
}

/* ---- prompts ---- */

static const char *pick(draw_stream *s, const phrase_list *l)
{
    int n = 0;
    while (n < MAX_PHRASES && l->words[n]) n++;
    return l->words[draw_int(s, n)];
}

static int count_words(const char *text)
{
    int n = 0;
    for (const char *p = text; *p; p++)
        if (((*p | 32) >= 'a' && (*p | 32) <= 'z') && !(p > text && ((p[-1] | 32) >= 'a' && (p[-1] | 32) <= 'z'))) n++;
    return n;
}

typedef struct {
    char *buf;
    size_t len, used;
} text_builder;

static void append(text_builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void append(text_builder *b, const char *fmt, ...)
{
    if (b->used >= b->len) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->buf + b->used, b->len - b->used, fmt, ap);
    va_end(ap);
    if (n > 0) b->used += (size_t)n;
}

/* Appends words separated by single spaces, skipping empty ones. */
static void append_words(text_builder *b, int count, ...)
{
    va_list ap;
    va_start(ap, count);
    for (int i = 0; i < count; i++) {
        const char *w = va_arg(ap, const char *);
        if (*w) append(b, "%s%s", b->used ? " " : "", w);
    }
    va_end(ap);
}

static int starts_with_vowel(const char *w) { return strchr("aeiou", w[0]) != NULL; }

/* compact: one-word motions and backgrounds, no articles — always fits VD_WORLD_MAX_WORDS. */
static void write_prompt(const vd_clip_truth *t, draw_stream *s, int compact, text_builder *b)
{
    for (int o = 0; o < t->object_count; o++) {
        const vd_world_object *ob = &t->objects[o];
        if (o > 0) append(b, o == t->object_count - 1 ? " and" : ",");
        const char *size = pick(s, &size_words[ob->size]), *colour = colour_names[ob->colour];
        const char *shape = pick(s, &shape_words[ob->shape]);
        if (compact) {
            append_words(b, 4, size, colour, shape, pick(s, &motion_words[ob->motion]));
        } else if (draw_uniform(s) < 0.7) {
            const char *first = *size ? size : colour;
            append_words(b, 5, starts_with_vowel(first) ? "an" : "a", size, colour, shape, pick(s, &motion_verbs[ob->motion]));
        } else {
            append_words(b, 4, size, colour, shape, pick(s, &motion_participles[ob->motion]));
        }
    }
    static const char *const prepositions[] = {"on", "over", "against"};
    const char *prep = compact ? "on" : prepositions[draw_int(s, 3)];
    if (compact || draw_uniform(s) < 0.4)
        append_words(b, 2, prep, pick(s, &background_nouns[t->background]));
    else
        append_words(b, 4, prep, "a", pick(s, &background_adjectives[t->background]), "background");
}

void vd_world_prompt(const vd_clip_truth *t, uint64_t variant, char *buf, size_t len)
{
    pthread_once(&world_once, world_init);
    draw_stream s = {vd_rng_u64(vd_rng_u64(t->seed, t->index), 0x70726f6d7074ull + variant), 0};
    for (int attempt = 0; attempt < 8; attempt++) {
        text_builder b = {buf, len, 0};
        buf[0] = 0;
        write_prompt(t, &s, 0, &b);
        if (count_words(buf) <= VD_WORLD_MAX_WORDS && b.used < len) return;
    }
    text_builder b = {buf, len, 0};
    buf[0] = 0;
    write_prompt(t, &s, 1, &b);
}

/* ---- ground truth as JSON ---- */

char *vd_world_truth_to_json(const vd_clip_truth *t, const char *video, const char *image)
{
    json_t *objects = json_array();
    for (int o = 0; o < t->object_count; o++) {
        const vd_world_object *ob = &t->objects[o];
        json_t *track = json_array();
        for (int f = 0; f < t->frames; f++) {
            const vd_track_point *p = &ob->track[f];
            json_array_append_new(track, json_pack("[f,f,f,f,f]", round(p->x * 100) / 100, round(p->y * 100) / 100,
                                                   round(p->scale * 1e4) / 1e4, round(p->angle * 1e4) / 1e4,
                                                   round(p->visible * 1e3) / 1e3));
        }
        json_array_append_new(objects, json_pack("{s:s, s:s, s:s, s:s, s:f, s:f, s:f, s:f, s:o}", "shape",
                                                 shape_names[ob->shape], "colour", colour_names[ob->colour], "size",
                                                 size_names[ob->size], "motion", motion_names[ob->motion], "start_x",
                                                 (double)ob->start_x, "start_y", (double)ob->start_y, "angle0",
                                                 (double)ob->angle0, "phase", (double)ob->phase, "track", track));
    }
    json_t *root = json_object();
    if (video) json_object_set_new(root, "video", json_string(video));
    if (image) json_object_set_new(root, "image", json_string(image));
    json_object_set_new(root, "prompt", json_string(t->prompt));
    json_object_set_new(root, "seed", json_integer((json_int_t)t->seed));
    json_object_set_new(root, "index", json_integer((json_int_t)t->index));
    json_object_set_new(root, "width", json_integer(t->width));
    json_object_set_new(root, "height", json_integer(t->height));
    json_object_set_new(root, "frames", json_integer(t->frames));
    json_object_set_new(root, "background", json_string(background_names[t->background]));
    json_object_set_new(root, "objects", objects);
    char *s = json_dumps(root, JSON_PRESERVE_ORDER | JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(root);
    return s;
}

static int name_index(json_t *obj, const char *key, const char *const *names, int count, int *out, char *err,
                      size_t errlen)
{
    const char *v = json_string_value(json_object_get(obj, key));
    for (int i = 0; v && i < count; i++)
        if (strcmp(v, names[i]) == 0) return *out = i, 0;
    return vd_fail(err, errlen, "\"%s\": %s%s%s is not a known name", key, v ? "\"" : "", v ? v : "missing", v ? "\"" : "");
}

static int int_field(json_t *obj, const char *key, long lo, long hi, int *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return vd_fail(err, errlen, "\"%s\": must be an integer in [%ld, %ld]", key, lo, hi);
    *out = (int)json_integer_value(v);
    return 0;
}

static int number_field(json_t *obj, const char *key, float *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_number(v) || !isfinite(json_number_value(v)) || fabs(json_number_value(v)) > 1e3)
        return vd_fail(err, errlen, "\"%s\": must be a number", key);
    *out = (float)json_number_value(v);
    return 0;
}

int vd_world_truth_from_json(const char *json, vd_clip_truth *t, char *video, size_t video_len, char *err,
                             size_t errlen)
{
    pthread_once(&world_once, world_init);
    memset(t, 0, sizeof *t);
    json_error_t jerr;
    json_t *root = json_loads(json, 0, &jerr);
    if (!json_is_object(root)) {
        json_decref(root);
        return vd_fail(err, errlen, "not a JSON object: %s", root ? "" : jerr.text);
    }
    int rc = -1, bg = 0;
    json_t *objects = json_object_get(root, "objects"), *seed = json_object_get(root, "seed"), *index = json_object_get(root, "index");
    const char *prompt = json_string_value(json_object_get(root, "prompt"));
    const char *v = json_string_value(json_object_get(root, "video"));
    if (int_field(root, "width", 8, VD_WORLD_MAX_SIDE, &t->width, err, errlen) ||
        int_field(root, "height", 8, VD_WORLD_MAX_SIDE, &t->height, err, errlen) ||
        int_field(root, "frames", 1, VD_WORLD_MAX_FRAMES, &t->frames, err, errlen) ||
        name_index(root, "background", background_names, VD_BACKGROUND_COUNT, &bg, err, errlen))
        goto done;
    t->background = (vd_background)bg;
    if (!json_is_array(objects) || json_array_size(objects) < 1 || json_array_size(objects) > VD_WORLD_MAX_OBJECTS) {
        vd_fail(err, errlen, "\"objects\": must be a list of 1 to %d objects", VD_WORLD_MAX_OBJECTS);
        goto done;
    }
    t->seed = json_is_integer(seed) ? (uint64_t)json_integer_value(seed) : 0;
    t->index = json_is_integer(index) ? (uint64_t)json_integer_value(index) : 0;
    snprintf(t->prompt, sizeof t->prompt, "%s", prompt ? prompt : "");
    if (video) snprintf(video, video_len, "%s", v ? v : "");
    t->object_count = (int)json_array_size(objects);
    for (int o = 0; o < t->object_count; o++) {
        json_t *j = json_array_get(objects, (size_t)o);
        vd_world_object *ob = &t->objects[o];
        int shape, colour, size, motion;
        if (!json_is_object(j) || name_index(j, "shape", shape_names, VD_SHAPE_COUNT, &shape, err, errlen) ||
            name_index(j, "colour", colour_names, VD_COLOUR_COUNT, &colour, err, errlen) ||
            name_index(j, "size", size_names, VD_SIZE_COUNT, &size, err, errlen) ||
            name_index(j, "motion", motion_names, VD_MOTION_COUNT, &motion, err, errlen) ||
            number_field(j, "start_x", &ob->start_x, err, errlen) || number_field(j, "start_y", &ob->start_y, err, errlen) ||
            number_field(j, "angle0", &ob->angle0, err, errlen) || number_field(j, "phase", &ob->phase, err, errlen)) {
            if (!json_is_object(j)) vd_fail(err, errlen, "\"objects\"[%d]: not an object", o);
            goto done;
        }
        ob->shape = (vd_shape)shape, ob->colour = (vd_colour)colour, ob->size = (vd_size)size, ob->motion = (vd_motion)motion;
    }
    vd_world_compute_tracks(t);
    rc = 0;
done:
    json_decref(root);
    return rc;
}

/* ---- the loader ---- */

typedef enum { SLOT_EMPTY, SLOT_BUSY, SLOT_READY } slot_state;

typedef struct {
    slot_state state;
    uint64_t index;
    float *frames;
    vd_clip_truth truth;
} loader_slot;

struct vd_loader {
    uint64_t seed, first;
    int group, stride;
    int width, height, frames, threads, depth, stopping;
    int has_odds; /* count_odds replaces the world's odds of the object count */
    float count_odds[VD_WORLD_MAX_OBJECTS];
    uint64_t next_claim, next_deliver; /* counts of clips handed out, not clip numbers */
    loader_slot *slots;
    pthread_t *workers;
    pthread_mutex_t lock;
    pthread_cond_t changed;
};

static void *loader_worker(void *arg)
{
    vd_loader *l = arg;
    pthread_mutex_lock(&l->lock);
    for (;;) {
        loader_slot *slot = &l->slots[l->next_claim % (uint64_t)l->depth];
        while (!l->stopping && slot->state != SLOT_EMPTY) {
            pthread_cond_wait(&l->changed, &l->lock);
            slot = &l->slots[l->next_claim % (uint64_t)l->depth];
        }
        if (l->stopping) break;
        uint64_t index = l->next_claim++;
        slot->state = SLOT_BUSY;
        slot->index = index;
        pthread_mutex_unlock(&l->lock);
        uint64_t clip = l->first + index / (uint64_t)l->group * (uint64_t)l->stride + index % (uint64_t)l->group;
        vd_world_sample_odds(l->seed, clip, l->width, l->height, l->frames, l->has_odds ? l->count_odds : NULL,
                             &slot->truth);
        vd_world_render(&slot->truth, slot->frames);
        pthread_mutex_lock(&l->lock);
        slot->state = SLOT_READY;
        pthread_cond_broadcast(&l->changed);
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

vd_loader *vd_loader_new(uint64_t seed, int width, int height, int frames, int threads, int depth)
{
    return vd_loader_new_strided(seed, 0, 1, 1, width, height, frames, threads, depth, NULL);
}

vd_loader *vd_loader_new_strided(uint64_t seed, uint64_t first, int group, int stride, int width, int height,
                                 int frames, int threads, int depth, const float *count_odds)
{
    if (width < 8 || height < 8 || width > VD_WORLD_MAX_SIDE || height > VD_WORLD_MAX_SIDE || frames < 1 ||
        frames > VD_WORLD_MAX_FRAMES || threads < 1 || threads > 256 || depth < 1 || depth > 4096 || group < 1 ||
        stride < group)
        return NULL;
    if (count_odds) {
        float sum = 0;
        for (int k = 0; k < VD_WORLD_MAX_OBJECTS; k++) {
            if (!(count_odds[k] >= 0 && count_odds[k] <= 1e6f)) return NULL;
            sum += count_odds[k];
        }
        if (!(sum > 0)) return NULL;
    }
    pthread_once(&world_once, world_init);
    vd_loader *l = vd_calloc(1, sizeof *l);
    *l = (vd_loader){.seed = seed, .first = first, .group = group, .stride = stride, .width = width, .height = height,
                     .frames = frames, .threads = threads, .depth = depth, .has_odds = count_odds != NULL};
    if (count_odds) memcpy(l->count_odds, count_odds, sizeof l->count_odds);
    l->slots = vd_calloc((size_t)depth, sizeof *l->slots);
    for (int i = 0; i < depth; i++) l->slots[i].frames = vd_malloc((size_t)frames * 3 * width * height * sizeof(float));
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->changed, NULL);
    l->workers = vd_calloc((size_t)threads, sizeof(pthread_t));
    for (int i = 0; i < threads; i++)
        if (pthread_create(&l->workers[i], NULL, loader_worker, l)) {
            VD_LOG(VD_LOG_ERROR, "loader: cannot start worker thread %d", i);
            abort();
        }
    return l;
}

const float *vd_loader_borrow(vd_loader *l, vd_clip_truth *truth)
{
    pthread_mutex_lock(&l->lock);
    loader_slot *slot = &l->slots[l->next_deliver % (uint64_t)l->depth];
    while (!(slot->state == SLOT_READY && slot->index == l->next_deliver)) pthread_cond_wait(&l->changed, &l->lock);
    pthread_mutex_unlock(&l->lock);
    /* The slot stays READY (so no worker reuses it) until it is given back. */
    if (truth) *truth = slot->truth;
    return slot->frames;
}

void vd_loader_give_back(vd_loader *l)
{
    pthread_mutex_lock(&l->lock);
    l->slots[l->next_deliver % (uint64_t)l->depth].state = SLOT_EMPTY;
    l->next_deliver++;
    pthread_cond_broadcast(&l->changed);
    pthread_mutex_unlock(&l->lock);
}

void vd_loader_next(vd_loader *l, float *frames, vd_clip_truth *truth)
{
    const float *lent = vd_loader_borrow(l, truth);
    memcpy(frames, lent, (size_t)l->frames * 3 * l->width * l->height * sizeof(float));
    vd_loader_give_back(l);
}

void vd_loader_free(vd_loader *l)
{
    if (!l) return;
    pthread_mutex_lock(&l->lock);
    l->stopping = 1;
    pthread_cond_broadcast(&l->changed);
    pthread_mutex_unlock(&l->lock);
    for (int i = 0; i < l->threads; i++) pthread_join(l->workers[i], NULL);
    for (int i = 0; i < l->depth; i++) free(l->slots[i].frames);
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->changed);
    free(l->workers);
    free(l->slots);
    free(l);
}
