/* video.h: the video and image codec layer that sits on top of the engine (the engine itself has
 * no FFmpeg). It writes generated frames as H.264 MP4 and a PNG thumbnail, reads MP4s back for the
 * tests and the evaluator, decodes an uploaded PNG or JPEG first frame with limits against hostile
 * input, and converts between the engine's float frames and 8-bit RGB.
 *
 * Every function that can fail returns 0 on success and -1 on failure, with a one-line message in
 * err (when err is not NULL and errlen > 0). Files are written atomically: to a temporary file in
 * the same directory, then renamed over the destination. */
#ifndef VD_VIDEO_H
#define VD_VIDEO_H

#include <stddef.h>
#include <stdint.h>

/* Bounds for MP4s this layer writes or reads. The reader rejects anything beyond them rather than
 * allocating without limit; the writer refuses to produce a file its own reader would reject. */
#define VD_MP4_MAX_FRAMES 4096
#define VD_MP4_MAX_SIDE 4096
#define VD_MP4_MAX_RGB_BYTES ((size_t)2 << 30) /* all decoded frames together, as RGB24 */
#define VD_MP4_MAX_FPS 240

/* Limits for an uploaded image, checked before the large buffers are allocated. */
typedef struct {
    size_t max_bytes;   /* size of the encoded file */
    int max_side;       /* width and height, each */
    int64_t max_pixels; /* width * height */
} vd_image_limits;

/* Used where a caller passes NULL limits. */
#define VD_IMAGE_DEFAULT_MAX_BYTES ((size_t)16 << 20)
#define VD_IMAGE_DEFAULT_MAX_SIDE 8192
#define VD_IMAGE_DEFAULT_MAX_PIXELS ((int64_t)32 << 20)

/* Quiets FFmpeg's own logging (its messages go to VD_LOG at debug level). Safe to call more than
 * once and from several threads; every function below calls it, so calling it is optional. */
void vd_video_init(void);

/* Writes rgb (frames, height, width, 3) as an H.264 yuv420p MP4 at fps frames per second, with
 * the index at the front (faststart). width and height must be even. */
int vd_mp4_write(const char *path, const uint8_t *rgb, int frames, int width, int height, int fps,
                 char *err, size_t errlen);

/* Decodes every frame of an MP4 (H.264, or any video codec FFmpeg decodes) into *rgb
 * (frames, height, width, 3), allocated here and freed by the caller with free(). */
int vd_mp4_read(const char *path, uint8_t **rgb, int *frames, int *width, int *height, double *fps,
                char *err, size_t errlen);

/* Writes one RGB frame (height, width, 3) as a PNG. */
int vd_png_write(const char *path, const uint8_t *rgb, int width, int height, char *err,
                 size_t errlen);

/* Decodes a PNG or JPEG held in memory and fits it to out_width x out_height: scaled to cover the
 * target with its aspect ratio kept, then centre-cropped. out_rgb receives (out_height, out_width,
 * 3). Transparent pixels are composited on white. limits may be NULL for the defaults above. */
int vd_image_decode(const uint8_t *bytes, size_t size, const vd_image_limits *limits,
                    int out_width, int out_height, uint8_t *out_rgb, char *err, size_t errlen);

/* vd_image_decode on the contents of a file (which must be a regular file within max_bytes). */
int vd_image_read_file(const char *path, const vd_image_limits *limits, int out_width,
                       int out_height, uint8_t *out_rgb, char *err, size_t errlen);

/* Engine frames (frames, 3, height, width) floats in [-1, 1] to (frames, height, width, 3) bytes,
 * rounded and clamped (NaN becomes 0). */
void vd_frames_to_rgb8(const float *chw_frames, int frames, int width, int height, uint8_t *rgb);

/* One image (height, width, 3) bytes to (3, height, width) floats in [-1, 1]. */
void vd_rgb8_to_chw(const uint8_t *rgb, int width, int height, float *chw);

#endif
