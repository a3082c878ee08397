/* evaluator.c: the evaluator (see evaluator.h for what each metric means): per-frame blob
 * detection against the expected background, shape prototypes rendered by the world itself,
 * matching of blobs to the truth's objects, motion judged from tracks, the Fréchet distance on
 * clip features (Jacobi eigendecomposition), and the summary as Markdown and JSON. */
#include "evaluator.h"
#include "common.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define PI 3.14159265358979323846

#define FOREGROUND_DISTANCE 0.15f /* RGB distance from the expected background that makes a pixel foreground */
#define PURE_COLOUR_DISTANCE 0.25f /* inner pixels this close to a named colour decide a blob's colours */
#define MIN_LUMA_CONTRAST 0.1f /* edges are measured on luma where the blob and background differ this much */
#define MAX_BLOBS 24
#define MIN_BLOB_PIXELS 6
#define VISIBLE_ENOUGH 0.9f   /* truth visibility from which an object-frame is judged */
#define VISIBLE_WHOLE 0.97f   /* ... and from which its shape class and size are judged */
#define MAX_EDGE_WIDTH 2.2f   /* sharp edges: coverage ramp pixels per outline pixel */
#define MAX_SPEED_ERROR 0.3   /* relative */
#define MAX_ACCEL_DEVIATION 0.012 /* smoothness, fraction of the frame side */
#define MAX_FLICKER 0.02f     /* mean absolute change of the background, in [0, 1] units */
#define MAX_START_OFFSET 0.05 /* image-to-video: start within this fraction of the side */
#define PROFILE_BINS 32
#define HARMONICS 7

static const char *const rate_names[VD_RATE_COUNT] = {
    "object_found", "colour_correct", "shape_correct", "size_correct", "edge_sharp", "background_correct",
    "direction_correct", "speed_ok", "smooth", "flicker_free", "identity_kept", "frame_order_ok", "i2v_motion_ok"};

const char *vd_rate_name(vd_rate r) { return r < VD_RATE_COUNT ? rate_names[r] : "?"; }

static float dist3(const float *a, const float *b)
{
    float d0 = a[0] - b[0], d1 = a[1] - b[1], d2 = a[2] - b[2];
    return sqrtf(d0 * d0 + d1 * d1 + d2 * d2);
}

static int nearest_colour(const float *rgb)
{
    int best = 0;
    float best_d = INFINITY, c[3];
    for (int k = 0; k < VD_COLOUR_COUNT; k++) {
        vd_colour_rgb((vd_colour)k, c);
        float d = dist3(rgb, c);
        if (d < best_d) best_d = d, best = k;
    }
    return best;
}

/* ---- shape description from a coverage patch ---- */

typedef struct {
    float fill;                /* area over the disc through the farthest point */
    float core;                /* covered fraction of the disc of 0.4 radius around the centroid */
    float harmonic[HARMONICS]; /* |Fourier coefficient k| of the normalised radial profile */
} shape_signature;

typedef struct {
    int label;        /* nearest named colour */
    float colour[3];  /* mean colour of the inner pixels */
    double area;      /* sum of coverage, pixels */
    float cx, cy, r;  /* centroid and radius of the disc of the same area */
    shape_signature sig;
    float phase[HARMONICS]; /* argument of each Fourier coefficient: the orientation */
    int shape;        /* -1: too small to tell */
    int clutter;      /* too few pixels of its own colour to be an object */
    float edge_width;
} blob_info;

/* Describes the shape whose coverage alpha (w x h, origin at pixel (ox, oy)) holds; ramp is the
 * coverage the edge width is measured on. */
static void describe(const float *alpha, const float *ramp, int w, int h, int ox, int oy, blob_info *b)
{
    double area = 0, sx = 0, sy = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double a = alpha[y * w + x];
            area += a, sx += a * (x + 0.5), sy += a * (y + 0.5);
        }
    b->area = area;
    b->shape = -1;
    if (area < 3) {
        b->cx = ox + w / 2.0f, b->cy = oy + h / 2.0f, b->r = (float)sqrt(area / PI), b->edge_width = 0;
        return;
    }
    float cx = (float)(sx / area), cy = (float)(sy / area);
    b->cx = cx + ox, b->cy = cy + oy, b->r = (float)sqrt(area / PI);
    float bins[PROFILE_BINS] = {0};
    int transitions = 0, outline = 0, core_in = 0, core_all = 0;
    float core_radius = 0.4f * b->r;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float a = alpha[y * w + x], dx = x + 0.5f - cx, dy = y + 0.5f - cy, d = sqrtf(dx * dx + dy * dy);
            if (ramp[y * w + x] > 0.1f && ramp[y * w + x] < 0.9f) transitions++;
            if (d <= core_radius) core_all++, core_in += a >= 0.5f;
            if (a < 0.5f) continue;
            int bin = (int)((atan2f(dy, dx) + (float)PI) / (float)(2 * PI) * PROFILE_BINS);
            if (bin >= PROFILE_BINS) bin = PROFILE_BINS - 1;
            if (bin < 0) bin = 0;
            if (d + 0.5f > bins[bin]) bins[bin] = d + 0.5f;
            int edge = x == 0 || y == 0 || x == w - 1 || y == h - 1 || alpha[y * w + x - 1] < 0.5f ||
                       alpha[y * w + x + 1] < 0.5f || alpha[(y - 1) * w + x] < 0.5f || alpha[(y + 1) * w + x] < 0.5f;
            outline += edge;
        }
    b->edge_width = (float)transitions / (float)(outline > 0 ? outline : 1);
    if (core_all == 0) {
        int x = (int)cx, y = (int)cy;
        core_all = 1, core_in = x >= 0 && y >= 0 && x < w && y < h && alpha[y * w + x] >= 0.5f;
    }
    b->sig.core = (float)core_in / core_all;
    /* Empty bins (a thin or tiny shape) take the linear blend of their nearest filled neighbours. */
    float filled[PROFILE_BINS];
    int any = 0;
    for (int i = 0; i < PROFILE_BINS; i++) any |= bins[i] > 0;
    for (int i = 0; i < PROFILE_BINS; i++) {
        if (bins[i] > 0 || !any) { filled[i] = bins[i]; continue; }
        int before = 1, after = 1;
        while (bins[(i - before + PROFILE_BINS) % PROFILE_BINS] <= 0) before++;
        while (bins[(i + after) % PROFILE_BINS] <= 0) after++;
        float a = bins[(i - before + PROFILE_BINS) % PROFILE_BINS], c = bins[(i + after) % PROFILE_BINS];
        filled[i] = a + (c - a) * before / (float)(before + after);
    }
    float mean = 0, rmax = 0;
    for (int i = 0; i < PROFILE_BINS; i++) mean += filled[i], rmax = fmaxf(rmax, filled[i]);
    mean /= PROFILE_BINS;
    b->sig.fill = rmax > 0 ? (float)(area / (PI * rmax * rmax)) : 0;
    for (int k = 0; k < HARMONICS; k++) {
        double re = 0, im = 0;
        for (int i = 0; i < PROFILE_BINS; i++) {
            double phi = -PI + (i + 0.5) * 2 * PI / PROFILE_BINS, p = mean > 0 ? filled[i] / mean : 0;
            re += p * cos(k * phi), im -= p * sin(k * phi);
        }
        b->sig.harmonic[k] = (float)(hypot(re, im) / PROFILE_BINS);
        b->phase[k] = (float)atan2(im, re);
    }
    b->shape = 0;
}

static float signature_distance(const shape_signature *a, const shape_signature *b)
{
    float d = (a->fill - b->fill) * (a->fill - b->fill) + (a->core - b->core) * (a->core - b->core);
    for (int k = 2; k < HARMONICS; k++) d += 4 * (a->harmonic[k] - b->harmonic[k]) * (a->harmonic[k] - b->harmonic[k]);
    return d;
}

/* Prototypes: every shape rendered by the world at radii 3 * 1.1^k pixels and a few angles,
 * built on first use. */
#define PROTOTYPE_RADII 30
#define PROTOTYPE_ANGLES 5
static shape_signature prototypes[PROTOTYPE_RADII][VD_SHAPE_COUNT][PROTOTYPE_ANGLES];
static int prototypes_ready[PROTOTYPE_RADII];
static pthread_mutex_t prototype_lock = PTHREAD_MUTEX_INITIALIZER;

static float prototype_radius(int k) { return 3.0f * powf(1.1f, (float)k); }

static void build_prototypes(int k)
{
    float r = prototype_radius(k);
    int n = 2 * (int)ceilf(1.6f * r + 3);
    float *alpha = vd_malloc((size_t)n * n * sizeof(float));
    for (int s = 0; s < VD_SHAPE_COUNT; s++)
        for (int a = 0; a < PROTOTYPE_ANGLES; a++) {
            float angle = (float)(a * 2 * PI / (PROTOTYPE_ANGLES * 4.5)), cx = n / 2.0f + 0.3f, cy = n / 2.0f + 0.2f;
            for (int y = 0; y < n; y++)
                for (int x = 0; x < n; x++)
                    alpha[y * n + x] = vd_world_shape_coverage((vd_shape)s, x + 0.5f, y + 0.5f, cx, cy, r, angle);
            blob_info b;
            describe(alpha, alpha, n, n, 0, 0, &b);
            prototypes[k][s][a] = b.sig;
        }
    free(alpha);
}

static int classify_shape(const blob_info *b)
{
    if (b->shape < 0) return -1;
    int k = (int)lroundf(logf(fmaxf(b->r, 1.0f) / 3.0f) / logf(1.1f));
    k = k < 0 ? 0 : k >= PROTOTYPE_RADII ? PROTOTYPE_RADII - 1 : k;
    pthread_mutex_lock(&prototype_lock);
    if (!prototypes_ready[k]) build_prototypes(k), prototypes_ready[k] = 1;
    pthread_mutex_unlock(&prototype_lock);
    int best = -1;
    float best_d = INFINITY;
    for (int s = 0; s < VD_SHAPE_COUNT; s++)
        for (int a = 0; a < PROTOTYPE_ANGLES; a++) {
            float d = signature_distance(&b->sig, &prototypes[k][s][a]);
            if (d < best_d) best_d = d, best = s;
        }
    return best;
}

/* The harmonic whose phase gives a shape's orientation (0: none, it looks the same turned). */
static int orientation_harmonic(vd_shape s)
{
    switch (s) {
    case VD_SHAPE_TRIANGLE: return 3;
    case VD_SHAPE_SQUARE: case VD_SHAPE_CROSS: return 4;
    case VD_SHAPE_STAR: return 5;
    default: return 0;
    }
}

/* ---- one clip ---- */

typedef struct {
    int count;
    blob_info blobs[MAX_BLOBS];
    int match[VD_WORLD_MAX_OBJECTS]; /* blob index per object, -1 when missing */
    int background_ok;
} frame_info;

typedef struct {
    const vd_clip_truth *t;
    int w, h, side, frames;
    const float *video;     /* (frames, h, w, 3) in [0, 1] */
    float *backgrounds;     /* every background, (h, w, 3) each */
    const float *bg;        /* the expected one */
    int8_t *blob_of;        /* (frames, h, w): blob index or -1 */
    uint8_t *foreground;    /* one frame */
    int *component, *pixels, *stack;
    float *alpha, *ramp;
    frame_info *info;
} clip_context;

typedef struct {
    int start, length;
} component_span;

static int compare_span_length(const void *a, const void *b)
{
    const component_span *x = a, *y = b;
    return y->length - x->length;
}

/* Distance from pixel px to the nearest blend of colours a and b; *t receives b's share. Edge
 * pixels lie on such a segment: between the background and an object, or between two objects. */
static float blend_residual(const float *px, const float *a, const float *b, float *t)
{
    float num = 0, den = 0, mix[3];
    for (int k = 0; k < 3; k++) num += (px[k] - a[k]) * (b[k] - a[k]), den += (b[k] - a[k]) * (b[k] - a[k]);
    *t = den > 1e-6f ? fminf(fmaxf(num / den, 0.0f), 1.0f) : 1.0f;
    for (int k = 0; k < 3; k++) mix[k] = a[k] + *t * (b[k] - a[k]);
    return dist3(px, mix);
}

/* Which of the nd colours a pixel belongs to: the one of the nearest blend, with the background
 * or with another of the colours (then the one with the larger share). */
static int nearest_blend(const float *px, const float *bg, const float (*colours)[3], int nd)
{
    int best = 0;
    float best_d = INFINITY, t;
    for (int i = 0; i < nd; i++) {
        float d = blend_residual(px, bg, colours[i], &t);
        if (d < best_d) best_d = d, best = i;
        for (int j = i + 1; j < nd; j++) {
            d = blend_residual(px, colours[i], colours[j], &t);
            if (d < best_d) best_d = d, best = t > 0.5f ? j : i;
        }
    }
    return best;
}

/* Splits one connected component into blobs by the named colours of its inner pixels (those
 * whose 8 neighbours are all in it): each colour held by enough of them makes a blob, and every
 * pixel of the component joins the blob of the nearest colour. */
static void split_component(clip_context *c, const float *f, int8_t *blob_of, const component_span *span, int id,
                            frame_info *fi)
{
    int w = c->w, h = c->h, counts[VD_COLOUR_COUNT] = {0}, total = 0;
    double sums[VD_COLOUR_COUNT][3] = {{0}};
    for (int pass = 0; pass < 2 && total < 4; pass++) /* inner pixels first; all of them when too few */
        for (int i = 0; i < span->length; i++) {
            int p = c->pixels[span->start + i], x = p % w, y = p / w, inner = 1;
            for (int dy = -1; dy <= 1 && inner && pass == 0; dy++)
                for (int dx = -1; dx <= 1 && inner; dx++) {
                    int nx = x + dx, ny = y + dy;
                    inner = nx >= 0 && ny >= 0 && nx < w && ny < h && c->component[ny * w + nx] == id;
                }
            if (!inner) continue;
            const float *px = f + 3 * (size_t)p;
            float named[3];
            int k = nearest_colour(px);
            vd_colour_rgb((vd_colour)k, named);
            if (pass == 0 && dist3(px, named) > PURE_COLOUR_DISTANCE) continue; /* a blend of two colours */
            counts[k]++, total++;
            for (int j = 0; j < 3; j++) sums[k][j] += px[j];
        }
    int dominant[3], nd = 0;
    for (int pick = 0; pick < 3; pick++) {
        int best = -1;
        for (int k = 0; k < VD_COLOUR_COUNT; k++) {
            int taken = 0;
            for (int j = 0; j < nd; j++) taken |= dominant[j] == k;
            if (!taken && counts[k] > 0 && (best < 0 || counts[k] > counts[best])) best = k;
        }
        if (best < 0 || (nd > 0 && (counts[best] < 8 || counts[best] < 0.02 * total))) break;
        dominant[nd++] = best;
    }
    if (nd > MAX_BLOBS - fi->count) nd = MAX_BLOBS - fi->count;
    float means[3][3];
    for (int j = 0; j < nd; j++) {
        blob_info *b = &fi->blobs[fi->count + j];
        memset(b, 0, sizeof *b);
        for (int k = 0; k < 3; k++) means[j][k] = b->colour[k] = (float)(sums[dominant[j]][k] / counts[dominant[j]]);
        b->label = nearest_colour(b->colour);
    }
    int members[3] = {0};
    for (int i = 0; i < span->length; i++) {
        int p = c->pixels[span->start + i], best = nearest_blend(f + 3 * (size_t)p, c->bg + 3 * (size_t)p, (const float(*)[3])means, nd);
        blob_of[p] = (int8_t)(fi->count + best);
        members[best]++;
    }
    /* A blob most of whose pixels are far from its colour is clutter (noise), not an object. */
    for (int j = 0; j < nd; j++) fi->blobs[fi->count + j].clutter = counts[dominant[j]] < 0.3 * members[j];
    fi->count += nd;
}

static float luma(const float *rgb) { return 0.299f * rgb[0] + 0.587f * rgb[1] + 0.114f * rgb[2]; }

/* Coverage of each pixel of a blob's box by the blob: the pixel's position between the
 * background and the blob's colour; pixels of other blobs and faint ones count as none. The
 * edge ramp uses luma alone where it differs enough, as video codecs keep colour at half
 * resolution and would blur every edge otherwise. */
static void blob_measure(clip_context *c, const float *f, const int8_t *blob_of, int index, blob_info *b,
                         const int box[4])
{
    int w = c->w, bw = box[2] - box[0], bh = box[3] - box[1];
    float blob_luma = luma(b->colour);
    for (int y = box[1]; y < box[3]; y++)
        for (int x = box[0]; x < box[2]; x++) {
            size_t p = (size_t)y * w + x, q = (size_t)(y - box[1]) * bw + (x - box[0]);
            float a = 0, r = 0;
            if (blob_of[p] == index || blob_of[p] < 0) {
                const float *px = f + 3 * p, *bg = c->bg + 3 * p;
                float num = 0, den = 0;
                for (int k = 0; k < 3; k++) num += (px[k] - bg[k]) * (b->colour[k] - bg[k]), den += (b->colour[k] - bg[k]) * (b->colour[k] - bg[k]);
                a = den > 1e-4f ? fminf(fmaxf(num / den, 0.0f), 1.0f) : 0.0f;
                if (blob_of[p] < 0 && a <= 0.1f) a = 0;
                float contrast = blob_luma - luma(bg);
                r = fabsf(contrast) >= MIN_LUMA_CONTRAST ? fminf(fmaxf((luma(px) - luma(bg)) / contrast, 0.0f), 1.0f) : a;
                if (blob_of[p] < 0 && a == 0) r = 0;
            }
            c->alpha[q] = a;
            c->ramp[q] = r;
        }
    describe(c->alpha, c->ramp, bw, bh, box[0], box[1], b);
    b->shape = classify_shape(b);
}

static float truth_radius(const clip_context *c, int o, int f)
{
    const vd_world_object *ob = &c->t->objects[o];
    return vd_size_radius(ob->size, c->side) * ob->track[f].scale;
}

const char *vd_gap_name(vd_gap g)
{
    static const char *const names[VD_GAP_COUNT] = {"close", "near", "apart"};
    return (unsigned)g < VD_GAP_COUNT ? names[g] : "?";
}

/* The gap class of object o's nearest other object in frame f (clips of two or more objects). */
static vd_gap nearest_gap(const clip_context *c, int o, int f)
{
    float nearest = INFINITY;
    for (int p = 0; p < c->t->object_count; p++) {
        if (p == o) continue;
        const vd_track_point *a = &c->t->objects[o].track[f], *b = &c->t->objects[p].track[f];
        float gap = hypotf(b->x - a->x, b->y - a->y) / (truth_radius(c, o, f) + truth_radius(c, p, f));
        if (gap < nearest) nearest = gap;
    }
    return nearest < 1.0f ? VD_GAP_CLOSE : nearest < 1.5f ? VD_GAP_NEAR : VD_GAP_APART;
}

/* Assigns blobs to objects (each blob to at most one) at the least total cost. */
typedef struct {
    float cost[VD_WORLD_MAX_OBJECTS][MAX_BLOBS];
    int objects, blobs, choice[VD_WORLD_MAX_OBJECTS], best[VD_WORLD_MAX_OBJECTS];
    float best_cost;
} assignment;

#define MISSING_COST 2.5f

static void assign(assignment *a, int o, float so_far, unsigned used)
{
    if (so_far >= a->best_cost) return;
    if (o == a->objects) {
        a->best_cost = so_far;
        memcpy(a->best, a->choice, sizeof a->best);
        return;
    }
    a->choice[o] = -1;
    assign(a, o + 1, so_far + MISSING_COST, used);
    for (int b = 0; b < a->blobs; b++)
        if (!(used & (1u << b)) && a->cost[o][b] < MISSING_COST) {
            a->choice[o] = b;
            assign(a, o + 1, so_far + a->cost[o][b], used | (1u << b));
        }
}

static void match_objects(clip_context *c, int f, const float last_seen[][2])
{
    frame_info *fi = &c->info[f];
    assignment a = {.objects = c->t->object_count, .blobs = fi->count, .best_cost = INFINITY};
    for (int o = 0; o < a.objects; o++) {
        const vd_world_object *ob = &c->t->objects[o];
        float expected = truth_radius(c, o, f);
        for (int b = 0; b < fi->count; b++) {
            const blob_info *bl = &fi->blobs[b];
            float ratio = bl->r / expected;
            if (bl->shape < 0 || bl->clutter || ratio < 0.5f || ratio > 2.0f) { a.cost[o][b] = INFINITY; continue; }
            float cost = (bl->label != (int)ob->colour) * 1.0f + (bl->shape != (int)ob->shape) * 0.6f +
                         0.5f * fminf(1.0f, fabsf(logf(ratio)) / logf(2.0f));
            if (!isnan(last_seen[o][0]))
                cost += 0.4f * fminf(1.0f, hypotf(bl->cx - last_seen[o][0], bl->cy - last_seen[o][1]) / (0.2f * c->side));
            a.cost[o][b] = cost;
        }
    }
    assign(&a, 0, 0, 0);
    memcpy(fi->match, a.best, sizeof fi->match);
}

/* The background is right when the pixels outside the matched objects are closest to it among
 * all backgrounds and nearly all of them lie close to it. */
static int judge_background(const clip_context *c, const float *f, const int8_t *blob_of, const frame_info *fi)
{
    int matched[MAX_BLOBS] = {0};
    for (int o = 0; o < c->t->object_count; o++)
        if (fi->match[o] >= 0) matched[fi->match[o]] = 1;
    double mean[VD_BACKGROUND_COUNT] = {0};
    long considered = 0, close = 0;
    size_t plane = (size_t)c->w * c->h;
    for (size_t p = 0; p < plane; p++) {
        if (blob_of[p] >= 0 && matched[blob_of[p]]) continue;
        considered++;
        for (int b = 0; b < VD_BACKGROUND_COUNT; b++) mean[b] += dist3(f + 3 * p, c->backgrounds + b * plane * 3 + 3 * p);
        close += dist3(f + 3 * p, c->bg + 3 * p) <= FOREGROUND_DISTANCE;
    }
    if (!considered) return 0;
    for (int b = 0; b < VD_BACKGROUND_COUNT; b++)
        if (mean[b] < mean[c->t->background]) return 0;
    return close >= 0.9 * considered;
}

/* Keeps each blob's largest 8-connected piece: pixels where two objects blend can look like a
 * third colour's edge and would otherwise scatter into that colour's blob. */
static void keep_largest_pieces(clip_context *c, int8_t *blob_of, int blobs)
{
    int w = c->w, h = c->h, n = w * h, largest[MAX_BLOBS] = {0}, largest_start[MAX_BLOBS] = {0};
    uint8_t *seen = c->foreground;
    memset(seen, 0, (size_t)n);
    int listed = 0;
    for (int p = 0; p < n; p++) {
        if (blob_of[p] < 0 || seen[p]) continue;
        int b = blob_of[p], top = 0, start = listed;
        c->stack[top++] = p;
        seen[p] = 1;
        while (top) {
            int q = c->stack[--top], x = q % w, y = q / w;
            c->pixels[listed++] = q;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int nx = x + dx, ny = y + dy, r = ny * w + nx;
                    if (nx >= 0 && ny >= 0 && nx < w && ny < h && !seen[r] && blob_of[r] == b) seen[r] = 1, c->stack[top++] = r;
                }
        }
        if (listed - start > largest[b]) largest[b] = listed - start, largest_start[b] = start;
    }
    for (int i = 0; i < listed; i++) seen[c->pixels[i]] = 0;
    for (int b = 0; b < blobs; b++)
        for (int i = 0; i < largest[b]; i++) seen[c->pixels[largest_start[b] + i]] = 1;
    for (int p = 0; p < n; p++)
        if (blob_of[p] >= 0 && !seen[p]) blob_of[p] = -1;
}

static void analyse_frame(clip_context *c, int f)
{
    int w = c->w, h = c->h, n = w * h;
    const float *frame = c->video + (size_t)f * n * 3;
    int8_t *blob_of = c->blob_of + (size_t)f * n;
    frame_info *fi = &c->info[f];
    fi->count = 0;
    for (int p = 0; p < n; p++) {
        c->foreground[p] = dist3(frame + 3 * (size_t)p, c->bg + 3 * (size_t)p) > FOREGROUND_DISTANCE;
        c->component[p] = -1;
        blob_of[p] = -1;
    }
    /* 8-connected components of the foreground; pixels[] lists each component's pixels in turn. */
    component_span *spans = NULL;
    int nspans = 0, cap = 0, listed = 0;
    for (int p = 0; p < n; p++) {
        if (!c->foreground[p] || c->component[p] >= 0) continue;
        if (nspans == cap) cap = cap ? 2 * cap : 64, spans = vd_realloc(spans, (size_t)cap * sizeof *spans);
        int top = 0, start = listed;
        c->stack[top++] = p;
        c->component[p] = nspans;
        while (top) {
            int q = c->stack[--top], x = q % w, y = q / w;
            c->pixels[listed++] = q;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int nx = x + dx, ny = y + dy;
                    if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
                    int r = ny * w + nx;
                    if (c->foreground[r] && c->component[r] < 0) c->component[r] = nspans, c->stack[top++] = r;
                }
        }
        spans[nspans++] = (component_span){start, listed - start};
    }
    /* Largest first. */
    component_span *sorted = vd_malloc((size_t)(nspans ? nspans : 1) * sizeof *sorted);
    memcpy(sorted, spans, (size_t)nspans * sizeof *spans);
    qsort(sorted, (size_t)nspans, sizeof *sorted, compare_span_length);
    for (int i = 0; i < nspans && fi->count < MAX_BLOBS && sorted[i].length >= MIN_BLOB_PIXELS; i++)
        split_component(c, frame, blob_of, &sorted[i], c->component[c->pixels[sorted[i].start]], fi);
    free(sorted);
    free(spans);
    keep_largest_pieces(c, blob_of, fi->count);
    /* Boxes, then measurements. */
    int boxes[MAX_BLOBS][4];
    for (int b = 0; b < fi->count; b++) boxes[b][0] = w, boxes[b][1] = h, boxes[b][2] = boxes[b][3] = 0;
    for (int p = 0; p < n; p++) {
        int b = blob_of[p];
        if (b < 0) continue;
        int x = p % w, y = p / w;
        if (x < boxes[b][0]) boxes[b][0] = x;
        if (y < boxes[b][1]) boxes[b][1] = y;
        if (x + 1 > boxes[b][2]) boxes[b][2] = x + 1;
        if (y + 1 > boxes[b][3]) boxes[b][3] = y + 1;
    }
    for (int b = 0; b < fi->count; b++) {
        int *box = boxes[b];
        box[0] = box[0] >= 2 ? box[0] - 2 : 0, box[1] = box[1] >= 2 ? box[1] - 2 : 0;
        box[2] = box[2] + 2 <= w ? box[2] + 2 : w, box[3] = box[3] + 2 <= h ? box[3] + 2 : h;
        blob_measure(c, frame, blob_of, b, &fi->blobs[b], box);
    }
}

/* Least-squares slope of v over t. */
static double slope(const int *t, const double *v, int n)
{
    double mt = 0, mv = 0, num = 0, den = 0;
    for (int i = 0; i < n; i++) mt += t[i], mv += v[i];
    mt /= n, mv /= n;
    for (int i = 0; i < n; i++) num += (t[i] - mt) * (v[i] - mv), den += (t[i] - mt) * (t[i] - mt);
    return den > 0 ? num / den : 0;
}

/* One object's track over the frames where it was found (measured) and the truth there. */
typedef struct {
    int n, t[VD_WORLD_MAX_FRAMES];
    double x[VD_WORLD_MAX_FRAMES], y[VD_WORLD_MAX_FRAMES], log_r[VD_WORLD_MAX_FRAMES], angle[VD_WORLD_MAX_FRAMES];
} track_series;

/* Mean step length over consecutive frames, and mean signed turning per step (radians; positive
 * is clockwise on screen). */
static void path_stats(const track_series *s, double *step, double *turning)
{
    double sum = 0, turn = 0;
    int steps = 0, turns = 0;
    for (int i = 0; i + 1 < s->n; i++) {
        if (s->t[i + 1] != s->t[i] + 1) continue;
        double dx = s->x[i + 1] - s->x[i], dy = s->y[i + 1] - s->y[i];
        sum += hypot(dx, dy), steps++;
        if (i + 2 < s->n && s->t[i + 2] == s->t[i] + 2) {
            double ex = s->x[i + 2] - s->x[i + 1], ey = s->y[i + 2] - s->y[i + 1];
            if (hypot(dx, dy) > 0.25 && hypot(ex, ey) > 0.25) turn += atan2(dx * ey - dy * ex, dx * ex + dy * ey), turns++;
        }
    }
    *step = steps ? sum / steps : 0;
    *turning = turns ? turn / turns : 0;
}

static int has_reversal(const track_series *s)
{
    int last = 0;
    for (int i = 0; i + 1 < s->n; i++) {
        double dy = s->y[i + 1] - s->y[i];
        if (fabs(dy) < 0.5) continue;
        int sign = dy > 0 ? 1 : -1;
        if (last && sign != last) return 1;
        last = sign;
    }
    return 0;
}

/* Judges direction and speed of one object from its measured and true series. */
static void judge_motion(const clip_context *c, vd_motion motion, vd_shape shape, const track_series *m,
                         const track_series *e, int *direction_ok, double *speed_error)
{
    double vnom = VD_WORLD_SPEED * c->side;
    double vmx = slope(m->t, m->x, m->n), vmy = slope(m->t, m->y, m->n), vm = hypot(vmx, vmy);
    double vex = slope(e->t, e->x, e->n), vey = slope(e->t, e->y, e->n), ve = hypot(vex, vey);
    double gm = slope(m->t, m->log_r, m->n), ge = slope(e->t, e->log_r, e->n);
    double step_m, step_e, turn_m, turn_e;
    path_stats(m, &step_m, &turn_m);
    path_stats(e, &step_e, &turn_e);
    *direction_ok = 0;
    *speed_error = 1;
    switch (motion) {
    case VD_MOTION_STAY:
        *direction_ok = vm <= 0.3 * vnom && fabs(gm) <= 0.3 * VD_WORLD_GROWTH_RATE;
        *speed_error = vm / vnom;
        break;
    case VD_MOTION_GROW: case VD_MOTION_SHRINK:
        *direction_ok = gm * (ge > 0 ? 1 : -1) >= 0.5 * fabs(ge) && vm <= 0.5 * vnom;
        *speed_error = fabs(gm - ge) / fabs(ge);
        break;
    case VD_MOTION_ROTATE: {
        int k = orientation_harmonic(shape);
        if (!k) break;
        double period = 2 * PI / k, unwrapped[VD_WORLD_MAX_FRAMES];
        for (int i = 0; i < m->n; i++) {
            double a = m->angle[i];
            if (i > 0) a = unwrapped[i - 1] + remainder(a - unwrapped[i - 1], period);
            unwrapped[i] = a;
        }
        double wm = slope(m->t, unwrapped, m->n), we = slope(e->t, e->angle, e->n);
        *direction_ok = wm * (we > 0 ? 1 : -1) >= 0.5 * fabs(we) && vm <= 0.5 * vnom;
        *speed_error = fabs(wm - we) / fabs(we);
        break;
    }
    case VD_MOTION_ORBIT:
        *direction_ok = turn_m * (turn_e > 0 ? 1 : -1) >= 0.5 * fabs(turn_e) && step_m >= 0.5 * step_e;
        *speed_error = step_e > 0 ? fabs(step_m - step_e) / step_e : 1;
        break;
    case VD_MOTION_BOUNCE: {
        double lo_m = INFINITY, hi_m = -INFINITY, lo_e = INFINITY, hi_e = -INFINITY;
        for (int i = 0; i < m->n; i++) lo_m = fmin(lo_m, m->y[i]), hi_m = fmax(hi_m, m->y[i]);
        for (int i = 0; i < e->n; i++) lo_e = fmin(lo_e, e->y[i]), hi_e = fmax(hi_e, e->y[i]);
        *direction_ok = hi_m - lo_m >= 0.5 * (hi_e - lo_e) && fabs(vmx) <= 0.5 * vnom && (!has_reversal(e) || has_reversal(m));
        *speed_error = step_e > 0 ? fabs(step_m - step_e) / step_e : 1;
        break;
    }
    default: /* straight lines */
        if (ve <= 0) break;
        *direction_ok = (vmx * vex + vmy * vey) / ve >= 0.5 * ve && fabs(vmx * vey - vmy * vex) / ve <= 0.35 * ve;
        *speed_error = fabs(vm - ve) / ve;
    }
}

static double median(double *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double tmp = v[j];
            v[j] = v[j - 1], v[j - 1] = tmp;
        }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void add(vd_eval_clip *out, vd_rate r, int hit)
{
    out->trials[r] += 1;
    out->hits[r] += hit != 0;
}

static int size_class(const clip_context *c, float radius, float scale)
{
    int best = 0;
    float best_d = INFINITY;
    for (int s = 0; s < VD_SIZE_COUNT; s++) {
        float d = fabsf(logf(radius / scale) - logf(vd_size_radius((vd_size)s, c->side)));
        if (d < best_d) best_d = d, best = s;
    }
    return best;
}

static void judge_object(clip_context *c, int o, vd_eval_clip *out, int image_given)
{
    const vd_clip_truth *t = c->t;
    const vd_world_object *ob = &t->objects[o];
    int counted[VD_WORLD_MAX_FRAMES], found[VD_WORLD_MAX_FRAMES], ncounted = 0;
    for (int f = 0; f < c->frames; f++) {
        counted[f] = ob->track[f].visible >= VISIBLE_ENOUGH && truth_radius(c, o, f) >= 2.5f;
        found[f] = counted[f] && c->info[f].match[o] >= 0;
        ncounted += counted[f];
    }
    /* Content, per counted frame. */
    for (int f = 0; f < c->frames; f++) {
        if (!counted[f]) continue;
        const blob_info *b = found[f] ? &c->info[f].blobs[c->info[f].match[o]] : NULL;
        add(out, VD_RATE_OBJECT_FOUND, b != NULL);
        add(out, VD_RATE_COLOUR, b && b->label == (int)ob->colour);
        if (ob->track[f].visible >= VISIBLE_WHOLE) {
            int shape_ok = b && b->shape == (int)ob->shape;
            add(out, VD_RATE_SHAPE, shape_ok);
            out->shape_judged[ob->shape][b && b->shape >= 0 ? b->shape : VD_SHAPE_COUNT] += 1;
            out->shape_by_size[ob->size][0] += shape_ok, out->shape_by_size[ob->size][1] += 1;
            out->shape_by_objects[t->object_count - 1][0] += shape_ok, out->shape_by_objects[t->object_count - 1][1] += 1;
            out->shape_by_motion[ob->motion][0] += shape_ok, out->shape_by_motion[ob->motion][1] += 1;
            if (t->object_count > 1) {
                vd_gap g = nearest_gap(c, o, f);
                out->shape_by_gap[g][0] += shape_ok, out->shape_by_gap[g][1] += 1;
                if (b && b->shape >= 0 && !shape_ok && b->label == (int)ob->colour) {
                    int another = 0; /* this object's own shape is not b's: the shape is wrong */
                    for (int p = 0; p < t->object_count; p++) another |= (int)t->objects[p].shape == b->shape;
                    out->shape_misbound[0] += 1;
                    out->shape_misbound[1] += another;
                    out->shape_misbound[2] += 1 - pow(1 - 1.0 / VD_SHAPE_COUNT, t->object_count - 1);
                }
            }
            add(out, VD_RATE_SIZE, b && size_class(c, b->r, ob->track[f].scale) == (int)ob->size);
        }
        add(out, VD_RATE_SHARPNESS, b && b->edge_width <= MAX_EDGE_WIDTH);
        if (b) out->edge_width_sum += b->edge_width, out->edge_width_count++;
    }
    /* Identity and frame order over pairs and triples of counted frames. */
    int k = orientation_harmonic(ob->shape);
    float eps = 0.005f * c->side;
    for (int f = 0; f + 1 < c->frames; f++) {
        if (!counted[f] || !counted[f + 1]) continue;
        int ok = found[f] && found[f + 1];
        if (ok) {
            const blob_info *a = &c->info[f].blobs[c->info[f].match[o]], *b = &c->info[f + 1].blobs[c->info[f + 1].match[o]];
            const vd_track_point *p = &ob->track[f], *q = &ob->track[f + 1];
            ok = a->label == b->label &&
                 hypotf(b->cx - a->cx, b->cy - a->cy) <= 2 * hypotf(q->x - p->x, q->y - p->y) + 0.05f * c->side;
        }
        add(out, VD_RATE_IDENTITY, ok);
        if (f + 2 >= c->frames || !counted[f + 2]) continue;
        ok = found[f] && found[f + 1] && found[f + 2];
        if (ok) {
            const blob_info *a = &c->info[f].blobs[c->info[f].match[o]], *b = &c->info[f + 1].blobs[c->info[f + 1].match[o]];
            const blob_info *d = &c->info[f + 2].blobs[c->info[f + 2].match[o]];
            const vd_track_point *p = &ob->track[f], *q = &ob->track[f + 1], *s = &ob->track[f + 2];
            float d1 = hypotf(b->cx - a->cx, b->cy - a->cy) + fabsf(b->r - a->r);
            float d2 = hypotf(d->cx - a->cx, d->cy - a->cy) + fabsf(d->r - a->r);
            float rp = truth_radius(c, o, f), rq = truth_radius(c, o, f + 1), rs = truth_radius(c, o, f + 2);
            float t1 = hypotf(q->x - p->x, q->y - p->y) + fabsf(rq - rp), t2 = hypotf(s->x - p->x, s->y - p->y) + fabsf(rs - rp);
            ok = d1 <= d2 + eps || t1 > t2 + eps;
        }
        add(out, VD_RATE_FRAME_ORDER, ok);
    }
    if (ncounted < 4) return;
    /* Motion: direction, speed, smoothness. */
    track_series m = {0}, e = {0};
    for (int f = 0; f < c->frames; f++) {
        if (!found[f]) continue;
        const blob_info *b = &c->info[f].blobs[c->info[f].match[o]];
        const vd_track_point *p = &ob->track[f];
        m.t[m.n] = e.t[e.n] = f;
        m.x[m.n] = b->cx, m.y[m.n] = b->cy, m.log_r[m.n] = log(fmax(b->r, 0.5));
        m.angle[m.n] = k ? -b->phase[k] / k : 0;
        e.x[e.n] = p->x, e.y[e.n] = p->y, e.log_r[e.n] = log(truth_radius(c, o, f)), e.angle[e.n] = p->angle;
        m.n++, e.n++;
    }
    int direction_ok = 0;
    double speed_error = 1;
    if (m.n >= 3) judge_motion(c, ob->motion, ob->shape, &m, &e, &direction_ok, &speed_error);
    add(out, VD_RATE_DIRECTION, direction_ok);
    out->direction_by_motion[ob->motion][0] += direction_ok != 0, out->direction_by_motion[ob->motion][1] += 1;
    add(out, VD_RATE_SPEED, m.n >= 3 && speed_error <= MAX_SPEED_ERROR);
    if (m.n >= 3) out->speed_error_sum += fmin(speed_error, 10.0), out->speed_error_count++;
    double deviations[VD_WORLD_MAX_FRAMES];
    int triples = 0, judged = 0;
    for (int f = 0; f + 2 < c->frames; f++) {
        if (!counted[f] || !counted[f + 1] || !counted[f + 2]) continue;
        triples++;
        if (!found[f] || !found[f + 1] || !found[f + 2]) continue;
        const blob_info *a = &c->info[f].blobs[c->info[f].match[o]], *b = &c->info[f + 1].blobs[c->info[f + 1].match[o]];
        const blob_info *d = &c->info[f + 2].blobs[c->info[f + 2].match[o]];
        const vd_track_point *p = &ob->track[f], *q = &ob->track[f + 1], *s = &ob->track[f + 2];
        double am = hypot(d->cx - 2 * b->cx + a->cx, d->cy - 2 * b->cy + a->cy);
        double ae = hypot(s->x - 2 * q->x + p->x, s->y - 2 * q->y + p->y);
        deviations[judged++] = fabs(am - ae);
    }
    if (triples) add(out, VD_RATE_SMOOTHNESS, 2 * judged >= triples && median(deviations, judged) <= MAX_ACCEL_DEVIATION * c->side);
    if (image_given && counted[0]) {
        const blob_info *b = found[0] ? &c->info[0].blobs[c->info[0].match[o]] : NULL;
        int starts = b && hypotf(b->cx - ob->track[0].x, b->cy - ob->track[0].y) <= MAX_START_OFFSET * c->side;
        add(out, VD_RATE_I2V_MOTION, starts && direction_ok);
    }
}

/* ---- features for the Fréchet distance ---- */

static void clip_features(const clip_context *c, vd_eval_clip *out)
{
    float *v = out->features;
    memset(v, 0, VD_EVAL_FEATURES * sizeof(float));
    int w = c->w, h = c->h, n = w * h, frames = c->frames;
    double temporal[VD_WORLD_MAX_FRAMES] = {0};
    int blobs = 0, matched = 0, steps = 0, accels = 0, widths = 0;
    for (int f = 0; f < frames; f++) {
        const float *fr = c->video + (size_t)f * n * 3;
        const frame_info *fi = &c->info[f];
        double mean[3] = {0}, sq[3] = {0}, grad = 0;
        for (int p = 0; p < n; p++) {
            for (int k = 0; k < 3; k++) mean[k] += fr[3 * p + k], sq[k] += fr[3 * p + k] * fr[3 * p + k];
            int x = p % w, y = p / w;
            if (x + 1 < w && y + 1 < h) {
                float l = fr[3 * p] + fr[3 * p + 1] + fr[3 * p + 2];
                float lx = fr[3 * (p + 1)] + fr[3 * (p + 1) + 1] + fr[3 * (p + 1) + 2];
                float ly = fr[3 * (p + w)] + fr[3 * (p + w) + 1] + fr[3 * (p + w) + 2];
                grad += hypotf(lx - l, ly - l) / 3;
            }
            if (f + 1 < frames)
                for (int k = 0; k < 3; k++) temporal[f] += fabsf(fr[(size_t)n * 3 + 3 * p + k] - fr[3 * p + k]) / 3;
        }
        for (int k = 0; k < 3; k++) {
            mean[k] /= n;
            v[10 + k] += (float)(mean[k] / frames);
            v[13 + k] += (float)(sqrt(fmax(sq[k] / n - mean[k] * mean[k], 0)) / frames);
        }
        v[16] += (float)(10 * grad / n / frames);
        temporal[f] /= n;
        blobs += fi->count;
        for (int b = 0; b < fi->count; b++) {
            v[fi->blobs[b].label] += (float)(5 * fi->blobs[b].area / n / frames);
            v[20] += fi->blobs[b].r / c->side * 5;
        }
        for (int o = 0; o < c->t->object_count; o++) {
            if (fi->match[o] < 0) continue;
            const blob_info *b = &fi->blobs[fi->match[o]];
            matched++;
            if (b->shape >= 0) v[23 + b->shape] += 1;
            v[29] += b->edge_width, widths++;
            if (f + 1 < frames && c->info[f + 1].match[o] >= 0) {
                const blob_info *q = &c->info[f + 1].blobs[c->info[f + 1].match[o]];
                v[21] += hypotf(q->cx - b->cx, q->cy - b->cy) / c->side * 60, steps++;
                if (f + 2 < frames && c->info[f + 2].match[o] >= 0) {
                    const blob_info *s = &c->info[f + 2].blobs[c->info[f + 2].match[o]];
                    v[22] += hypotf(s->cx - 2 * q->cx + b->cx, s->cy - 2 * q->cy + b->cy) / c->side * 100, accels++;
                }
            }
        }
        v[30] += (float)fi->background_ok / frames;
    }
    double tm = 0, tv = 0;
    for (int f = 0; f + 1 < frames; f++) tm += temporal[f];
    tm = frames > 1 ? tm / (frames - 1) : 0;
    for (int f = 0; f + 1 < frames; f++) tv += (temporal[f] - tm) * (temporal[f] - tm);
    v[17] = (float)(100 * tm);
    v[18] = (float)(100 * (frames > 2 ? sqrt(tv / (frames - 2)) : 0));
    v[19] = (float)blobs / frames / 3;
    if (blobs) v[20] /= blobs;
    if (steps) v[21] /= steps;
    if (accels) v[22] /= accels;
    for (int s = 0; s < VD_SHAPE_COUNT && matched; s++) v[23 + s] /= 2.0f * matched;
    if (widths) v[29] /= widths;
    v[31] = (float)matched / (frames * c->t->object_count);
}

/* ---- the whole clip ---- */

static int judge_clip(const vd_clip_truth *t, const float *video, int count, int width, int height,
                      const float *image, vd_eval_clip *out, char *err, size_t errlen)
{
    if (count != t->frames || width != t->width || height != t->height)
        return vd_fail(err, errlen, "video is %d frames of %dx%d but its truth has %d frames of %dx%d", count, width,
                    height, t->frames, t->width, t->height);
    memset(out, 0, sizeof *out);
    out->psnr = NAN;
    size_t n = (size_t)width * height;
    clip_context c = {.t = t, .w = width, .h = height, .side = width < height ? width : height, .frames = count, .video = video};
    c.backgrounds = vd_malloc(VD_BACKGROUND_COUNT * n * 3 * sizeof(float));
    for (int b = 0; b < VD_BACKGROUND_COUNT; b++) vd_world_render_background((vd_background)b, width, height, c.backgrounds + b * n * 3);
    c.bg = c.backgrounds + t->background * n * 3;
    c.blob_of = vd_malloc((size_t)count * n);
    c.foreground = vd_malloc(n);
    c.component = vd_malloc(n * sizeof(int));
    c.pixels = vd_malloc(n * sizeof(int));
    c.stack = vd_malloc(n * sizeof(int));
    c.alpha = vd_malloc(n * sizeof(float));
    c.ramp = vd_malloc(n * sizeof(float));
    c.info = vd_calloc((size_t)count, sizeof(frame_info));

    float last_seen[VD_WORLD_MAX_OBJECTS][2];
    for (int o = 0; o < VD_WORLD_MAX_OBJECTS; o++) last_seen[o][0] = last_seen[o][1] = NAN;
    for (int f = 0; f < count; f++) {
        analyse_frame(&c, f);
        match_objects(&c, f, (const float(*)[2])last_seen);
        frame_info *fi = &c.info[f];
        for (int o = 0; o < t->object_count; o++)
            if (fi->match[o] >= 0) last_seen[o][0] = fi->blobs[fi->match[o]].cx, last_seen[o][1] = fi->blobs[fi->match[o]].cy;
        fi->background_ok = judge_background(&c, video + (size_t)f * n * 3, c.blob_of + (size_t)f * n, fi);
        add(out, VD_RATE_BACKGROUND, fi->background_ok);
    }
    /* Flicker: change of everything outside the objects, and of the objects' colours. */
    for (int f = 0; f + 1 < count; f++) {
        const int8_t *a = c.blob_of + (size_t)f * n, *b = c.blob_of + (size_t)(f + 1) * n;
        const frame_info *fa = &c.info[f], *fb = &c.info[f + 1];
        int in_a[MAX_BLOBS] = {0}, in_b[MAX_BLOBS] = {0};
        for (int o = 0; o < t->object_count; o++) {
            if (fa->match[o] >= 0) in_a[fa->match[o]] = 1;
            if (fb->match[o] >= 0) in_b[fb->match[o]] = 1;
        }
        double change = 0, colour_change = 0;
        long pixels = 0;
        int objects = 0;
        for (size_t p = 0; p < n; p++) {
            if ((a[p] >= 0 && in_a[a[p]]) || (b[p] >= 0 && in_b[b[p]])) continue;
            const float *x = video + (size_t)f * n * 3 + 3 * p, *y = x + n * 3;
            change += (fabsf(x[0] - y[0]) + fabsf(x[1] - y[1]) + fabsf(x[2] - y[2])) / 3, pixels++;
        }
        for (int o = 0; o < t->object_count; o++)
            if (fa->match[o] >= 0 && fb->match[o] >= 0)
                colour_change += dist3(fa->blobs[fa->match[o]].colour, fb->blobs[fb->match[o]].colour), objects++;
        double flicker = (pixels ? change / pixels : 0) + 0.5 * (objects ? colour_change / objects : 0);
        add(out, VD_RATE_NO_FLICKER, flicker <= MAX_FLICKER);
    }
    if (image) {
        double se = 0;
        for (size_t p = 0; p < n; p++)
            for (int k = 0; k < 3; k++) {
                double d = video[3 * p + k] - (image[k * n + p] + 1) / 2;
                se += d * d;
            }
        double mse = se / (3 * n);
        out->psnr = mse > 1e-10 ? 10 * log10(1 / mse) : 100;
    }
    for (int o = 0; o < t->object_count; o++) judge_object(&c, o, out, image != NULL);
    clip_features(&c, out);

    free(c.backgrounds);
    free(c.blob_of);
    free(c.foreground);
    free(c.component);
    free(c.pixels);
    free(c.stack);
    free(c.alpha);
    free(c.ramp);
    free(c.info);
    return 0;
}

static int check_size(int count, int width, int height, char *err, size_t errlen)
{
    if (count < 1 || count > VD_WORLD_MAX_FRAMES || width < 8 || height < 8 || width > VD_WORLD_MAX_SIDE ||
        height > VD_WORLD_MAX_SIDE)
        return vd_fail(err, errlen, "video of %d frames of %dx%d is outside what the evaluator judges", count, width, height);
    return 0;
}

int vd_eval_clip_frames(const vd_clip_truth *t, const float *frames, int count, int width, int height,
                        const float *image, vd_eval_clip *out, char *err, size_t errlen)
{
    if (check_size(count, width, height, err, errlen)) return -1;
    size_t n = (size_t)width * height;
    float *video = vd_malloc((size_t)count * n * 3 * sizeof(float));
    for (int f = 0; f < count; f++)
        for (size_t p = 0; p < n; p++)
            for (int k = 0; k < 3; k++) {
                float v = (frames[((size_t)f * 3 + k) * n + p] + 1) / 2;
                video[((size_t)f * n + p) * 3 + k] = v > 0 ? (v < 1 ? v : 1) : 0; /* NaN becomes 0 */
            }
    int rc = judge_clip(t, video, count, width, height, image, out, err, errlen);
    free(video);
    return rc;
}

int vd_eval_clip_rgb8(const vd_clip_truth *t, const uint8_t *rgb, int count, int width, int height,
                      const float *image, vd_eval_clip *out, char *err, size_t errlen)
{
    if (check_size(count, width, height, err, errlen)) return -1;
    size_t total = (size_t)count * width * height * 3;
    float *video = vd_malloc(total * sizeof(float));
    for (size_t i = 0; i < total; i++) video[i] = rgb[i] / 255.0f;
    int rc = judge_clip(t, video, count, width, height, image, out, err, errlen);
    free(video);
    return rc;
}

/* ---- sets, the Fréchet distance, the summary ---- */

struct vd_eval_set {
    int count, cap;
    vd_eval_clip *clips;
};

vd_eval_set *vd_eval_set_new(void) { return vd_calloc(1, sizeof(vd_eval_set)); }

void vd_eval_set_add(vd_eval_set *s, const vd_eval_clip *c)
{
    if (s->count == s->cap) s->cap = s->cap ? 2 * s->cap : 16, s->clips = vd_realloc(s->clips, (size_t)s->cap * sizeof *s->clips);
    s->clips[s->count++] = *c;
}

void vd_eval_set_free(vd_eval_set *s)
{
    if (!s) return;
    free(s->clips);
    free(s);
}

/* Eigenvalues (into values) and eigenvectors (columns of vectors) of the symmetric n x n matrix
 * a, which is destroyed: cyclic Jacobi rotations until the off-diagonal part vanishes. */
static void jacobi_eigen(double *a, int n, double *values, double *vectors)
{
    for (int i = 0; i < n * n; i++) vectors[i] = 0;
    for (int i = 0; i < n; i++) vectors[i * n + i] = 1;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, total = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) *(i == j ? &total : &off) += a[i * n + j] * a[i * n + j];
        if (off <= 1e-22 * (total + off) || off < 1e-300) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = a[p * n + q];
                if (fabs(apq) < 1e-300) continue;
                double theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double cs = 1 / sqrt(t * t + 1), sn = t * cs;
                for (int k = 0; k < n; k++) { /* columns p, q */
                    double akp = a[k * n + p], akq = a[k * n + q];
                    a[k * n + p] = cs * akp - sn * akq, a[k * n + q] = sn * akp + cs * akq;
                }
                for (int k = 0; k < n; k++) { /* rows p, q */
                    double apk = a[p * n + k], aqk = a[q * n + k];
                    a[p * n + k] = cs * apk - sn * aqk, a[q * n + k] = sn * apk + cs * aqk;
                }
                for (int k = 0; k < n; k++) {
                    double vkp = vectors[k * n + p], vkq = vectors[k * n + q];
                    vectors[k * n + p] = cs * vkp - sn * vkq, vectors[k * n + q] = sn * vkp + cs * vkq;
                }
            }
    }
    for (int i = 0; i < n; i++) values[i] = a[i * n + i];
}

static void mean_and_covariance(const vd_eval_set *s, double *mean, double *cov)
{
    const int d = VD_EVAL_FEATURES;
    memset(mean, 0, d * sizeof(double));
    memset(cov, 0, (size_t)d * d * sizeof(double));
    for (int c = 0; c < s->count; c++)
        for (int i = 0; i < d; i++) mean[i] += s->clips[c].features[i] / (double)s->count;
    for (int c = 0; c < s->count; c++)
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++)
                cov[i * d + j] += (s->clips[c].features[i] - mean[i]) * (s->clips[c].features[j] - mean[j]);
    for (int i = 0; i < d * d; i++) cov[i] /= s->count > 1 ? s->count - 1 : 1;
}

double vd_eval_frechet(const vd_eval_set *a, const vd_eval_set *b)
{
    if (!a->count || !b->count) return NAN;
    const int d = VD_EVAL_FEATURES;
    double ma[VD_EVAL_FEATURES], mb[VD_EVAL_FEATURES], values[VD_EVAL_FEATURES];
    double *ca = vd_malloc(sizeof(double) * d * d), *cb = vd_malloc(sizeof(double) * d * d);
    double *vec = vd_malloc(sizeof(double) * d * d), *root = vd_malloc(sizeof(double) * d * d);
    double *tmp = vd_malloc(sizeof(double) * d * d), *prod = vd_malloc(sizeof(double) * d * d);
    mean_and_covariance(a, ma, ca);
    mean_and_covariance(b, mb, cb);
    double result = 0;
    for (int i = 0; i < d; i++) result += (ma[i] - mb[i]) * (ma[i] - mb[i]) + ca[i * d + i] + cb[i * d + i];
    /* root = sqrt(ca) from its eigendecomposition. */
    memcpy(tmp, ca, sizeof(double) * d * d);
    jacobi_eigen(tmp, d, values, vec);
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double sum = 0;
            for (int k = 0; k < d; k++) sum += vec[i * d + k] * sqrt(fmax(values[k], 0)) * vec[j * d + k];
            root[i * d + j] = sum;
        }
    /* tr sqrt(root * cb * root): the sum of the square roots of its eigenvalues. */
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double sum = 0;
            for (int k = 0; k < d; k++) sum += root[i * d + k] * cb[k * d + j];
            tmp[i * d + j] = sum;
        }
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double sum = 0;
            for (int k = 0; k < d; k++) sum += tmp[i * d + k] * root[k * d + j];
            prod[i * d + j] = sum;
        }
    for (int i = 0; i < d; i++) /* symmetrise against rounding */
        for (int j = 0; j < i; j++) prod[i * d + j] = prod[j * d + i] = 0.5 * (prod[i * d + j] + prod[j * d + i]);
    jacobi_eigen(prod, d, values, vec);
    for (int i = 0; i < d; i++) result -= 2 * sqrt(fmax(values[i], 0));
    free(ca), free(cb), free(vec), free(root), free(tmp), free(prod);
    return fmax(result, 0);
}

void vd_eval_summarize(const vd_eval_set *s, const vd_eval_set *reference, vd_eval_summary *out)
{
    memset(out, 0, sizeof *out);
    out->clips = s->count;
    double hits[VD_RATE_COUNT] = {0}, trials[VD_RATE_COUNT] = {0}, speed = 0, width = 0, psnr = 0;
    int speeds = 0, widths = 0, psnrs = 0;
    for (int c = 0; c < s->count; c++) {
        const vd_eval_clip *clip = &s->clips[c];
        for (int r = 0; r < VD_RATE_COUNT; r++) hits[r] += clip->hits[r], trials[r] += clip->trials[r];
        speed += clip->speed_error_sum, speeds += clip->speed_error_count;
        width += clip->edge_width_sum, widths += clip->edge_width_count;
        if (!isnan(clip->psnr)) psnr += clip->psnr, psnrs++;
        for (int a = 0; a < VD_SHAPE_COUNT; a++)
            for (int j = 0; j <= VD_SHAPE_COUNT; j++) out->shape_confusion[a][j] += clip->shape_judged[a][j];
        for (int j = 0; j < 2; j++) {
            for (int m = 0; m < VD_MOTION_COUNT; m++) {
                out->direction_by_motion[m][j] += clip->direction_by_motion[m][j];
                out->shape_by_motion[m][j] += clip->shape_by_motion[m][j];
            }
            for (int z = 0; z < VD_SIZE_COUNT; z++) out->shape_by_size[z][j] += clip->shape_by_size[z][j];
            for (int g = 0; g < VD_GAP_COUNT; g++) out->shape_by_gap[g][j] += clip->shape_by_gap[g][j];
            for (int n = 0; n < VD_WORLD_MAX_OBJECTS; n++) out->shape_by_objects[n][j] += clip->shape_by_objects[n][j];
        }
        for (int k = 0; k < 3; k++) out->shape_misbound[k] += clip->shape_misbound[k];
    }
    double content = 0, motion = 0;
    int ncontent = 0, nmotion = 0;
    for (int r = 0; r < VD_RATE_COUNT; r++) {
        out->rate[r] = trials[r] > 0 ? hits[r] / trials[r] : NAN;
        if (isnan(out->rate[r])) continue;
        if (r < VD_RATE_CONTENT_END) content += out->rate[r], ncontent++;
        else if (r < VD_RATE_MOTION_END) motion += out->rate[r], nmotion++;
    }
    for (int r = 0; r < VD_RATE_COUNT; r++) {
        double squares = 0;
        int judged = 0;
        for (int c = 0; c < s->count; c++) {
            const vd_eval_clip *clip = &s->clips[c];
            if (clip->trials[r] <= 0) continue;
            double residual = clip->hits[r] - out->rate[r] * clip->trials[r];
            squares += residual * residual, judged++;
        }
        out->rate_se[r] = judged >= 2 ? sqrt(judged / (judged - 1.0) * squares) / trials[r] : NAN;
    }
    out->content_score = ncontent ? content / ncontent : NAN;
    out->motion_score = nmotion ? motion / nmotion : NAN;
    out->speed_error = speeds ? speed / speeds : NAN;
    out->edge_width = widths ? width / widths : NAN;
    out->psnr = psnrs ? psnr / psnrs : NAN;
    out->frechet = reference ? vd_eval_frechet(s, reference) : NAN;
    out->frechet_real = NAN;
}

static void print_row(FILE *out, const char *name, double v, double se, const char *what)
{
    char value[32] = "–", error[32] = "–";
    if (!isnan(v)) snprintf(value, sizeof value, "%.4f", v);
    if (!isnan(se)) snprintf(error, sizeof error, "%.4f", se);
    fprintf(out, "| %s | %s | %s | %s |\n", name, value, error, what);
}

static const char *const rate_descriptions[VD_RATE_COUNT] = {
    "object-frames where the object is found", "... with the right colour", "... with the right shape",
    "... with the right size", "... with sharp edges", "frames with the right background",
    "objects moving the prompted way", "objects within 30% of the prompted speed", "objects moving smoothly",
    "frame pairs without flicker", "frame pairs keeping each object's identity", "frame triples in plausible order",
    "objects starting where the image shows them and moving as prompted"};

/* Each true shape's row: the share of its object-frames judged as each shape or none. */
static void print_shape_confusion(const vd_eval_summary *s, FILE *out)
{
    double rows[VD_SHAPE_COUNT] = {0}, judged = 0;
    for (int a = 0; a < VD_SHAPE_COUNT; a++) {
        for (int j = 0; j <= VD_SHAPE_COUNT; j++) rows[a] += s->shape_confusion[a][j];
        judged += rows[a];
    }
    if (judged == 0) return;
    fprintf(out, "\n| shape judged as → | ");
    for (int j = 0; j < VD_SHAPE_COUNT; j++) fprintf(out, "%s | ", vd_shape_name((vd_shape)j));
    fprintf(out, "none | object-frames |\n|---|");
    for (int j = 0; j <= VD_SHAPE_COUNT + 1; j++) fprintf(out, "---|");
    for (int a = 0; a < VD_SHAPE_COUNT; a++) {
        fprintf(out, "\n| %s | ", vd_shape_name((vd_shape)a));
        for (int j = 0; j <= VD_SHAPE_COUNT; j++)
            if (rows[a] > 0) fprintf(out, "%.3f | ", s->shape_confusion[a][j] / rows[a]);
            else fprintf(out, "– | ");
        fprintf(out, "%.0f |", rows[a]);
    }
    fprintf(out, "\n");
}

/* The shape rate of the object-frames of each size, object count, prompted motion and nearest
 * other object's gap that had any. */
static void print_shape_breakdown(const vd_eval_summary *s, FILE *out)
{
    int any = 0;
    char group[32];
    for (int g = 0; g < VD_SIZE_COUNT + VD_WORLD_MAX_OBJECTS + VD_MOTION_COUNT + VD_GAP_COUNT; g++) {
        const double *d;
        if (g < VD_SIZE_COUNT) {
            d = s->shape_by_size[g];
            snprintf(group, sizeof group, "size %s", vd_size_name((vd_size)g));
        } else if (g < VD_SIZE_COUNT + VD_WORLD_MAX_OBJECTS) {
            int n = g - VD_SIZE_COUNT;
            d = s->shape_by_objects[n];
            snprintf(group, sizeof group, "%d object%s in the clip", n + 1, n ? "s" : "");
        } else if (g < VD_SIZE_COUNT + VD_WORLD_MAX_OBJECTS + VD_MOTION_COUNT) {
            int m = g - VD_SIZE_COUNT - VD_WORLD_MAX_OBJECTS;
            d = s->shape_by_motion[m];
            snprintf(group, sizeof group, "motion %s", vd_motion_name((vd_motion)m));
        } else {
            int k = g - VD_SIZE_COUNT - VD_WORLD_MAX_OBJECTS - VD_MOTION_COUNT;
            d = s->shape_by_gap[k];
            snprintf(group, sizeof group, "another object %s", vd_gap_name((vd_gap)k));
        }
        if (d[1] == 0) continue;
        if (!any++) fprintf(out, "\n| object-frames of | shape correct | object-frames |\n|---|---|---|\n");
        fprintf(out, "| %s | %.3f | %.0f |\n", group, d[0] / d[1], d[1]);
    }
}

/* The wrong shapes of crowded clips that were another object's, against chance. */
static void print_shape_misbound(const vd_eval_summary *s, FILE *out)
{
    const double *m = s->shape_misbound;
    if (m[0] == 0) return;
    fprintf(out, "\nIn clips of two or three objects, %.0f object-frames were found in the right colour but "
                 "judged another shape; %.3f of them were judged the shape of another object of the clip "
                 "(%.3f if the error ignored the other objects).\n",
            m[0], m[1] / m[0], m[2] / m[0]);
}

/* The direction rate of the objects of each prompted motion that had any. */
static void print_direction_by_motion(const vd_eval_summary *s, FILE *out)
{
    int any = 0;
    for (int m = 0; m < VD_MOTION_COUNT; m++) {
        const double *d = s->direction_by_motion[m];
        if (d[1] == 0) continue;
        if (!any++) fprintf(out, "\n| prompted motion | direction correct | objects |\n|---|---|---|\n");
        fprintf(out, "| %s | %.3f | %.0f |\n", vd_motion_name((vd_motion)m), d[0] / d[1], d[1]);
    }
}

void vd_eval_print_markdown(const vd_eval_summary *s, FILE *out)
{
    fprintf(out, "| metric | value | standard error | meaning |\n|---|---|---|---|\n");
    fprintf(out, "| clips | %d | – | clips judged |\n", s->clips);
    print_row(out, "content_score", s->content_score, NAN, "mean of the content rates");
    print_row(out, "motion_score", s->motion_score, NAN, "mean of the motion rates");
    for (int r = 0; r < VD_RATE_COUNT; r++) print_row(out, rate_names[r], s->rate[r], s->rate_se[r], rate_descriptions[r]);
    print_row(out, "speed_error", s->speed_error, NAN, "mean relative speed error");
    print_row(out, "edge_width", s->edge_width, NAN, "coverage-ramp pixels per outline pixel");
    print_row(out, "first_frame_psnr", s->psnr, NAN, "dB, image-to-video");
    print_row(out, "frechet_distance", s->frechet, NAN, "against real clips of the same prompts");
    print_row(out, "frechet_real", s->frechet_real, NAN, "real clips of as many other prompts against the same");
    print_shape_confusion(s, out);
    print_shape_breakdown(s, out);
    print_shape_misbound(s, out);
    print_direction_by_motion(s, out);
}

static json_t *number_or_null(double v) { return isnan(v) ? json_null() : json_real(v); }

/* {"correct": d[0], what: d[1]} */
static json_t *correct_of(const double d[2], const char *what)
{
    return json_pack("{s:I, s:I}", "correct", (json_int_t)d[0], what, (json_int_t)d[1]);
}

char *vd_eval_summary_json(const vd_eval_summary *s)
{
    json_t *root = json_object();
    json_object_set_new(root, "clips", json_integer(s->clips));
    json_object_set_new(root, "content_score", number_or_null(s->content_score));
    json_object_set_new(root, "motion_score", number_or_null(s->motion_score));
    for (int r = 0; r < VD_RATE_COUNT; r++) json_object_set_new(root, rate_names[r], number_or_null(s->rate[r]));
    json_object_set_new(root, "speed_error", number_or_null(s->speed_error));
    json_object_set_new(root, "edge_width", number_or_null(s->edge_width));
    json_object_set_new(root, "first_frame_psnr", number_or_null(s->psnr));
    json_object_set_new(root, "frechet_distance", number_or_null(s->frechet));
    json_object_set_new(root, "frechet_real", number_or_null(s->frechet_real));
    json_t *errors = json_object(); /* rate -> its standard error over the clips */
    for (int r = 0; r < VD_RATE_COUNT; r++) json_object_set_new(errors, rate_names[r], number_or_null(s->rate_se[r]));
    json_object_set_new(root, "standard_error", errors);
    json_t *confusion = json_object(); /* true shape -> judged shape (or "none") -> object-frames */
    for (int a = 0; a < VD_SHAPE_COUNT; a++) {
        json_t *row = json_object();
        for (int j = 0; j <= VD_SHAPE_COUNT; j++)
            json_object_set_new(row, j < VD_SHAPE_COUNT ? vd_shape_name((vd_shape)j) : "none",
                                json_integer((json_int_t)s->shape_confusion[a][j]));
        json_object_set_new(confusion, vd_shape_name((vd_shape)a), row);
    }
    json_object_set_new(root, "shape_confusion", confusion);
    json_t *by_motion = json_object(); /* prompted motion -> objects moving that way, objects judged */
    for (int m = 0; m < VD_MOTION_COUNT; m++)
        json_object_set_new(by_motion, vd_motion_name((vd_motion)m), correct_of(s->direction_by_motion[m], "objects"));
    json_object_set_new(root, "direction_by_motion", by_motion);
    json_t *by_size = json_object(), *by_objects = json_object(), *shape_by_motion = json_object();
    for (int z = 0; z < VD_SIZE_COUNT; z++)
        json_object_set_new(by_size, vd_size_name((vd_size)z), correct_of(s->shape_by_size[z], "object_frames"));
    for (int n = 0; n < VD_WORLD_MAX_OBJECTS; n++) {
        char key[8];
        snprintf(key, sizeof key, "%d", n + 1);
        json_object_set_new(by_objects, key, correct_of(s->shape_by_objects[n], "object_frames"));
    }
    for (int m = 0; m < VD_MOTION_COUNT; m++)
        json_object_set_new(shape_by_motion, vd_motion_name((vd_motion)m), correct_of(s->shape_by_motion[m], "object_frames"));
    json_object_set_new(root, "shape_by_size", by_size);
    json_object_set_new(root, "shape_by_objects", by_objects);
    json_object_set_new(root, "shape_by_motion", shape_by_motion);
    json_t *by_gap = json_object(); /* nearest other object's gap -> object-frames, clips of 2 or 3 */
    for (int g = 0; g < VD_GAP_COUNT; g++)
        json_object_set_new(by_gap, vd_gap_name((vd_gap)g), correct_of(s->shape_by_gap[g], "object_frames"));
    json_object_set_new(root, "shape_by_gap", by_gap);
    json_object_set_new(root, "shape_misbound",
                        json_pack("{s:I, s:I, s:f}", "wrong_shape", (json_int_t)s->shape_misbound[0],
                                  "another_objects_shape", (json_int_t)s->shape_misbound[1],
                                  "by_chance", s->shape_misbound[2]));
    char *text = json_dumps(root, JSON_PRESERVE_ORDER | JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    json_decref(root);
    return text;
}
