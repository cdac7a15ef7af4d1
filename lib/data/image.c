/* image.c: PNG (libpng) and JPEG (libjpeg-turbo) decoding to 8-bit grey or
 * RGB, with the conversions PIL's convert('L') / convert('RGB') make:
 * palettes expanded, alpha dropped without compositing, 16-bit samples
 * reduced to their high byte, RGB -> L as (19595 R + 38470 G + 7471 B +
 * 0x8000) >> 16. The format is decided by the file's first bytes. Hostile
 * headers cannot make large allocations: at most QT_IMAGE_MAX_SIDE pixels on
 * a side and QT_IMAGE_MAX_PIXELS in all. */
#include "engine.h"

#include <stdio.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <setjmp.h>
#include <string.h>

#define QT_IMAGE_MAX_SIDE 16384
#define QT_IMAGE_MAX_PIXELS (1 << 28)

void qt_image_release(struct qt_image *img) {
    if (!img)
        return;
    free(img->px);
    memset(img, 0, sizeof *img);
}

static int check_size(const char *path, uint32_t w, uint32_t h, struct qt_err *err) {
    if (w == 0 || h == 0)
        return qt_errf(err, QT_EDATA, "image '%s' is empty (%ux%u)", path, w, h);
    if (w > QT_IMAGE_MAX_SIDE || h > QT_IMAGE_MAX_SIDE || (uint64_t)w * h > QT_IMAGE_MAX_PIXELS)
        return qt_errf(err, QT_EDATA, "image '%s' is too large (%ux%u)", path, w, h);
    return 0;
}

/* ---- PNG ---------------------------------------------------------------- */

struct png_ctx {
    const unsigned char *buf;
    size_t len, pos;
    char msg[200];
};

static void png_read_mem(png_structp png, png_bytep out, png_size_t n) {
    struct png_ctx *c = png_get_io_ptr(png);
    if (n > c->len - c->pos) {
        snprintf(c->msg, sizeof c->msg, "truncated file");
        png_longjmp(png, 1);
    }
    memcpy(out, c->buf + c->pos, n);
    c->pos += n;
}

static void png_error_fn(png_structp png, png_const_charp msg) {
    struct png_ctx *c = png_get_error_ptr(png);
    if (!c->msg[0])
        snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_warn_fn(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

/* The decoding transforms, after png_read_info: an image expands to 8-bit
 * grey or RGB (palette, low depths, tRNS, 16 bits, alpha); a mask keeps its
 * palette or grey indices, one byte each. The channel count, or -1 with err
 * set. (libpng may longjmp out of here to the caller's setjmp.) */
static int png_transforms(png_structp png, png_infop info, const char *path, int mask, struct qt_err *err) {
    int ct = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (!mask) {
        png_set_expand(png);   /* palette -> RGB, grey < 8 bits -> 8, tRNS -> alpha */
        png_set_strip_16(png); /* 16 -> 8 bits: the high byte */
        png_set_strip_alpha(png);
    } else if ((ct != PNG_COLOR_TYPE_PALETTE && ct != PNG_COLOR_TYPE_GRAY) || depth > 8) {
        qt_errf(err, QT_EDATA,
                "mask '%s' is a %d-bit %s PNG; a mask holds one class index per pixel (palette or grey, "
                "at most 8 bits)", path, depth,
                ct == PNG_COLOR_TYPE_RGB ? "RGB" : ct == PNG_COLOR_TYPE_RGB_ALPHA ? "RGBA"
                : ct == PNG_COLOR_TYPE_GRAY_ALPHA ? "grey+alpha" : depth > 8 ? "16-bit" : "other");
        return -1;
    } else if (depth < 8) {
        png_set_packing(png); /* one byte per index, value unchanged */
    }
    if (png_get_interlace_type(png, info) != PNG_INTERLACE_NONE)
        png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int c = !mask && (ct & PNG_COLOR_MASK_COLOR) ? 3 : 1;
    if ((int)png_get_channels(png, info) != c ||
        (mask && png_get_rowbytes(png, info) != png_get_image_width(png, info))) {
        qt_errf(err, QT_EDATA, "%s '%s': unexpected PNG layout", mask ? "mask" : "image", path);
        return -1;
    }
    return c;
}

/* An image (mask 0) or a class-index mask (mask 1) from a PNG in memory. */
static int load_png(struct qt_image *img, const char *path, const unsigned char *buf, size_t len, int mask,
                    struct qt_err *err) {
    struct png_ctx ctx = {buf, len, 0, ""};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_error_fn, png_warn_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    unsigned char *volatile px = NULL;
    png_bytep *volatile rows = NULL;
    if (!png || !info) {
        png_destroy_read_struct(&png, info ? &info : NULL, NULL);
        return qt_errf(err, QT_ENOMEM, "out of memory decoding '%s'", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(px);
        free(rows);
        return qt_errf(err, QT_EDATA, "%s '%s' is not a valid PNG (%s)", mask ? "mask" : "image", path,
                       ctx.msg[0] ? ctx.msg : "corrupt");
    }
    png_set_read_fn(png, &ctx, png_read_mem);
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff); /* check_size() decides, with a clearer message */
    png_set_chunk_malloc_max(png, 64 << 20);
    png_read_info(png, info);
    uint32_t w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int c = check_size(path, w, h, err) ? -1 : png_transforms(png, info, path, mask, err);
    if (c < 0) {
        png_destroy_read_struct(&png, &info, NULL);
        return err->code;
    }
    px = malloc((size_t)w * h * c);
    rows = malloc(sizeof(png_bytep) * h);
    if (!px || !rows) {
        png_destroy_read_struct(&png, &info, NULL);
        free(px);
        free(rows);
        return qt_errf(err, QT_ENOMEM, "out of memory decoding '%s'", path);
    }
    for (uint32_t y = 0; y < h; y++)
        rows[y] = px + (size_t)y * w * c;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    img->w = (int)w;
    img->h = (int)h;
    img->c = c;
    img->px = px;
    return 0;
}

/* ---- JPEG ---------------------------------------------------------------- */

struct jpg_err {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
};

static void jpg_error_exit(j_common_ptr cinfo) {
    struct jpg_err *e = (struct jpg_err *)cinfo->err;
    e->pub.format_message(cinfo, e->msg);
    longjmp(e->jb, 1);
}

static void jpg_output_message(j_common_ptr cinfo) {
    (void)cinfo;
}

/* Warnings: libjpeg pads a truncated file with grey and goes on, so a few
 * hundred bytes declaring 16384x16384 would cost seconds and a gigabyte. A
 * truncated file is an error (as PIL says "image file is truncated"), and so
 * is a file that keeps warning. */
static void jpg_emit_message(j_common_ptr cinfo, int level) {
    struct jpg_err *e = (struct jpg_err *)cinfo->err;
    if (level >= 0)
        return;
    if (e->pub.msg_code == JWRN_JPEG_EOF || ++e->pub.num_warnings > 100) {
        e->pub.format_message(cinfo, e->msg);
        longjmp(e->jb, 1);
    }
}

static int load_jpeg(struct qt_image *img, const char *path, const unsigned char *buf, size_t len,
                     struct qt_err *err) {
    struct jpeg_decompress_struct ci;
    struct jpg_err je;
    unsigned char *volatile px = NULL;
    memset(&ci, 0, sizeof ci);
    ci.err = jpeg_std_error(&je.pub);
    je.pub.error_exit = jpg_error_exit;
    je.pub.output_message = jpg_output_message;
    je.pub.emit_message = jpg_emit_message;
    je.msg[0] = 0;
    if (setjmp(je.jb)) {
        jpeg_destroy_decompress(&ci);
        free(px);
        return qt_errf(err, QT_EDATA, "image '%s' is not a valid JPEG (%s)", path, je.msg);
    }
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, buf, (unsigned long)len);
    jpeg_read_header(&ci, TRUE);
    if (check_size(path, ci.image_width, ci.image_height, err)) {
        jpeg_destroy_decompress(&ci);
        return err->code;
    }
    int c;
    if (ci.jpeg_color_space == JCS_GRAYSCALE) {
        ci.out_color_space = JCS_GRAYSCALE;
        c = 1;
    } else if (ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK) {
        jpeg_destroy_decompress(&ci);
        return qt_errf(err, QT_EDATA, "image '%s' is a CMYK JPEG (not supported)", path);
    } else {
        ci.out_color_space = JCS_RGB;
        c = 3;
    }
    jpeg_start_decompress(&ci);
    if ((int)ci.output_components != c) {
        jpeg_destroy_decompress(&ci);
        return qt_errf(err, QT_EDATA, "image '%s': unexpected JPEG layout", path);
    }
    px = malloc((size_t)ci.output_width * ci.output_height * c);
    if (!px) {
        jpeg_destroy_decompress(&ci);
        return qt_errf(err, QT_ENOMEM, "out of memory decoding '%s'", path);
    }
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW row = px + (size_t)ci.output_scanline * ci.output_width * c;
        jpeg_read_scanlines(&ci, &row, 1);
    }
    jpeg_finish_decompress(&ci);
    img->w = (int)ci.output_width;
    img->h = (int)ci.output_height;
    img->c = c;
    img->px = px;
    jpeg_destroy_decompress(&ci);
    return 0;
}

/* ---- conversions ------------------------------------------------------- */

static int convert(struct qt_image *img, int want_c, const char *path, struct qt_err *err) {
    if (!want_c || want_c == img->c)
        return 0;
    size_t n = (size_t)img->w * img->h;
    unsigned char *px = malloc(n * (size_t)want_c);
    if (!px)
        return qt_errf(err, QT_ENOMEM, "out of memory converting '%s'", path);
    if (want_c == 3) {
        for (size_t i = 0; i < n; i++)
            px[3 * i] = px[3 * i + 1] = px[3 * i + 2] = img->px[i];
    } else {
        for (size_t i = 0; i < n; i++) {
            const unsigned char *p = img->px + 3 * i;
            px[i] = (unsigned char)((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16);
        }
    }
    free(img->px);
    img->px = px;
    img->c = want_c;
    return 0;
}

int qt_image_load_mem(struct qt_image *img, const void *buf, size_t len, const char *name, int want_c,
                      struct qt_err *err) {
    int rc;
    const unsigned char *b = buf;
    memset(img, 0, sizeof *img);
    if (want_c != 0 && want_c != 1 && want_c != 3)
        return qt_errf(err, QT_EUSAGE, "images have 1 or 3 channels, not %d", want_c);
    if (len >= 8 && !png_sig_cmp(b, 0, 8))
        rc = load_png(img, name, b, len, 0, err);
    else if (len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        rc = load_jpeg(img, name, b, len, err);
    else
        rc = qt_errf(err, QT_EDATA, "image '%s' is neither PNG nor JPEG", name);
    if (!rc)
        rc = convert(img, want_c, name, err);
    if (rc)
        qt_image_release(img);
    return rc;
}

int qt_image_load(struct qt_image *img, const char *path, int want_c, struct qt_err *err) {
    void *buf;
    size_t len;
    memset(img, 0, sizeof *img);
    if (want_c != 0 && want_c != 1 && want_c != 3)
        return qt_errf(err, QT_EUSAGE, "images have 1 or 3 channels, not %d", want_c);
    if (qt_read_regular_file(path, (size_t)1 << 30, &buf, &len, err))
        return err->code;
    int rc = qt_image_load_mem(img, buf, len, path, want_c, err);
    free(buf);
    return rc;
}

/* ---- class-index masks --------------------------------------------------- */

/* A segmentation mask (load_png with mask set): a PNG whose samples are
 * class indices, as VOC's palette PNGs are (the palette index is the class;
 * 255 = ignore) or an 8-bit (or lower depth) grey PNG. Nothing is expanded
 * or converted: the stored index is the class. Any other layout is
 * QT_EDATA naming the file. */
int qt_mask_load(struct qt_image *img, const char *path, struct qt_err *err) {
    void *buf;
    size_t len;
    memset(img, 0, sizeof *img);
    if (qt_read_regular_file(path, (size_t)1 << 30, &buf, &len, err))
        return err->code;
    int rc = len >= 8 && !png_sig_cmp(buf, 0, 8) ? load_png(img, path, buf, len, 1, err)
                                                   : qt_errf(err, QT_EDATA, "mask '%s' is not a PNG", path);
    free(buf);
    return rc;
}
