/* test_video.c: tests of the codec layer in server/video.c: MP4 round trip, faststart layout and
 * size checks; PNG round trip; JPEG and PNG decoding with the cover-and-centre-crop fit and alpha
 * on white; hostile images (empty, random, truncated, huge headers, wrong types, over the byte
 * limit) rejected with a message; and the float <-> byte frame conversions. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/crc.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>

#include "video.h"

static char scratch_dir[4096];

static int make_scratch_dir(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = P_tmpdir;
    snprintf(scratch_dir, sizeof scratch_dir, "%s/test_video.XXXXXX", base);
    return mkdtemp(scratch_dir) ? 0 : -1;
}

static int remove_scratch_dir(void **state)
{
    (void)state;
    DIR *dir = opendir(scratch_dir);
    if (!dir) return -1;
    struct dirent *entry;
    char path[8192];
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", scratch_dir, entry->d_name);
        unlink(path);
    }
    closedir(dir);
    return rmdir(scratch_dir);
}

static void scratch_path(char *path, size_t len, const char *name)
{
    snprintf(path, len, "%s/%s", scratch_dir, name);
}

static uint8_t *read_whole_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long length = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *bytes = malloc(length > 0 ? (size_t)length : 1);
    assert_non_null(bytes);
    assert_int_equal(fread(bytes, 1, (size_t)length, f), (size_t)length);
    fclose(f);
    *size = (size_t)length;
    return bytes;
}

/* A horizontal/vertical gradient with a white square moving right, (frames, height, width, 3). */
static uint8_t *moving_square_video(int frames, int width, int height)
{
    uint8_t *rgb = malloc((size_t)frames * width * height * 3);
    assert_non_null(rgb);
    for (int t = 0; t < frames; t++)
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++) {
                uint8_t *p = rgb + (((size_t)t * height + y) * width + x) * 3;
                int in_square = x >= 8 + 4 * t && x < 40 + 4 * t && y >= 40 && y < 72;
                p[0] = in_square ? 255 : (uint8_t)(x * 255 / (width - 1));
                p[1] = in_square ? 255 : (uint8_t)(y * 255 / (height - 1));
                p[2] = in_square ? 255 : (uint8_t)(128 + 64 * ((t & 1) ? 1 : -1) / 2);
            }
    return rgb;
}

static double psnr(const uint8_t *a, const uint8_t *b, size_t n)
{
    double squared = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        squared += d * d;
    }
    double mse = squared / (double)n;
    return mse == 0.0 ? 99.0 : 10.0 * log10(255.0 * 255.0 / mse);
}

static void test_mp4_round_trip(void **state)
{
    (void)state;
    const int frames = 16, width = 128, height = 128, fps = 8;
    uint8_t *original = moving_square_video(frames, width, height);
    char path[8192], err[256] = "";
    scratch_path(path, sizeof path, "round_trip.mp4");
    assert_int_equal(vd_mp4_write(path, original, frames, width, height, fps, err, sizeof err), 0);

    uint8_t *decoded = NULL;
    int got_frames = 0, got_width = 0, got_height = 0;
    double got_fps = 0.0;
    int rc = vd_mp4_read(path, &decoded, &got_frames, &got_width, &got_height, &got_fps, err,
                         sizeof err);
    if (rc != 0) print_error("vd_mp4_read: %s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(got_frames, frames);
    assert_int_equal(got_width, width);
    assert_int_equal(got_height, height);
    assert_true(fabs(got_fps - fps) < 1e-6);
    double quality = psnr(original, decoded, (size_t)frames * width * height * 3);
    print_message("mp4 round trip PSNR %.2f dB\n", quality);
    assert_true(quality >= 30.0);

    /* The container's duration is frames / fps. */
    AVFormatContext *demux = NULL;
    assert_int_equal(avformat_open_input(&demux, path, NULL, NULL), 0);
    assert_true(avformat_find_stream_info(demux, NULL) >= 0);
    double seconds = (double)demux->duration / AV_TIME_BASE;
    assert_true(fabs(seconds - (double)frames / fps) < 1e-3);
    avformat_close_input(&demux);
    free(decoded);
    free(original);
}

/* Walks the top-level boxes and checks that moov comes before mdat. */
static void test_mp4_faststart(void **state)
{
    (void)state;
    const int frames = 4, width = 64, height = 48;
    uint8_t *video = moving_square_video(frames, width, height);
    char path[8192], err[256] = "";
    scratch_path(path, sizeof path, "faststart.mp4");
    assert_int_equal(vd_mp4_write(path, video, frames, width, height, 24, err, sizeof err), 0);
    size_t size;
    uint8_t *bytes = read_whole_file(path, &size);
    long moov_at = -1, mdat_at = -1;
    size_t pos = 0;
    while (pos + 8 <= size) {
        uint64_t box_size = (uint64_t)bytes[pos] << 24 | (uint64_t)bytes[pos + 1] << 16 |
                            (uint64_t)bytes[pos + 2] << 8 | bytes[pos + 3];
        if (box_size == 1) { /* 64-bit size follows the type */
            assert_true(pos + 16 <= size);
            box_size = 0;
            for (int i = 0; i < 8; i++) box_size = box_size << 8 | bytes[pos + 8 + i];
        } else if (box_size == 0) { /* to the end of the file */
            box_size = size - pos;
        }
        assert_true(box_size >= 8);
        if (memcmp(bytes + pos + 4, "moov", 4) == 0) moov_at = (long)pos;
        if (memcmp(bytes + pos + 4, "mdat", 4) == 0) mdat_at = (long)pos;
        pos += box_size;
    }
    assert_int_equal(pos, size);
    assert_true(moov_at >= 0 && mdat_at >= 0);
    assert_true(moov_at < mdat_at);
    free(bytes);
    free(video);
}

static int count_scratch_files(void)
{
    DIR *dir = opendir(scratch_dir);
    assert_non_null(dir);
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL)
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) count++;
    closedir(dir);
    return count;
}

static void test_mp4_rejects_bad_arguments(void **state)
{
    (void)state;
    uint8_t *video = moving_square_video(2, 128, 128);
    char path[8192], err[256] = "";
    scratch_path(path, sizeof path, "odd.mp4");
    int files_before = count_scratch_files();
    assert_int_equal(vd_mp4_write(path, video, 2, 127, 128, 8, err, sizeof err), -1);
    assert_non_null(strstr(err, "even"));
    assert_int_equal(vd_mp4_write(path, video, 2, 128, 127, 8, err, sizeof err), -1);
    assert_int_equal(vd_mp4_write(path, video, 0, 128, 128, 8, err, sizeof err), -1);
    assert_int_equal(vd_mp4_write(path, video, 2, 128, 128, 0, err, sizeof err), -1);
    scratch_path(path, sizeof path, "no/such/dir.mp4");
    assert_int_equal(vd_mp4_write(path, video, 2, 128, 128, 8, err, sizeof err), -1);
    assert_true(strlen(err) > 0);
    assert_int_equal(count_scratch_files(), files_before); /* nothing left behind */

    uint8_t *decoded = NULL;
    int frames, width, height;
    double fps;
    scratch_path(path, sizeof path, "missing.mp4");
    assert_int_equal(vd_mp4_read(path, &decoded, &frames, &width, &height, &fps, err, sizeof err),
                     -1);
    assert_null(decoded);
    scratch_path(path, sizeof path, "not_a_video.png");
    assert_int_equal(vd_png_write(path, video, 16, 16, err, sizeof err), 0);
    assert_int_equal(vd_mp4_read(path, &decoded, &frames, &width, &height, &fps, err, sizeof err),
                     -1);
    assert_null(decoded);
    free(video);
}

/* Noise-like so the PNG has real compressed data to cut into. */
static uint8_t *noise_image(int width, int height, unsigned seed)
{
    uint8_t *rgb = malloc((size_t)width * height * 3);
    assert_non_null(rgb);
    uint32_t state = seed;
    for (size_t i = 0; i < (size_t)width * height * 3; i++) {
        state = state * 1664525u + 1013904223u;
        rgb[i] = (uint8_t)(state >> 24);
    }
    return rgb;
}

static void test_png_round_trip_exact(void **state)
{
    (void)state;
    const int width = 40, height = 24;
    uint8_t *original = noise_image(width, height, 7);
    uint8_t *decoded = malloc((size_t)width * height * 3);
    char path[8192], err[256] = "";
    scratch_path(path, sizeof path, "thumb.png");
    assert_int_equal(vd_png_write(path, original, width, height, err, sizeof err), 0);
    int rc = vd_image_read_file(path, NULL, width, height, decoded, err, sizeof err);
    if (rc != 0) print_error("vd_image_read_file: %s\n", err);
    assert_int_equal(rc, 0);
    assert_memory_equal(original, decoded, (size_t)width * height * 3);
    free(decoded);
    free(original);
}

/* Encodes an RGB24 or RGBA picture with an FFmpeg image encoder into memory. */
static uint8_t *encode_image(enum AVCodecID codec_id, enum AVPixelFormat source_format,
                             const uint8_t *pixels, int width, int height, size_t *size)
{
    const AVCodec *codec = avcodec_find_encoder(codec_id);
    assert_non_null(codec);
    AVCodecContext *enc = avcodec_alloc_context3(codec);
    assert_non_null(enc);
    enum AVPixelFormat coded_format =
        codec_id == AV_CODEC_ID_MJPEG ? AV_PIX_FMT_YUVJ444P : source_format;
    enc->width = width;
    enc->height = height;
    enc->pix_fmt = coded_format;
    enc->time_base = (AVRational){1, 25};
    if (codec_id == AV_CODEC_ID_MJPEG) {
        enc->flags |= AV_CODEC_FLAG_QSCALE;
        enc->global_quality = FF_QP2LAMBDA * 2;
    }
    assert_int_equal(avcodec_open2(enc, codec, NULL), 0);

    AVFrame *frame = av_frame_alloc();
    frame->format = coded_format;
    frame->width = width;
    frame->height = height;
    assert_int_equal(av_frame_get_buffer(frame, 0), 0);
    int bytes_per_pixel = source_format == AV_PIX_FMT_RGBA ? 4 : 3;
    AVFrame *packed = av_frame_alloc();
    packed->format = source_format;
    packed->width = width;
    packed->height = height;
    assert_int_equal(av_frame_get_buffer(packed, 0), 0);
    av_image_copy_plane(packed->data[0], packed->linesize[0], pixels, width * bytes_per_pixel,
                        width * bytes_per_pixel, height);
    struct SwsContext *sws = sws_getContext(width, height, source_format, width, height,
                                            coded_format, SWS_BICUBIC, NULL, NULL, NULL);
    assert_non_null(sws);
    sws_scale(sws, (const uint8_t *const *)packed->data, packed->linesize, 0, height, frame->data,
              frame->linesize);
    sws_freeContext(sws);
    frame->pts = 0;
    if (codec_id == AV_CODEC_ID_MJPEG) frame->quality = enc->global_quality;

    AVPacket *packet = av_packet_alloc();
    assert_int_equal(avcodec_send_frame(enc, frame), 0);
    assert_int_equal(avcodec_send_frame(enc, NULL), 0);
    assert_int_equal(avcodec_receive_packet(enc, packet), 0);
    uint8_t *bytes = malloc((size_t)packet->size);
    memcpy(bytes, packet->data, (size_t)packet->size);
    *size = (size_t)packet->size;
    av_packet_free(&packet);
    av_frame_free(&packed);
    av_frame_free(&frame);
    avcodec_free_context(&enc);
    return bytes;
}

static void fill_rect(uint8_t *rgb, int width, int x0, int y0, int x1, int y1, const uint8_t c[3])
{
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) memcpy(rgb + ((size_t)y * width + x) * 3, c, 3);
}

static void assert_colour_near(const uint8_t *rgb, int width, int x, int y, const uint8_t c[3],
                               int tolerance)
{
    const uint8_t *p = rgb + ((size_t)y * width + x) * 3;
    for (int i = 0; i < 3; i++) {
        if (abs((int)p[i] - (int)c[i]) > tolerance)
            fail_msg("pixel (%d,%d) is %d,%d,%d, expected about %d,%d,%d", x, y, p[0], p[1], p[2],
                     c[0], c[1], c[2]);
    }
}

static const uint8_t red[3] = {220, 30, 30}, green[3] = {30, 200, 40}, blue[3] = {30, 40, 210},
                     yellow[3] = {230, 220, 40}, white[3] = {255, 255, 255};

/* A 512x256 JPEG (red | green over yellow | blue, in quarters) fitted to 128x128: the cover
 * scale is 1/2 and the centre crop keeps only the middle half, the green and yellow. */
static void test_jpeg_fit_centre_crop(void **state)
{
    (void)state;
    const int width = 512, height = 256, out = 128;
    uint8_t *rgb = malloc((size_t)width * height * 3);
    fill_rect(rgb, width, 0, 0, 128, height, red);
    fill_rect(rgb, width, 128, 0, 384, 128, green);
    fill_rect(rgb, width, 128, 128, 384, height, yellow);
    fill_rect(rgb, width, 384, 0, width, height, blue);
    size_t size;
    uint8_t *jpeg = encode_image(AV_CODEC_ID_MJPEG, AV_PIX_FMT_RGB24, rgb, width, height, &size);
    uint8_t *fitted = malloc((size_t)out * out * 3);
    char err[256] = "";
    int rc = vd_image_decode(jpeg, size, NULL, out, out, fitted, err, sizeof err);
    if (rc != 0) print_error("vd_image_decode: %s\n", err);
    assert_int_equal(rc, 0);
    for (int x = 2; x < out - 2; x += 5) {
        assert_colour_near(fitted, out, x, 30, green, 12);
        assert_colour_near(fitted, out, x, 98, yellow, 12);
    }
    free(fitted);
    free(jpeg);
    free(rgb);
}

/* A tall 64x256 PNG fitted to 32x32: the crop is the middle 64 rows, rows 96..159. */
static void test_png_fit_tall_image(void **state)
{
    (void)state;
    const int width = 64, height = 256, out = 32;
    uint8_t *rgb = malloc((size_t)width * height * 3);
    fill_rect(rgb, width, 0, 0, width, 96, red);
    fill_rect(rgb, width, 0, 96, width, 128, green);
    fill_rect(rgb, width, 0, 128, width, 160, yellow);
    fill_rect(rgb, width, 0, 160, width, height, blue);
    size_t size;
    uint8_t *png = encode_image(AV_CODEC_ID_PNG, AV_PIX_FMT_RGB24, rgb, width, height, &size);
    uint8_t *fitted = malloc((size_t)out * out * 3);
    char err[256] = "";
    assert_int_equal(vd_image_decode(png, size, NULL, out, out, fitted, err, sizeof err), 0);
    for (int x = 0; x < out; x++) {
        assert_colour_near(fitted, out, x, 0, green, 0);
        assert_colour_near(fitted, out, x, 14, green, 0);
        assert_colour_near(fitted, out, x, 17, yellow, 0);
        assert_colour_near(fitted, out, x, 31, yellow, 0);
    }
    free(fitted);
    free(png);
    free(rgb);
}

/* An RGBA PNG: opaque red, fully transparent black and half-transparent black thirds. */
static void test_png_alpha_on_white(void **state)
{
    (void)state;
    const int width = 48, height = 16;
    uint8_t *rgba = malloc((size_t)width * height * 4);
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++) {
            uint8_t *p = rgba + ((size_t)y * width + x) * 4;
            if (x < 16) {
                p[0] = red[0], p[1] = red[1], p[2] = red[2], p[3] = 255;
            } else {
                p[0] = p[1] = p[2] = 0;
                p[3] = x < 32 ? 0 : 128;
            }
        }
    size_t size;
    uint8_t *png = encode_image(AV_CODEC_ID_PNG, AV_PIX_FMT_RGBA, rgba, width, height, &size);
    uint8_t *decoded = malloc((size_t)width * height * 3);
    char err[256] = "";
    assert_int_equal(vd_image_decode(png, size, NULL, width, height, decoded, err, sizeof err), 0);
    const uint8_t half_grey[3] = {127, 127, 127};
    assert_colour_near(decoded, width, 8, 8, red, 0);
    assert_colour_near(decoded, width, 24, 8, white, 0);
    assert_colour_near(decoded, width, 40, 8, half_grey, 0);
    free(decoded);
    free(png);
    free(rgba);
}

static void append_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* The CRC a PNG chunk carries, over its type and data. */
static uint32_t png_chunk_crc(const uint8_t *type_and_data, size_t len)
{
    return av_crc(av_crc_get_table(AV_CRC_32_IEEE_LE), UINT32_MAX, type_and_data, len) ^ UINT32_MAX;
}

/* A PNG whose IHDR claims width x height, followed by an empty IDAT and IEND. */
static size_t craft_png_header(uint8_t *out, uint32_t width, uint32_t height)
{
    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    size_t n = 0;
    memcpy(out, signature, 8);
    n += 8;
    append_be32(out + n, 13);
    memcpy(out + n + 4, "IHDR", 4);
    append_be32(out + n + 8, width);
    append_be32(out + n + 12, height);
    out[n + 16] = 8; /* bit depth */
    out[n + 17] = 2; /* truecolour */
    out[n + 18] = out[n + 19] = out[n + 20] = 0;
    append_be32(out + n + 21, png_chunk_crc(out + n + 4, 17));
    n += 25;
    static const char *const empty_chunks[2] = {"IDAT", "IEND"};
    for (int i = 0; i < 2; i++) {
        append_be32(out + n, 0);
        memcpy(out + n + 4, empty_chunks[i], 4);
        append_be32(out + n + 8, png_chunk_crc(out + n + 4, 4));
        n += 12;
    }
    return n;
}

static void expect_rejected(const char *what, const uint8_t *bytes, size_t size,
                            const vd_image_limits *limits, const char *message_part)
{
    uint8_t out[32 * 32 * 3];
    char err[256] = "";
    int rc = vd_image_decode(bytes, size, limits, 32, 32, out, err, sizeof err);
    print_message("%-28s -> %s\n", what, rc == 0 ? "ACCEPTED" : err);
    if (rc != -1) fail_msg("%s was accepted", what);
    assert_true(strlen(err) > 0);
    if (message_part && !strstr(err, message_part))
        fail_msg("%s: message '%s' lacks '%s'", what, err, message_part);
}

static void test_hostile_images(void **state)
{
    (void)state;
    const char *unsupported = "unsupported image type (expected PNG or JPEG)";
    uint8_t nothing[1] = {0};
    expect_rejected("zero bytes", nothing, 0, NULL, "empty");

    uint8_t *random = noise_image(1000, 1, 99);
    expect_rejected("random bytes", random, 3000, NULL, unsupported);
    /* Random data behind valid signatures must fail in the decoders, not crash them. */
    memcpy(random, "\x89PNG\r\n\x1a\n", 8);
    expect_rejected("PNG signature + random", random, 3000, NULL, NULL);
    memcpy(random, "\xff\xd8\xff\xe0", 4);
    expect_rejected("JPEG signature + random", random, 3000, NULL, NULL);
    free(random);

    const int width = 64, height = 64;
    uint8_t *noise = noise_image(width, height, 3);
    size_t png_size;
    uint8_t *png = encode_image(AV_CODEC_ID_PNG, AV_PIX_FMT_RGB24, noise, width, height, &png_size);
    const size_t cuts[] = {4, 8, 20, 33, 40, 100, png_size / 2, png_size - 20};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "PNG cut at %zu of %zu", cuts[i], png_size);
        uint8_t *cut = malloc(cuts[i]); /* exactly sized, so valgrind sees any over-read */
        memcpy(cut, png, cuts[i]);
        expect_rejected(what, cut, cuts[i], NULL, NULL);
        free(cut);
    }
    uint8_t *corrupt = malloc(png_size);
    memcpy(corrupt, png, png_size);
    corrupt[png_size / 2] ^= 0x55; /* inside IDAT: its CRC no longer matches */
    expect_rejected("PNG with a flipped byte", corrupt, png_size, NULL, NULL);
    free(corrupt);

    size_t jpeg_size;
    uint8_t *jpeg =
        encode_image(AV_CODEC_ID_MJPEG, AV_PIX_FMT_RGB24, noise, width, height, &jpeg_size);
    /* Every cut past the first scan removes the end-of-image marker, even the last two bytes. */
    const size_t jpeg_cuts[] = {3, 10, 100, 700, jpeg_size / 2, jpeg_size - 10, jpeg_size - 2};
    for (size_t i = 0; i < sizeof jpeg_cuts / sizeof jpeg_cuts[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "JPEG cut at %zu of %zu", jpeg_cuts[i], jpeg_size);
        uint8_t *cut = malloc(jpeg_cuts[i]);
        memcpy(cut, jpeg, jpeg_cuts[i]);
        expect_rejected(what, cut, jpeg_cuts[i], NULL, NULL);
        free(cut);
    }
    /* Valid headers and end marker, noise in the second half of the scan data. */
    uint8_t *scrambled = malloc(jpeg_size);
    memcpy(scrambled, jpeg, jpeg_size);
    uint8_t *junk = noise_image((int)(jpeg_size / 2 / 3) + 1, 1, 5);
    memcpy(scrambled + jpeg_size / 2, junk, jpeg_size - jpeg_size / 2 - 2);
    expect_rejected("JPEG with noise scan data", scrambled, jpeg_size, NULL, NULL);
    free(junk);
    free(scrambled);

    uint8_t crafted[128];
    size_t crafted_size = craft_png_header(crafted, 100000, 100000);
    expect_rejected("PNG IHDR 100000x100000", crafted, crafted_size, NULL, "100000x100000");
    crafted_size = craft_png_header(crafted, 0x7fffffff, 1);
    expect_rejected("PNG IHDR 2^31-1 x 1", crafted, crafted_size, NULL, "a side");
    crafted_size = craft_png_header(crafted, 16, 16);
    expect_rejected("PNG IHDR 16x16, no data", crafted, crafted_size, NULL, NULL);
    const vd_image_limits few_pixels = {1 << 20, 8192, 1000};
    crafted_size = craft_png_header(crafted, 100, 100);
    expect_rejected("PNG over the pixel limit", crafted, crafted_size, &few_pixels, "pixels");

    /* A JPEG whose frame header claims 65535x65535. */
    const uint8_t huge_jpeg[] = {0xff, 0xd8, 0xff, 0xc0, 0x00, 0x11, 0x08, 0xff, 0xff, 0xff,
                                 0xff, 0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11,
                                 0x01, 0xff, 0xd9};
    expect_rejected("JPEG SOF 65535x65535", huge_jpeg, sizeof huge_jpeg, NULL, "65535x65535");

    const char *text = "This is a plain text file, not a picture.\n";
    expect_rejected("text file", (const uint8_t *)text, strlen(text), NULL, unsupported);

    uint8_t *video = moving_square_video(2, 64, 64);
    char path[8192], err[256] = "";
    scratch_path(path, sizeof path, "not_an_image.mp4");
    assert_int_equal(vd_mp4_write(path, video, 2, 64, 64, 8, err, sizeof err), 0);
    size_t mp4_size;
    uint8_t *mp4 = read_whole_file(path, &mp4_size);
    expect_rejected("MP4 given as an image", mp4, mp4_size, NULL, unsupported);
    uint8_t out[32 * 32 * 3];
    assert_int_equal(vd_image_read_file(path, NULL, 32, 32, out, err, sizeof err), -1);
    assert_non_null(strstr(err, unsupported));

    const vd_image_limits small_files = {1000, 8192, 1 << 20};
    expect_rejected("PNG over the byte limit", png, png_size, &small_files, "bytes");
    scratch_path(path, sizeof path, "big.png");
    assert_int_equal(vd_png_write(path, noise, width, height, err, sizeof err), 0);
    assert_int_equal(vd_image_read_file(path, &small_files, 32, 32, out, err, sizeof err), -1);
    assert_non_null(strstr(err, "bytes"));
    assert_int_equal(vd_image_read_file(scratch_dir, NULL, 32, 32, out, err, sizeof err), -1);

    free(mp4);
    free(video);
    free(jpeg);
    free(png);
    free(noise);
}

static void test_float_conversion(void **state)
{
    (void)state;
    /* One 2x1 frame: channel planes R, G, B. */
    const float chw[6] = {-1.0f, 1.0f, 0.0f, -0.5f, 2.0f, NAN};
    uint8_t rgb[6];
    vd_frames_to_rgb8(chw, 1, 2, 1, rgb);
    const uint8_t expected[6] = {0, 128, 255, 255, 64, 0}; /* (R,G,B) of pixel 0 then pixel 1 */
    assert_memory_equal(rgb, expected, 6);

    uint8_t *image = noise_image(5, 3, 11);
    float *planes = malloc(5 * 3 * 3 * sizeof(float));
    uint8_t back[5 * 3 * 3];
    vd_rgb8_to_chw(image, 5, 3, planes);
    for (int i = 0; i < 45; i++) assert_true(planes[i] >= -1.0f && planes[i] <= 1.0f);
    vd_frames_to_rgb8(planes, 1, 5, 3, back);
    assert_memory_equal(image, back, sizeof back);
    free(planes);
    free(image);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mp4_round_trip),
        cmocka_unit_test(test_mp4_faststart),
        cmocka_unit_test(test_mp4_rejects_bad_arguments),
        cmocka_unit_test(test_png_round_trip_exact),
        cmocka_unit_test(test_jpeg_fit_centre_crop),
        cmocka_unit_test(test_png_fit_tall_image),
        cmocka_unit_test(test_png_alpha_on_white),
        cmocka_unit_test(test_hostile_images),
        cmocka_unit_test(test_float_conversion),
    };
    return cmocka_run_group_tests(tests, make_scratch_dir, remove_scratch_dir);
}
