/* video.c: the FFmpeg-backed codec layer declared in video.h: H.264 MP4 writing and reading,
 * PNG thumbnails, decoding of uploaded PNG/JPEG first frames under limits, and the float <-> byte
 * frame conversions. */
#include "video.h"

#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

/* ---- errors and logging ---- */

static void set_error(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* FFmpeg's messages go to our log at debug level: every failure here already returns a message of
 * its own, and a hostile upload should not fill the server log with decoder complaints. Only
 * FFmpeg's fatal and panic messages are kept at warn. */
static void ffmpeg_log_callback(void *avcl, int level, const char *fmt, va_list ap)
{
    if (level > AV_LOG_WARNING) return;
    vd_log_level ours = level <= AV_LOG_FATAL ? VD_LOG_WARN : VD_LOG_DEBUG;
    char line[1024];
    int print_prefix = 1;
    av_log_format_line2(avcl, level, fmt, ap, line, sizeof line, &print_prefix);
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
    if (len > 0) vd_log_write(ours, __FILE__, __LINE__, "ffmpeg: %s", line);
}

static pthread_once_t ffmpeg_init_once = PTHREAD_ONCE_INIT;

static void ffmpeg_init(void)
{
    av_log_set_level(AV_LOG_WARNING);
    av_log_set_callback(ffmpeg_log_callback);
}

void vd_video_init(void)
{
    pthread_once(&ffmpeg_init_once, ffmpeg_init);
}

/* ---- atomic file output ---- */

/* Creates and opens a new file next to path (same directory, so rename is atomic), with the
 * permissions an ordinary open would give. Returns the descriptor, or -1 with err set. */
static int create_temp_beside(const char *path, char *tmp_path, size_t tmp_len, char *err,
                              size_t errlen)
{
    static atomic_uint temp_counter;
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned serial = atomic_fetch_add(&temp_counter, 1);
        int n = snprintf(tmp_path, tmp_len, "%s.tmp-%ld-%u", path, (long)getpid(), serial);
        if (n < 0 || (size_t)n >= tmp_len) {
            set_error(err, errlen, "output path is too long: %s", path);
            return -1;
        }
        int fd = open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0) return fd;
        if (errno != EEXIST) {
            set_error(err, errlen, "cannot create %s: %s", tmp_path, strerror(errno));
            return -1;
        }
    }
    set_error(err, errlen, "cannot create a temporary file beside %s", path);
    return -1;
}

/* Flushes the finished temporary file to disk and renames it over path. Closes fd. */
static int commit_temp(int fd, const char *tmp_path, const char *path, char *err, size_t errlen)
{
    if (fsync(fd) != 0) {
        set_error(err, errlen, "cannot flush %s: %s", tmp_path, strerror(errno));
        close(fd);
        return -1;
    }
    if (close(fd) != 0) {
        set_error(err, errlen, "cannot close %s: %s", tmp_path, strerror(errno));
        return -1;
    }
    if (rename(tmp_path, path) != 0) {
        set_error(err, errlen, "cannot rename %s to %s: %s", tmp_path, path, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- pixel conversion helpers ---- */

static int is_yuv(enum AVPixelFormat format)
{
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(format);
    return desc && !(desc->flags & AV_PIX_FMT_FLAG_RGB) && desc->nb_components >= 3;
}

static int is_full_range_yuv(enum AVPixelFormat format)
{
    return format == AV_PIX_FMT_YUVJ420P || format == AV_PIX_FMT_YUVJ422P ||
           format == AV_PIX_FMT_YUVJ444P || format == AV_PIX_FMT_YUVJ440P ||
           format == AV_PIX_FMT_YUVJ411P;
}

/* libswscale wants the JPEG-range ("yuvj") formats as their plain twins, with the range given
 * separately (set_source_colorspace does that). */
static enum AVPixelFormat scaler_source_format(enum AVPixelFormat format)
{
    switch (format) {
    case AV_PIX_FMT_YUVJ420P: return AV_PIX_FMT_YUV420P;
    case AV_PIX_FMT_YUVJ422P: return AV_PIX_FMT_YUV422P;
    case AV_PIX_FMT_YUVJ444P: return AV_PIX_FMT_YUV444P;
    case AV_PIX_FMT_YUVJ440P: return AV_PIX_FMT_YUV440P;
    case AV_PIX_FMT_YUVJ411P: return AV_PIX_FMT_YUV411P;
    default: return format;
    }
}

/* Sets the YUV matrix and range of a conversion from a decoded frame: BT.709 when the frame says
 * so, BT.601 otherwise (the JPEG/JFIF and SD default); full range for JPEG-range frames. */
static void set_source_colorspace(struct SwsContext *sws, const AVFrame *frame)
{
    if (!is_yuv((enum AVPixelFormat)frame->format)) return;
    int matrix = frame->colorspace == AVCOL_SPC_BT709 ? SWS_CS_ITU709 : SWS_CS_ITU601;
    int full_range = frame->color_range == AVCOL_RANGE_JPEG ||
                     is_full_range_yuv((enum AVPixelFormat)frame->format);
    const int *coefficients = sws_getCoefficients(matrix);
    sws_setColorspaceDetails(sws, coefficients, full_range, sws_getCoefficients(SWS_CS_DEFAULT), 1,
                             0, 1 << 16, 1 << 16);
}

/* A frame of the given format and size with FFmpeg's own alignment and padding, so that
 * libswscale's vector code never reads or writes past a caller's buffer. */
static AVFrame *alloc_frame(enum AVPixelFormat format, int width, int height)
{
    AVFrame *frame = av_frame_alloc();
    if (!frame) return NULL;
    frame->format = format;
    frame->width = width;
    frame->height = height;
    if (av_frame_get_buffer(frame, 0) < 0) av_frame_free(&frame);
    return frame;
}

static void copy_rgb_into_frame(const uint8_t *rgb, int width, int height, AVFrame *frame)
{
    av_image_copy_plane(frame->data[0], frame->linesize[0], rgb, width * 3, width * 3, height);
}

static void copy_frame_into_rgb(const AVFrame *frame, int width, int height, uint8_t *rgb)
{
    av_image_copy_plane(rgb, width * 3, frame->data[0], frame->linesize[0], width * 3, height);
}

/* ---- MP4 writing ---- */

/* Opens codec for yuv420p frames at fps, or returns NULL (encoders that take other pixel formats,
 * and hardware encoders without their device, fail here and are skipped). */
static AVCodecContext *try_h264_encoder(const AVCodec *codec, int width, int height, int fps,
                                        int global_header)
{
    if (codec->pix_fmts) {
        int has_yuv420p = 0;
        for (const enum AVPixelFormat *p = codec->pix_fmts; *p != AV_PIX_FMT_NONE; p++)
            if (*p == AV_PIX_FMT_YUV420P) has_yuv420p = 1;
        if (!has_yuv420p) return NULL;
    }
    AVCodecContext *enc = avcodec_alloc_context3(codec);
    if (!enc) return NULL;
    enc->width = width;
    enc->height = height;
    enc->pix_fmt = AV_PIX_FMT_YUV420P;
    enc->time_base = (AVRational){1, fps};
    enc->framerate = (AVRational){fps, 1};
    enc->sample_aspect_ratio = (AVRational){1, 1};
    enc->color_range = AVCOL_RANGE_MPEG;
    enc->colorspace = AVCOL_SPC_BT709;
    enc->color_primaries = AVCOL_PRI_BT709;
    enc->color_trc = AVCOL_TRC_BT709;
    if (global_header) enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if (strcmp(codec->name, "libx264") == 0) {
        /* Near visually lossless at the small sizes the model produces. */
        av_opt_set(enc->priv_data, "crf", "18", 0);
        av_opt_set(enc->priv_data, "preset", "fast", 0);
    } else {
        int64_t bits_per_second = (int64_t)width * height * fps / 3; /* about 0.33 bit/pixel */
        enc->bit_rate = bits_per_second > 400000 ? bits_per_second : 400000;
    }
    if (avcodec_open2(enc, codec, NULL) != 0) {
        avcodec_free_context(&enc);
        return NULL;
    }
    VD_LOG(VD_LOG_DEBUG, "mp4: encoding H.264 with %s", codec->name);
    return enc;
}

/* libx264 if present, else the first other H.264 encoder that opens. */
static AVCodecContext *open_h264_encoder(int width, int height, int fps, int global_header,
                                         char *err, size_t errlen)
{
    const AVCodec *preferred = avcodec_find_encoder_by_name("libx264");
    AVCodecContext *enc = preferred ? try_h264_encoder(preferred, width, height, fps, global_header)
                                    : NULL;
    if (enc) return enc;
    int found_any = preferred != NULL;
    void *iter = NULL;
    const AVCodec *codec;
    while ((codec = av_codec_iterate(&iter)) != NULL) {
        if (codec == preferred || codec->id != AV_CODEC_ID_H264 || !av_codec_is_encoder(codec))
            continue;
        found_any = 1;
        enc = try_h264_encoder(codec, width, height, fps, global_header);
        if (enc) return enc;
    }
    set_error(err, errlen, found_any ? "no H.264 encoder could be opened (FFmpeg needs libx264)"
                                     : "FFmpeg has no H.264 encoder (it needs libx264)");
    return NULL;
}

/* Sends one frame (NULL to flush) and writes every packet the encoder returns. */
static int encode_and_write(AVCodecContext *enc, AVFormatContext *mux, AVStream *stream,
                            const AVFrame *frame, AVPacket *packet, char *err, size_t errlen)
{
    int ret = avcodec_send_frame(enc, frame);
    if (ret < 0) {
        set_error(err, errlen, "H.264 encoding failed: %s", av_err2str(ret));
        return -1;
    }
    for (;;) {
        ret = avcodec_receive_packet(enc, packet);
        if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) return 0;
        if (ret < 0) {
            set_error(err, errlen, "H.264 encoding failed: %s", av_err2str(ret));
            return -1;
        }
        if (packet->duration == 0) packet->duration = 1; /* one frame, in 1/fps units */
        av_packet_rescale_ts(packet, enc->time_base, stream->time_base);
        packet->stream_index = stream->index;
        ret = av_interleaved_write_frame(mux, packet);
        if (ret < 0) {
            set_error(err, errlen, "writing MP4 failed: %s", av_err2str(ret));
            return -1;
        }
    }
}

/* Encodes all frames into the MP4 at tmp_path (opened through libavformat). */
static int write_mp4_file(const char *tmp_path, const uint8_t *rgb, int frames, int width,
                          int height, int fps, char *err, size_t errlen)
{
    int status = -1;
    AVFormatContext *mux = NULL;
    AVCodecContext *enc = NULL;
    struct SwsContext *sws = NULL;
    AVFrame *rgb_frame = NULL, *yuv_frame = NULL;
    AVPacket *packet = NULL;
    AVDictionary *mux_options = NULL;
    int ret = avformat_alloc_output_context2(&mux, NULL, "mp4", tmp_path);
    if (ret < 0 || !mux) {
        set_error(err, errlen, "cannot set up MP4 output: %s", av_err2str(ret));
        return -1;
    }
    enc = open_h264_encoder(width, height, fps, (mux->oformat->flags & AVFMT_GLOBALHEADER) != 0,
                            err, errlen);
    if (!enc) goto done;
    AVStream *stream = avformat_new_stream(mux, NULL);
    if (!stream || avcodec_parameters_from_context(stream->codecpar, enc) < 0) {
        set_error(err, errlen, "cannot set up the MP4 video stream");
        goto done;
    }
    stream->time_base = enc->time_base;
    stream->avg_frame_rate = enc->framerate;
    ret = avio_open(&mux->pb, tmp_path, AVIO_FLAG_WRITE);
    if (ret < 0) {
        set_error(err, errlen, "cannot open %s: %s", tmp_path, av_err2str(ret));
        goto done;
    }
    av_dict_set(&mux_options, "movflags", "+faststart", 0);
    ret = avformat_write_header(mux, &mux_options);
    if (ret < 0) {
        set_error(err, errlen, "cannot write the MP4 header: %s", av_err2str(ret));
        goto done;
    }

    sws = sws_getContext(width, height, AV_PIX_FMT_RGB24, width, height, AV_PIX_FMT_YUV420P,
                         SWS_BICUBIC | SWS_ACCURATE_RND, NULL, NULL, NULL);
    rgb_frame = alloc_frame(AV_PIX_FMT_RGB24, width, height);
    yuv_frame = alloc_frame(AV_PIX_FMT_YUV420P, width, height);
    packet = av_packet_alloc();
    if (!sws || !rgb_frame || !yuv_frame || !packet) {
        set_error(err, errlen, "out of memory setting up the H.264 encoder");
        goto done;
    }
    /* Limited-range BT.709, as tagged on the stream. */
    const int *bt709 = sws_getCoefficients(SWS_CS_ITU709);
    sws_setColorspaceDetails(sws, bt709, 1, bt709, 0, 0, 1 << 16, 1 << 16);
    yuv_frame->color_range = enc->color_range;
    yuv_frame->colorspace = enc->colorspace;
    yuv_frame->color_primaries = enc->color_primaries;
    yuv_frame->color_trc = enc->color_trc;

    size_t frame_bytes = (size_t)width * height * 3;
    for (int t = 0; t < frames; t++) {
        if (av_frame_make_writable(yuv_frame) < 0) {
            set_error(err, errlen, "out of memory encoding frame %d", t);
            goto done;
        }
        copy_rgb_into_frame(rgb + (size_t)t * frame_bytes, width, height, rgb_frame);
        sws_scale(sws, (const uint8_t *const *)rgb_frame->data, rgb_frame->linesize, 0, height,
                  yuv_frame->data, yuv_frame->linesize);
        yuv_frame->pts = t;
        if (encode_and_write(enc, mux, stream, yuv_frame, packet, err, errlen) != 0) goto done;
    }
    if (encode_and_write(enc, mux, stream, NULL, packet, err, errlen) != 0) goto done;
    ret = av_write_trailer(mux);
    if (ret < 0) {
        set_error(err, errlen, "cannot finish the MP4: %s", av_err2str(ret));
        goto done;
    }
    status = 0;
done:
    av_dict_free(&mux_options);
    av_packet_free(&packet);
    av_frame_free(&rgb_frame);
    av_frame_free(&yuv_frame);
    sws_freeContext(sws);
    avcodec_free_context(&enc);
    if (mux->pb && avio_closep(&mux->pb) < 0 && status == 0) {
        set_error(err, errlen, "cannot close %s", tmp_path);
        status = -1;
    }
    avformat_free_context(mux);
    return status;
}

int vd_mp4_write(const char *path, const uint8_t *rgb, int frames, int width, int height, int fps,
                 char *err, size_t errlen)
{
    vd_video_init();
    if (width <= 0 || height <= 0 || width > VD_MP4_MAX_SIDE || height > VD_MP4_MAX_SIDE) {
        set_error(err, errlen, "video size %dx%d is outside 2..%d", width, height, VD_MP4_MAX_SIDE);
        return -1;
    }
    if (width % 2 != 0 || height % 2 != 0) {
        set_error(err, errlen, "video size %dx%d must be even in both dimensions for yuv420p",
                  width, height);
        return -1;
    }
    if (frames <= 0 || frames > VD_MP4_MAX_FRAMES) {
        set_error(err, errlen, "frame count %d is outside 1..%d", frames, VD_MP4_MAX_FRAMES);
        return -1;
    }
    if ((size_t)frames * width * height * 3 > VD_MP4_MAX_RGB_BYTES) {
        set_error(err, errlen, "video of %d frames at %dx%d is too large", frames, width, height);
        return -1;
    }
    if (fps <= 0 || fps > VD_MP4_MAX_FPS) {
        set_error(err, errlen, "frame rate %d is outside 1..%d", fps, VD_MP4_MAX_FPS);
        return -1;
    }
    char tmp_path[PATH_MAX];
    int fd = create_temp_beside(path, tmp_path, sizeof tmp_path, err, errlen);
    if (fd < 0) return -1;
    if (write_mp4_file(tmp_path, rgb, frames, width, height, fps, err, errlen) != 0) {
        close(fd);
        unlink(tmp_path);
        return -1;
    }
    if (commit_temp(fd, tmp_path, path, err, errlen) != 0) {
        unlink(tmp_path);
        return -1;
    }
    return 0;
}

/* ---- MP4 reading ---- */

typedef struct {
    uint8_t *rgb; /* frames so far, (count, height, width, 3) */
    size_t capacity_frames;
    int count, width, height;
    struct SwsContext *sws;
    AVFrame *rgb_frame;
} decoded_video;

static int append_decoded_frame(decoded_video *video, const AVFrame *frame, char *err,
                                size_t errlen)
{
    if (video->count == 0) {
        if (frame->width <= 0 || frame->height <= 0 || frame->width > VD_MP4_MAX_SIDE ||
            frame->height > VD_MP4_MAX_SIDE) {
            set_error(err, errlen, "video size %dx%d is outside 1..%d", frame->width, frame->height,
                      VD_MP4_MAX_SIDE);
            return -1;
        }
        video->width = frame->width;
        video->height = frame->height;
        video->rgb_frame = alloc_frame(AV_PIX_FMT_RGB24, video->width, video->height);
        if (!video->rgb_frame) {
            set_error(err, errlen, "out of memory decoding video");
            return -1;
        }
    } else if (frame->width != video->width || frame->height != video->height) {
        set_error(err, errlen, "video changes size mid-stream (%dx%d to %dx%d)", video->width,
                  video->height, frame->width, frame->height);
        return -1;
    }
    size_t frame_bytes = (size_t)video->width * video->height * 3;
    if (video->count >= VD_MP4_MAX_FRAMES ||
        (size_t)(video->count + 1) * frame_bytes > VD_MP4_MAX_RGB_BYTES) {
        set_error(err, errlen, "video has more than %d frames or %zu bytes of pixels",
                  VD_MP4_MAX_FRAMES, VD_MP4_MAX_RGB_BYTES);
        return -1;
    }
    enum AVPixelFormat source_format = scaler_source_format((enum AVPixelFormat)frame->format);
    video->sws = sws_getCachedContext(video->sws, frame->width, frame->height, source_format,
                                      video->width, video->height, AV_PIX_FMT_RGB24,
                                      SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL,
                                      NULL, NULL);
    if (!video->sws) {
        set_error(err, errlen, "cannot convert video frames from %s",
                  av_get_pix_fmt_name((enum AVPixelFormat)frame->format));
        return -1;
    }
    set_source_colorspace(video->sws, frame);
    sws_scale(video->sws, (const uint8_t *const *)frame->data, frame->linesize, 0, frame->height,
              video->rgb_frame->data, video->rgb_frame->linesize);
    if ((size_t)video->count == video->capacity_frames) {
        video->capacity_frames = video->capacity_frames ? video->capacity_frames * 2 : 16;
        video->rgb = vd_realloc(video->rgb, video->capacity_frames * frame_bytes);
    }
    copy_frame_into_rgb(video->rgb_frame, video->width, video->height,
                        video->rgb + (size_t)video->count * frame_bytes);
    video->count++;
    return 0;
}

/* Sends one packet (NULL to flush) and appends every frame the decoder returns. */
static int decode_video_packet(AVCodecContext *dec, const AVPacket *packet, AVFrame *frame,
                               decoded_video *video, char *err, size_t errlen)
{
    int ret = avcodec_send_packet(dec, packet);
    if (ret < 0 && ret != AVERROR_EOF) {
        set_error(err, errlen, "video decoding failed: %s", av_err2str(ret));
        return -1;
    }
    for (;;) {
        ret = avcodec_receive_frame(dec, frame);
        if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) return 0;
        if (ret < 0) {
            set_error(err, errlen, "video decoding failed: %s", av_err2str(ret));
            return -1;
        }
        int appended = append_decoded_frame(video, frame, err, errlen);
        av_frame_unref(frame);
        if (appended != 0) return -1;
    }
}

int vd_mp4_read(const char *path, uint8_t **rgb, int *frames, int *width, int *height, double *fps,
                char *err, size_t errlen)
{
    vd_video_init();
    *rgb = NULL;
    *frames = *width = *height = 0;
    *fps = 0.0;
    int status = -1;
    AVFormatContext *demux = NULL;
    AVCodecContext *dec = NULL;
    AVPacket *packet = NULL;
    AVFrame *frame = NULL;
    decoded_video video = {0};
    /* Only the MP4 demuxer reading only local files: no playlists or URLs that reach elsewhere. */
    AVDictionary *open_options = NULL;
    av_dict_set(&open_options, "protocol_whitelist", "file", 0);
    int ret = avformat_open_input(&demux, path, av_find_input_format("mp4"), &open_options);
    av_dict_free(&open_options);
    if (ret < 0) {
        set_error(err, errlen, "cannot open %s: %s", path, av_err2str(ret));
        return -1;
    }
    ret = avformat_find_stream_info(demux, NULL);
    if (ret < 0) {
        set_error(err, errlen, "cannot read %s: %s", path, av_err2str(ret));
        goto done;
    }
    const AVCodec *codec = NULL;
    int stream_index = av_find_best_stream(demux, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (stream_index < 0 || !codec) {
        set_error(err, errlen, "%s has no decodable video stream", path);
        goto done;
    }
    AVStream *stream = demux->streams[stream_index];
    const AVCodecParameters *par = stream->codecpar;
    if (par->width <= 0 || par->height <= 0 || par->width > VD_MP4_MAX_SIDE ||
        par->height > VD_MP4_MAX_SIDE) {
        set_error(err, errlen, "video size %dx%d is outside 1..%d", par->width, par->height,
                  VD_MP4_MAX_SIDE);
        goto done;
    }
    dec = avcodec_alloc_context3(codec);
    if (!dec || avcodec_parameters_to_context(dec, par) < 0) {
        set_error(err, errlen, "cannot set up the %s decoder", codec->name);
        goto done;
    }
    dec->max_pixels = (int64_t)VD_MP4_MAX_SIDE * VD_MP4_MAX_SIDE;
    dec->thread_count = 0; /* as many as useful */
    ret = avcodec_open2(dec, codec, NULL);
    if (ret < 0) {
        set_error(err, errlen, "cannot open the %s decoder: %s", codec->name, av_err2str(ret));
        goto done;
    }
    packet = av_packet_alloc();
    frame = av_frame_alloc();
    if (!packet || !frame) {
        set_error(err, errlen, "out of memory decoding %s", path);
        goto done;
    }
    while ((ret = av_read_frame(demux, packet)) >= 0) {
        int decoded = packet->stream_index == stream_index
                          ? decode_video_packet(dec, packet, frame, &video, err, errlen)
                          : 0;
        av_packet_unref(packet);
        if (decoded != 0) goto done;
    }
    if (ret != AVERROR_EOF) {
        set_error(err, errlen, "cannot read %s: %s", path, av_err2str(ret));
        goto done;
    }
    if (decode_video_packet(dec, NULL, frame, &video, err, errlen) != 0) goto done;
    if (video.count == 0) {
        set_error(err, errlen, "%s has no video frames", path);
        goto done;
    }
    AVRational rate = av_guess_frame_rate(demux, stream, NULL);
    *fps = rate.num > 0 && rate.den > 0 ? av_q2d(rate) : 0.0;
    *rgb = video.rgb;
    video.rgb = NULL;
    *frames = video.count;
    *width = video.width;
    *height = video.height;
    status = 0;
done:
    free(video.rgb);
    av_frame_free(&video.rgb_frame);
    sws_freeContext(video.sws);
    av_frame_free(&frame);
    av_packet_free(&packet);
    avcodec_free_context(&dec);
    avformat_close_input(&demux);
    return status;
}

/* ---- PNG writing ---- */

/* Encodes one RGB frame as PNG into a packet the caller frees. */
static AVPacket *encode_png(const uint8_t *rgb, int width, int height, char *err, size_t errlen)
{
    AVPacket *packet = NULL;
    AVFrame *frame = NULL;
    const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_PNG);
    AVCodecContext *enc = codec ? avcodec_alloc_context3(codec) : NULL;
    if (!enc) {
        set_error(err, errlen, "FFmpeg has no PNG encoder");
        return NULL;
    }
    enc->width = width;
    enc->height = height;
    enc->pix_fmt = AV_PIX_FMT_RGB24;
    enc->time_base = (AVRational){1, 1};
    int ret = avcodec_open2(enc, codec, NULL);
    if (ret < 0) {
        set_error(err, errlen, "cannot open the PNG encoder: %s", av_err2str(ret));
        goto fail;
    }
    frame = alloc_frame(AV_PIX_FMT_RGB24, width, height);
    packet = av_packet_alloc();
    if (!frame || !packet) {
        set_error(err, errlen, "out of memory encoding PNG");
        goto fail;
    }
    copy_rgb_into_frame(rgb, width, height, frame);
    frame->pts = 0;
    ret = avcodec_send_frame(enc, frame);
    if (ret >= 0) ret = avcodec_send_frame(enc, NULL);
    if (ret >= 0) ret = avcodec_receive_packet(enc, packet);
    if (ret < 0) {
        set_error(err, errlen, "PNG encoding failed: %s", av_err2str(ret));
        goto fail;
    }
    av_frame_free(&frame);
    avcodec_free_context(&enc);
    return packet;
fail:
    av_packet_free(&packet);
    av_frame_free(&frame);
    avcodec_free_context(&enc);
    return NULL;
}

static int write_all(int fd, const uint8_t *data, size_t size)
{
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        data += n;
        size -= (size_t)n;
    }
    return 0;
}

int vd_png_write(const char *path, const uint8_t *rgb, int width, int height, char *err,
                 size_t errlen)
{
    vd_video_init();
    if (width <= 0 || height <= 0 || width > VD_IMAGE_DEFAULT_MAX_SIDE ||
        height > VD_IMAGE_DEFAULT_MAX_SIDE) {
        set_error(err, errlen, "image size %dx%d is outside 1..%d", width, height,
                  VD_IMAGE_DEFAULT_MAX_SIDE);
        return -1;
    }
    AVPacket *packet = encode_png(rgb, width, height, err, errlen);
    if (!packet) return -1;
    char tmp_path[PATH_MAX];
    int fd = create_temp_beside(path, tmp_path, sizeof tmp_path, err, errlen);
    if (fd < 0) {
        av_packet_free(&packet);
        return -1;
    }
    int status = 0;
    if (write_all(fd, packet->data, (size_t)packet->size) != 0) {
        set_error(err, errlen, "cannot write %s: %s", tmp_path, strerror(errno));
        close(fd);
        status = -1;
    } else if (commit_temp(fd, tmp_path, path, err, errlen) != 0) {
        status = -1;
    }
    if (status != 0) unlink(tmp_path);
    av_packet_free(&packet);
    return status;
}

/* ---- image decoding ---- */

typedef enum { IMAGE_UNSUPPORTED, IMAGE_PNG, IMAGE_JPEG } image_type;

static image_type sniff_image_type(const uint8_t *bytes, size_t size)
{
    static const uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (size >= 8 && memcmp(bytes, png_signature, 8) == 0) return IMAGE_PNG;
    if (size >= 3 && bytes[0] == 0xff && bytes[1] == 0xd8 && bytes[2] == 0xff) return IMAGE_JPEG;
    return IMAGE_UNSUPPORTED;
}

static uint32_t read_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Width and height from the IHDR chunk, which a PNG must start with. */
static int png_dimensions(const uint8_t *bytes, size_t size, int64_t *width, int64_t *height,
                          char *err, size_t errlen)
{
    if (size < 8 + 8 + 13) {
        set_error(err, errlen, "truncated PNG (no complete header)");
        return -1;
    }
    if (read_be32(bytes + 8) != 13 || memcmp(bytes + 12, "IHDR", 4) != 0) {
        set_error(err, errlen, "corrupt PNG (first chunk is not a valid IHDR)");
        return -1;
    }
    *width = read_be32(bytes + 16);
    *height = read_be32(bytes + 20);
    return 0;
}

/* Start-of-frame markers (SOF0..SOF15, but not DHT C4, JPG C8 or DAC CC) carry the size. */
static int is_jpeg_frame_header(uint8_t marker)
{
    return marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8 && marker != 0xcc;
}

/* Width and height from the first frame header, walking the marker segments. The walk goes on to
 * the first scan and sets *scan_start to its offset, or to 0 where the data ends before one. */
static int jpeg_dimensions(const uint8_t *bytes, size_t size, int64_t *width, int64_t *height,
                           size_t *scan_start, char *err, size_t errlen)
{
    int have_frame_header = 0;
    *scan_start = 0;
    size_t pos = 2; /* past SOI */
    while (pos < size) {
        if (bytes[pos] != 0xff) {
            set_error(err, errlen, "corrupt JPEG (bad marker at byte %zu)", pos);
            return -1;
        }
        while (pos < size && bytes[pos] == 0xff) pos++; /* fill bytes */
        if (pos >= size) break;
        uint8_t marker = bytes[pos++];
        if (marker == 0x01 || (marker >= 0xd0 && marker <= 0xd8)) continue; /* no length */
        if (marker == 0xd9 || marker == 0xda || marker == 0x00) {
            if (marker == 0xda) *scan_start = pos;
            break;
        }
        if (pos + 2 > size) break;
        size_t segment_length = (size_t)bytes[pos] << 8 | bytes[pos + 1];
        if (segment_length < 2) {
            set_error(err, errlen, "corrupt JPEG (bad segment length at byte %zu)", pos);
            return -1;
        }
        if (is_jpeg_frame_header(marker) && !have_frame_header) {
            /* length(2) precision(1) height(2) width(2) */
            if (segment_length < 8 || pos + 7 > size) break;
            *height = (int64_t)bytes[pos + 3] << 8 | bytes[pos + 4];
            *width = (int64_t)bytes[pos + 5] << 8 | bytes[pos + 6];
            have_frame_header = 1;
        }
        pos += segment_length;
    }
    if (!have_frame_header) {
        set_error(err, errlen, "truncated or corrupt JPEG (no frame header)");
        return -1;
    }
    return 0;
}

/* A JPEG needs a scan and an end-of-image marker after it. The decoder would conceal a missing
 * tail as grey blocks, but a cut-off upload should be an error, not a damaged first frame.
 * (Entropy-coded data never contains FF D9, so the first one after the scan starts is the end.) */
static int check_jpeg_complete(const uint8_t *bytes, size_t size, size_t scan_start, char *err,
                               size_t errlen)
{
    if (scan_start == 0 || !memmem(bytes + scan_start, size - scan_start, "\xff\xd9", 2)) {
        set_error(err, errlen, "truncated JPEG (%s)",
                  scan_start == 0 ? "no image data" : "no end-of-image marker");
        return -1;
    }
    return 0;
}

static int check_image_dimensions(int64_t width, int64_t height, const vd_image_limits *limits,
                                  char *err, size_t errlen)
{
    if (width <= 0 || height <= 0) {
        set_error(err, errlen, "invalid image size %" PRId64 "x%" PRId64, width, height);
        return -1;
    }
    if (width > limits->max_side || height > limits->max_side) {
        set_error(err, errlen,
                  "image is %" PRId64 "x%" PRId64 ", over the limit of %d pixels a side", width,
                  height, limits->max_side);
        return -1;
    }
    if (width * height > limits->max_pixels) {
        set_error(err, errlen,
                  "image is %" PRId64 "x%" PRId64 ", over the limit of %" PRId64 " pixels", width,
                  height, limits->max_pixels);
        return -1;
    }
    return 0;
}

/* A read-only AVIOContext source over a caller's buffer. */
typedef struct {
    const uint8_t *data;
    size_t size;
    size_t pos;
} memory_source;

static int memory_read(void *opaque, uint8_t *buf, int buf_size)
{
    memory_source *source = opaque;
    size_t left = source->size - source->pos;
    if (left == 0) return AVERROR_EOF;
    size_t n = buf_size < 0 ? 0 : (size_t)buf_size;
    if (n > left) n = left;
    memcpy(buf, source->data + source->pos, n);
    source->pos += n;
    return (int)n;
}

static int64_t memory_seek(void *opaque, int64_t offset, int whence)
{
    memory_source *source = opaque;
    int64_t base;
    switch (whence & ~AVSEEK_FORCE) {
    case AVSEEK_SIZE: return (int64_t)source->size;
    case SEEK_SET: base = 0; break;
    case SEEK_CUR: base = (int64_t)source->pos; break;
    case SEEK_END: base = (int64_t)source->size; break;
    default: return AVERROR(EINVAL);
    }
    if (offset < -base || offset > (int64_t)source->size - base) return AVERROR(EINVAL);
    source->pos = (size_t)(base + offset);
    return (int64_t)source->pos;
}

/* Demuxes and decodes the first image of a PNG or JPEG held in memory into frame. The decoder
 * refuses to allocate more than max_pixels, so a header that lies is caught there too. */
static int decode_first_image(const uint8_t *bytes, size_t size, image_type type,
                              int64_t max_pixels, AVFrame *frame, char *err, size_t errlen)
{
    int status = -1;
    memory_source source = {bytes, size, 0};
    enum { IO_BUFFER_BYTES = 4096 };
    AVFormatContext *demux = NULL;
    AVCodecContext *dec = NULL;
    AVPacket *packet = NULL;
    uint8_t *io_buffer = av_malloc(IO_BUFFER_BYTES);
    AVIOContext *io = io_buffer ? avio_alloc_context(io_buffer, IO_BUFFER_BYTES, 0, &source,
                                                     memory_read, NULL, memory_seek)
                                : NULL;
    demux = avformat_alloc_context();
    packet = av_packet_alloc();
    if (!io || !demux || !packet) {
        set_error(err, errlen, "out of memory decoding image");
        goto done;
    }
    demux->pb = io;
    /* Only the image demuxer the signature named: nothing else probes this data. */
    const char *format_name = type == IMAGE_PNG ? "png_pipe" : "jpeg_pipe";
    const AVInputFormat *format = av_find_input_format(format_name);
    if (!format) {
        set_error(err, errlen, "FFmpeg has no %s demuxer", format_name);
        goto done;
    }
    int ret = avformat_open_input(&demux, NULL, format, NULL);
    if (ret < 0) { /* demux was freed */
        set_error(err, errlen, "cannot read image: %s", av_err2str(ret));
        goto done;
    }
    enum AVCodecID expected = type == IMAGE_PNG ? AV_CODEC_ID_PNG : AV_CODEC_ID_MJPEG;
    if (demux->nb_streams != 1 || demux->streams[0]->codecpar->codec_id != expected) {
        set_error(err, errlen, "unsupported image type (expected PNG or JPEG)");
        goto done;
    }
    const AVCodec *codec = avcodec_find_decoder(expected);
    dec = codec ? avcodec_alloc_context3(codec) : NULL;
    if (!dec || avcodec_parameters_to_context(dec, demux->streams[0]->codecpar) < 0) {
        set_error(err, errlen, "cannot set up the image decoder");
        goto done;
    }
    dec->max_pixels = max_pixels;
    dec->err_recognition = AV_EF_EXPLODE | AV_EF_CRCCHECK;
    ret = avcodec_open2(dec, codec, NULL);
    if (ret < 0) {
        set_error(err, errlen, "cannot open the image decoder: %s", av_err2str(ret));
        goto done;
    }
    /* Feed packets until the first picture comes out; the data is bounded, so this ends. */
    int draining = 0;
    for (;;) {
        ret = avcodec_receive_frame(dec, frame);
        if (ret >= 0) break;
        if (ret != AVERROR(EAGAIN) || draining) {
            set_error(err, errlen, "corrupt or truncated image (%s)",
                      ret == AVERROR_EOF ? "no picture in it" : av_err2str(ret));
            goto done;
        }
        ret = av_read_frame(demux, packet);
        if (ret == AVERROR_EOF) {
            draining = 1;
            ret = avcodec_send_packet(dec, NULL);
        } else if (ret >= 0) {
            ret = avcodec_send_packet(dec, packet);
            av_packet_unref(packet);
        }
        if (ret < 0) {
            set_error(err, errlen, "corrupt or truncated image (%s)", av_err2str(ret));
            goto done;
        }
    }
    if (frame->decode_error_flags || (frame->flags & AV_FRAME_FLAG_CORRUPT)) {
        set_error(err, errlen, "corrupt or truncated image (damaged picture data)");
        goto done;
    }
    status = 0;
done:
    av_packet_free(&packet);
    avcodec_free_context(&dec);
    avformat_close_input(&demux);
    if (io) av_freep(&io->buffer);
    else av_free(io_buffer);
    avio_context_free(&io);
    return status;
}

/* Converts a decoded picture to packed RGB24 at its own size, compositing any alpha on white. */
static AVFrame *flatten_to_rgb(const AVFrame *picture, char *err, size_t errlen)
{
    enum AVPixelFormat source_format = (enum AVPixelFormat)picture->format;
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(source_format);
    int has_alpha = desc && ((desc->flags & AV_PIX_FMT_FLAG_ALPHA) ||
                             (desc->flags & AV_PIX_FMT_FLAG_PAL));
    enum AVPixelFormat converted_format = has_alpha ? AV_PIX_FMT_RGBA : AV_PIX_FMT_RGB24;
    int width = picture->width, height = picture->height;
    AVFrame *converted = alloc_frame(converted_format, width, height);
    AVFrame *rgb = has_alpha ? alloc_frame(AV_PIX_FMT_RGB24, width, height) : converted;
    struct SwsContext *sws = sws_getContext(width, height, scaler_source_format(source_format),
                                            width, height, converted_format,
                                            SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT,
                                            NULL, NULL, NULL);
    if (!converted || !rgb || !sws) {
        set_error(err, errlen, "cannot convert the image from %s",
                  desc ? desc->name : "an unknown pixel format");
        sws_freeContext(sws);
        if (rgb != converted) av_frame_free(&rgb);
        av_frame_free(&converted);
        return NULL;
    }
    set_source_colorspace(sws, picture);
    sws_scale(sws, (const uint8_t *const *)picture->data, picture->linesize, 0, height,
              converted->data, converted->linesize);
    sws_freeContext(sws);
    if (!has_alpha) return converted;
    for (int y = 0; y < height; y++) {
        const uint8_t *src = converted->data[0] + (size_t)y * converted->linesize[0];
        uint8_t *dst = rgb->data[0] + (size_t)y * rgb->linesize[0];
        for (int x = 0; x < width; x++, src += 4, dst += 3) {
            unsigned alpha = src[3];
            for (int c = 0; c < 3; c++)
                dst[c] = (uint8_t)((src[c] * alpha + 255u * (255u - alpha) + 127u) / 255u);
        }
    }
    av_frame_free(&converted);
    return rgb;
}

/* Scales the picture to cover out_width x out_height with its aspect ratio kept, taking the
 * centre: equivalently, crops the source to the target's aspect ratio and scales that. Area
 * averaging when shrinking (no aliasing), bicubic when enlarging. */
static int fit_to_target(const AVFrame *rgb, int out_width, int out_height, uint8_t *out_rgb,
                         char *err, size_t errlen)
{
    int64_t width = rgb->width, height = rgb->height;
    int64_t crop_width = width, crop_height = height;
    if (width * out_height > height * out_width)
        crop_width = (height * out_width + out_height / 2) / out_height;
    else
        crop_height = (width * out_height + out_width / 2) / out_width;
    if (crop_width < 1) crop_width = 1;
    if (crop_height < 1) crop_height = 1;
    int64_t left = (width - crop_width) / 2, top = (height - crop_height) / 2;
    int shrinking = crop_width > out_width || crop_height > out_height;
    struct SwsContext *sws = sws_getContext((int)crop_width, (int)crop_height, AV_PIX_FMT_RGB24,
                                            out_width, out_height, AV_PIX_FMT_RGB24,
                                            (shrinking ? SWS_AREA : SWS_BICUBIC) | SWS_ACCURATE_RND,
                                            NULL, NULL, NULL);
    AVFrame *fitted = alloc_frame(AV_PIX_FMT_RGB24, out_width, out_height);
    if (!sws || !fitted) {
        set_error(err, errlen, "cannot scale the image to %dx%d", out_width, out_height);
        sws_freeContext(sws);
        av_frame_free(&fitted);
        return -1;
    }
    const uint8_t *crop_start = rgb->data[0] + top * rgb->linesize[0] + left * 3;
    const uint8_t *const source_planes[4] = {crop_start, NULL, NULL, NULL};
    const int source_strides[4] = {rgb->linesize[0], 0, 0, 0};
    sws_scale(sws, source_planes, source_strides, 0, (int)crop_height, fitted->data,
              fitted->linesize);
    copy_frame_into_rgb(fitted, out_width, out_height, out_rgb);
    sws_freeContext(sws);
    av_frame_free(&fitted);
    return 0;
}

static const vd_image_limits default_image_limits = {
    VD_IMAGE_DEFAULT_MAX_BYTES, VD_IMAGE_DEFAULT_MAX_SIDE, VD_IMAGE_DEFAULT_MAX_PIXELS};

int vd_image_decode(const uint8_t *bytes, size_t size, const vd_image_limits *limits,
                    int out_width, int out_height, uint8_t *out_rgb, char *err, size_t errlen)
{
    vd_video_init();
    if (!limits) limits = &default_image_limits;
    if (out_width <= 0 || out_height <= 0 || out_width > VD_MP4_MAX_SIDE ||
        out_height > VD_MP4_MAX_SIDE) {
        set_error(err, errlen, "target size %dx%d is outside 1..%d", out_width, out_height,
                  VD_MP4_MAX_SIDE);
        return -1;
    }
    if (size == 0) {
        set_error(err, errlen, "empty image");
        return -1;
    }
    if (size > limits->max_bytes) {
        set_error(err, errlen, "image is %zu bytes, over the limit of %zu bytes", size,
                  limits->max_bytes);
        return -1;
    }
    if (size > INT_MAX) { /* FFmpeg packet sizes are int */
        set_error(err, errlen, "image is too large (%zu bytes)", size);
        return -1;
    }
    image_type type = sniff_image_type(bytes, size);
    if (type == IMAGE_UNSUPPORTED) {
        set_error(err, errlen, "unsupported image type (expected PNG or JPEG)");
        return -1;
    }
    int64_t width = 0, height = 0;
    size_t jpeg_scan_start = 0;
    int found = type == IMAGE_PNG
                    ? png_dimensions(bytes, size, &width, &height, err, errlen)
                    : jpeg_dimensions(bytes, size, &width, &height, &jpeg_scan_start, err, errlen);
    if (found != 0 || check_image_dimensions(width, height, limits, err, errlen) != 0) return -1;
    if (type == IMAGE_JPEG && check_jpeg_complete(bytes, size, jpeg_scan_start, err, errlen) != 0)
        return -1;

    AVFrame *picture = av_frame_alloc();
    if (!picture) {
        set_error(err, errlen, "out of memory decoding image");
        return -1;
    }
    int status = -1;
    AVFrame *rgb = NULL;
    if (decode_first_image(bytes, size, type, limits->max_pixels, picture, err, errlen) != 0)
        goto done;
    /* The decoded size is what counts, whatever the header said. */
    if (check_image_dimensions(picture->width, picture->height, limits, err, errlen) != 0)
        goto done;
    rgb = flatten_to_rgb(picture, err, errlen);
    if (!rgb) goto done;
    status = fit_to_target(rgb, out_width, out_height, out_rgb, err, errlen);
done:
    av_frame_free(&rgb);
    av_frame_free(&picture);
    return status;
}

int vd_image_read_file(const char *path, const vd_image_limits *limits, int out_width,
                       int out_height, uint8_t *out_rgb, char *err, size_t errlen)
{
    if (!limits) limits = &default_image_limits;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_error(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        set_error(err, errlen, "%s is not a regular file", path);
        close(fd);
        return -1;
    }
    if ((uint64_t)st.st_size > limits->max_bytes) {
        set_error(err, errlen, "%s is %lld bytes, over the limit of %zu bytes", path,
                  (long long)st.st_size, limits->max_bytes);
        close(fd);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    uint8_t *bytes = vd_malloc(size);
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, bytes + got, size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fd);
    int status = got == size
                     ? vd_image_decode(bytes, size, limits, out_width, out_height, out_rgb, err,
                                       errlen)
                     : (set_error(err, errlen, "cannot read %s", path), -1);
    free(bytes);
    return status;
}

/* ---- float frame conversion ---- */

static uint8_t unit_to_byte(float value)
{
    float scaled = (value + 1.0f) * 127.5f;
    if (!(scaled > 0.0f)) return 0; /* also NaN */
    if (scaled >= 255.0f) return 255;
    return (uint8_t)(scaled + 0.5f);
}

void vd_frames_to_rgb8(const float *chw_frames, int frames, int width, int height, uint8_t *rgb)
{
    size_t plane = (size_t)width * height;
    for (int t = 0; t < frames; t++) {
        const float *frame = chw_frames + (size_t)t * 3 * plane;
        uint8_t *out = rgb + (size_t)t * 3 * plane;
        for (size_t i = 0; i < plane; i++)
            for (int c = 0; c < 3; c++) out[i * 3 + c] = unit_to_byte(frame[c * plane + i]);
    }
}

void vd_rgb8_to_chw(const uint8_t *rgb, int width, int height, float *chw)
{
    size_t plane = (size_t)width * height;
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) chw[c * plane + i] = rgb[i * 3 + c] / 127.5f - 1.0f;
}
