/* bench_loader.c: how fast the training loader renders clips of the synthetic world, in clips
 * per second, with 1 and 2 worker threads (or --threads N). Links only the engine.
 *
 *   bench_loader [--size 128x128] [--frames 16] [--clips 200] [--threads N]
 *
 * Prints one JSON line per thread count. */
#include "common.h"
#include "world.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double clips_per_second(int width, int height, int frames, int clips, int threads)
{
    float *out = vd_malloc((size_t)frames * 3 * width * height * sizeof(float));
    vd_loader *l = vd_loader_new(1, width, height, frames, threads, 2 * threads);
    vd_loader_next(l, out, NULL); /* warm up: threads started, first clips under way */
    double start = vd_now();
    for (int i = 0; i < clips; i++) vd_loader_next(l, out, NULL);
    double elapsed = vd_now() - start;
    vd_loader_free(l);
    free(out);
    return clips / elapsed;
}

int main(int argc, char **argv)
{
    int width = 128, height = 128, frames = 16, clips = 200, only_threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return fprintf(stderr, "%s: missing value\n", a), 2;
        if (strcmp(a, "--size") == 0) {
            if (sscanf(v, "%dx%d", &width, &height) != 2) return fprintf(stderr, "--size: expected WxH\n"), 2;
        } else if (strcmp(a, "--frames") == 0) frames = atoi(v);
        else if (strcmp(a, "--clips") == 0) clips = atoi(v);
        else if (strcmp(a, "--threads") == 0) only_threads = atoi(v);
        else return fprintf(stderr, "unknown option %s\n", a), 2;
        i++;
    }
    if (width < 8 || height < 8 || width > VD_WORLD_MAX_SIDE || height > VD_WORLD_MAX_SIDE || frames < 1 ||
        frames > VD_WORLD_MAX_FRAMES || clips < 1 || only_threads < 0 || only_threads > 256)
        return fprintf(stderr, "bad size, frames, clips or threads\n"), 2;
    for (int threads = only_threads ? only_threads : 1; threads <= (only_threads ? only_threads : 2); threads++)
        printf("{\"bench\": \"loader\", \"width\": %d, \"height\": %d, \"frames\": %d, \"threads\": %d, \"clips\": %d, "
               "\"clips_per_second\": %.1f}\n",
               width, height, frames, threads, clips, clips_per_second(width, height, frames, clips, threads));
    return 0;
}
