/* preproc.c: torchvision 0.14 transforms on 8-bit images, bit-exact with
 * PIL where PIL does the work:
 *   Resize(n)        shorter side n, the longer int(n * long / short), then
 *                    PIL's Image.resize(BILINEAR): Pillow's Resample.c
 *                    (triangle filter scaled by the reduction factor, so it
 *                    antialiases; coefficients in 22-bit fixed point;
 *                    horizontal pass, then vertical, each rounding to 8 bits).
 *   CenterCrop       top = int(round((h - ch) / 2)), round half to even,
 *                    zero padding when the crop is larger than the image.
 *   ToTensor/Normalize  (p * scale - mean[c]) / std[c], planar CHW.
 * Augmentation (training): RandomResizedCrop (scale (s, 1), ratio (3/4, 4/3),
 * 10 attempts then the centre fallback, as torchvision) and horizontal flip
 * with probability 1/2, drawn from splitmix64 on *rng_state. */
#include "engine.h"

#include <math.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)

void qt_preproc_default(struct qt_preproc *p) {
    memset(p, 0, sizeof *p);
    p->channels = 3;
    p->scale = 1.0f / 255.0f;
    for (int i = 0; i < 3; i++)
        p->std[i] = 1.0f;
    p->rrc_min_scale = 0.08f;
}

int qt_preproc_preset(struct qt_preproc *p, const char *name, struct qt_err *err) {
    static const float im_mean[3] = {0.485f, 0.456f, 0.406f}, im_std[3] = {0.229f, 0.224f, 0.225f};
    if (!strcmp(name, "imagenet")) {
        p->channels = 3;
        p->resize = 256;
        p->crop_h = p->crop_w = 224;
        memcpy(p->mean, im_mean, sizeof im_mean);
        memcpy(p->std, im_std, sizeof im_std);
    } else if (!strcmp(name, "imagenet-tf") || !strcmp(name, "inception")) {
        p->channels = 3;
        p->resize = 256;
        p->crop_h = p->crop_w = 224;
        for (int i = 0; i < 3; i++)
            p->mean[i] = p->std[i] = 0.5f;
    } else if (!strcmp(name, "mnist")) {
        p->channels = 1;
        p->resize = 0;
        p->crop_h = p->crop_w = 0;
        for (int i = 0; i < 3; i++)
            p->mean[i] = p->std[i] = 0.5f;
    } else {
        return qt_errf(err, QT_EUSAGE, "unknown preset '%s' (imagenet, imagenet-tf, mnist)", name);
    }
    p->scale = 1.0f / 255.0f;
    return 0;
}

static void resized_size(int resize, int w, int h, int *ow, int *oh) {
    if (resize <= 0) {
        *ow = w;
        *oh = h;
        return;
    }
    int s = w <= h ? w : h, l = w <= h ? h : w;
    int nl = (int)((double)resize * l / s);
    *ow = w <= h ? resize : nl;
    *oh = w <= h ? nl : resize;
}

void qt_preproc_out_size(const struct qt_preproc *p, int w, int h, int *ow, int *oh) {
    if (p->rrc) {
        *ow = p->crop_w;
        *oh = p->crop_h;
        return;
    }
    resized_size(p->resize, w, h, ow, oh);
    if (p->resize_h > 0) {
        *ow = p->resize_w;
        *oh = p->resize_h;
    }
    if (p->crop_h > 0) {
        *oh = p->crop_h;
        *ow = p->crop_w;
    }
}

/* ---- Pillow's resample ----------------------------------------------------- */

static double bilinear(double x) {
    if (x < 0)
        x = -x;
    return x < 1 ? 1 - x : 0;
}

/* Fixed-point coefficients of one pass; returns ksize or -1 (no memory). */
static int coeffs(int in_size, double in0, double in1, int out_size, int **boundsp, int32_t **kkp) {
    double scale = (in1 - in0) / out_size, fscale = scale < 1 ? 1 : scale;
    double support = 1.0 * fscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *kk = malloc(sizeof(double) * (size_t)out_size * ksize);
    int32_t *ik = malloc(sizeof(int32_t) * (size_t)out_size * ksize);
    int *bounds = malloc(sizeof(int) * (size_t)out_size * 2);
    if (!kk || !ik || !bounds) {
        free(kk);
        free(ik);
        free(bounds);
        return -1;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale, ww = 0, ss = 1.0 / fscale;
        int xmin = (int)(center - support + 0.5), xmax;
        if (xmin < 0)
            xmin = 0;
        xmax = (int)(center + support + 0.5);
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        double *k = &kk[(size_t)xx * ksize];
        int x;
        for (x = 0; x < xmax; x++) {
            double w = bilinear((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0)
                k[x] /= ww;
        for (; x < ksize; x++)
            k[x] = 0;
        bounds[xx * 2] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    for (size_t i = 0; i < (size_t)out_size * ksize; i++)
        ik[i] = kk[i] < 0 ? (int32_t)(-0.5 + kk[i] * (1 << PRECISION_BITS))
                          : (int32_t)(0.5 + kk[i] * (1 << PRECISION_BITS));
    free(kk);
    *boundsp = bounds;
    *kkp = ik;
    return ksize;
}

static inline unsigned char clip8(int64_t v) {
    v >>= PRECISION_BITS;
    return v < 0 ? 0 : v > 255 ? 255 : (unsigned char)v;
}

/* PIL Image.resize((ow, oh), BILINEAR) of the box [x0, x0+bw) x [y0, y0+bh)
 * of src, which for torchvision is always the whole (cropped) image. */
static int pil_resize(const struct qt_image *src, int ow, int oh, struct qt_image *dst) {
    int c = src->c, iw = src->w, ih = src->h;
    int *bh = NULL, *bv = NULL;
    int32_t *kh = NULL, *kv = NULL;
    unsigned char *tmp = NULL, *out = NULL;
    int rc = -1;
    int kszh = coeffs(iw, 0, iw, ow, &bh, &kh), kszv = kszh < 0 ? -1 : coeffs(ih, 0, ih, oh, &bv, &kv);
    if (kszh < 0 || kszv < 0)
        goto out;
    int need_h = ow != iw, need_v = oh != ih;
    int yfirst = bv[0], ylast = bv[oh * 2 - 2] + bv[oh * 2 - 1];
    const unsigned char *cur = src->px;
    int cw = iw, chh = ih;
    if (need_h) {
        for (int i = 0; i < oh; i++)
            bv[i * 2] -= yfirst;
        int th = ylast - yfirst;
        tmp = malloc((size_t)ow * th * c);
        if (!tmp)
            goto out;
        for (int yy = 0; yy < th; yy++) {
            const unsigned char *row = src->px + (size_t)(yy + yfirst) * iw * c;
            for (int xx = 0; xx < ow; xx++) {
                const int32_t *k = &kh[(size_t)xx * kszh];
                int xmin = bh[xx * 2], xmax = bh[xx * 2 + 1];
                for (int ch = 0; ch < c; ch++) {
                    int64_t ss = 1 << (PRECISION_BITS - 1);
                    for (int x = 0; x < xmax; x++)
                        ss += (int64_t)row[(size_t)(x + xmin) * c + ch] * k[x];
                    tmp[((size_t)yy * ow + xx) * c + ch] = clip8(ss);
                }
            }
        }
        cur = tmp;
        cw = ow;
        chh = th;
    }
    out = malloc((size_t)ow * oh * c);
    if (!out)
        goto out;
    if (need_v) {
        for (int yy = 0; yy < oh; yy++) {
            const int32_t *k = &kv[(size_t)yy * kszv];
            int ymin = bv[yy * 2], ymax = bv[yy * 2 + 1];
            for (int xx = 0; xx < ow; xx++)
                for (int ch = 0; ch < c; ch++) {
                    int64_t ss = 1 << (PRECISION_BITS - 1);
                    for (int y = 0; y < ymax; y++)
                        ss += (int64_t)cur[((size_t)(y + ymin) * cw + xx) * c + ch] * k[y];
                    out[((size_t)yy * ow + xx) * c + ch] = clip8(ss);
                }
        }
    } else {
        /* no vertical pass: the horizontal result (or the source) as is */
        (void)chh;
        memcpy(out, cur, (size_t)ow * oh * c);
    }
    dst->w = ow;
    dst->h = oh;
    dst->c = c;
    dst->px = out;
    out = NULL;
    rc = 0;
out:
    free(bh);
    free(bv);
    free(kh);
    free(kv);
    free(tmp);
    free(out);
    return rc;
}

/* ---- augmentation RNG ------------------------------------------------- */

#define splitmix qt_splitmix64

static double uniform(uint64_t *s, double a, double b) {
    return a + (b - a) * ((splitmix(s) >> 11) * (1.0 / 9007199254740992.0));
}

static int randint(uint64_t *s, int lo, int hi_excl) {
    return lo + (int)(splitmix(s) % (uint64_t)(hi_excl - lo));
}

static void rrc_box(int width, int height, double smin, uint64_t *rng, int *i, int *j, int *h, int *w) {
    double area = (double)width * height, lr0 = log(3.0 / 4), lr1 = log(4.0 / 3);
    for (int a = 0; a < 10; a++) {
        double ta = area * uniform(rng, smin, 1.0), ar = exp(uniform(rng, lr0, lr1));
        int ww = (int)nearbyint(sqrt(ta * ar)), hh = (int)nearbyint(sqrt(ta / ar));
        if (ww > 0 && ww <= width && hh > 0 && hh <= height) {
            *i = randint(rng, 0, height - hh + 1);
            *j = randint(rng, 0, width - ww + 1);
            *h = hh;
            *w = ww;
            return;
        }
    }
    double in_ratio = (double)width / height;
    if (in_ratio < 3.0 / 4) {
        *w = width;
        *h = (int)nearbyint(*w / (3.0 / 4));
    } else if (in_ratio > 4.0 / 3) {
        *h = height;
        *w = (int)nearbyint(*h * (4.0 / 3));
    } else {
        *w = width;
        *h = height;
    }
    *i = (height - *h) / 2;
    *j = (width - *w) / 2;
}

/* crop [top, top+ch) x [left, left+cw) with zero fill outside the image */
static int crop(const struct qt_image *src, int top, int left, int ch, int cw, struct qt_image *dst) {
    int c = src->c;
    unsigned char *px = calloc((size_t)ch * cw * c, 1);
    if (!px)
        return -1;
    for (int y = 0; y < ch; y++) {
        int sy = y + top;
        if (sy < 0 || sy >= src->h)
            continue;
        for (int x = 0; x < cw; x++) {
            int sx = x + left;
            if (sx >= 0 && sx < src->w)
                memcpy(px + ((size_t)y * cw + x) * c, src->px + ((size_t)sy * src->w + sx) * c, (size_t)c);
        }
    }
    dst->w = cw;
    dst->h = ch;
    dst->c = c;
    dst->px = px;
    return 0;
}

int qt_preprocess(const struct qt_image *img, const struct qt_preproc *p, float *out, int oh, int ow,
                  uint64_t *rng_state, struct qt_err *err) {
    struct qt_image a = {0}, b = {0};
    const struct qt_image *cur = img;
    int rc = 0, flip = 0;
    if (img->c != p->channels)
        return qt_errf(err, QT_EUSAGE, "internal error: image has %d channels, preprocessing wants %d", img->c,
                       p->channels);
    if (p->rrc) {
        int i, j, h, w;
        uint64_t dummy = 0;
        uint64_t *rng = rng_state ? rng_state : &dummy;
        rrc_box(img->w, img->h, p->rrc_min_scale > 0 ? p->rrc_min_scale : 0.08, rng, &i, &j, &h, &w);
        if (crop(img, i, j, h, w, &a) || pil_resize(&a, p->crop_w, p->crop_h, &b)) {
            rc = qt_errf(err, QT_ENOMEM, "out of memory preprocessing an image");
            goto out;
        }
        cur = &b;
        if (p->hflip)
            flip = splitmix(rng) >> 63;
    } else {
        int rw, rh;
        resized_size(p->resize, img->w, img->h, &rw, &rh);
        if (p->resize_h > 0) { /* Resize((h, w)): both sides given */
            rw = p->resize_w;
            rh = p->resize_h;
        }
        if (rw != img->w || rh != img->h) {
            if (pil_resize(img, rw, rh, &a)) {
                rc = qt_errf(err, QT_ENOMEM, "out of memory preprocessing an image");
                goto out;
            }
            cur = &a;
        }
        if (p->crop_h > 0 && (cur->h != p->crop_h || cur->w != p->crop_w)) {
            /* torchvision pads first when the crop is larger, then crops */
            int ph = cur->h, pw = cur->w, top, left;
            int padh = p->crop_h > ph ? p->crop_h : ph, padw = p->crop_w > pw ? p->crop_w : pw;
            int pt = (padh - ph) / 2, pl = (padw - pw) / 2;
            top = (int)nearbyint((padh - p->crop_h) / 2.0) - pt;
            left = (int)nearbyint((padw - p->crop_w) / 2.0) - pl;
            if (crop(cur, top, left, p->crop_h, p->crop_w, &b)) {
                rc = qt_errf(err, QT_ENOMEM, "out of memory preprocessing an image");
                goto out;
            }
            cur = &b;
        }
    }
    if (cur->w != ow || cur->h != oh) {
        rc = qt_errf(err, QT_EDATA, "%dx%d after preprocessing, model expects %dx%d", cur->w, cur->h, ow, oh);
        goto out;
    }
    int c = cur->c;
    size_t plane = (size_t)ow * oh;
    for (int ch = 0; ch < c; ch++) {
        int sc = p->bgr && c == 3 ? 2 - ch : ch;
        float m = p->mean[ch], sd = p->std[ch], s = p->scale;
        int div255 = s == 1.0f / 255.0f; /* ToTensor divides by 255 */
        float *o = out + ch * plane;
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++) {
                int sx = flip ? ow - 1 - x : x;
                float v = cur->px[((size_t)y * ow + sx) * c + sc];
                o[(size_t)y * ow + x] = ((div255 ? v / 255.0f : v * s) - m) / sd;
            }
    }
out:
    qt_image_release(&a);
    qt_image_release(&b);
    return rc;
}

/* Source positions of PIL's NEAREST resize (ImagingScaleAffine): the
 * coordinate starts at half a step and adds the step (in / out) per pixel,
 * in double, truncated; bit-exact with Pillow, rounding included. */
static void nearest_tab(int in, int out, int *tab) {
    double step = (double)in / out, xo = 0.5 * step;
    for (int i = 0; i < out; i++) {
        int v = (int)xo;
        tab[i] = v < in ? v : in - 1;
        xo += step;
    }
}

/* Nearest-neighbour resize of a one-channel index image, as PIL's NEAREST. */
static int nearest(const struct qt_image *src, int ow, int oh, struct qt_image *dst) {
    unsigned char *px = malloc((size_t)ow * oh);
    int *tx = malloc(sizeof(int) * ((size_t)ow + oh));
    if (!px || !tx) {
        free(px);
        free(tx);
        return -1;
    }
    int *ty = tx + ow;
    nearest_tab(src->w, ow, tx);
    nearest_tab(src->h, oh, ty);
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++)
            px[(size_t)y * ow + x] = src->px[(size_t)ty[y] * src->w + tx[x]];
    free(tx);
    dst->w = ow;
    dst->h = oh;
    dst->c = 1;
    dst->px = px;
    return 0;
}

int qt_preprocess_mask(const struct qt_image *mask, const struct qt_preproc *p, int ih, int iw, unsigned char *out,
                       int oh, int ow, struct qt_err *err) {
    struct qt_image a = {0}, b = {0};
    const struct qt_image *cur = mask;
    int rc = 0, rw, rh;
    if (mask->c != 1 || p->rrc)
        return qt_errf(err, QT_EUSAGE, "internal error: masks take one channel and no random crop");
    resized_size(p->resize, mask->w, mask->h, &rw, &rh);
    if (p->resize_h > 0) {
        rw = p->resize_w;
        rh = p->resize_h;
    }
    if (rw != mask->w || rh != mask->h) {
        if (nearest(mask, rw, rh, &a))
            goto oom;
        cur = &a;
    }
    if (p->crop_h > 0 && (cur->h != p->crop_h || cur->w != p->crop_w)) {
        /* the image's crop box; outside the mask is 255 (ignored) as the image's zero padding */
        int ph = cur->h, pw = cur->w;
        int padh = p->crop_h > ph ? p->crop_h : ph, padw = p->crop_w > pw ? p->crop_w : pw;
        int top = (int)nearbyint((padh - p->crop_h) / 2.0) - (padh - ph) / 2;
        int left = (int)nearbyint((padw - p->crop_w) / 2.0) - (padw - pw) / 2;
        unsigned char *px = malloc((size_t)p->crop_h * p->crop_w);
        if (!px)
            goto oom;
        memset(px, 255, (size_t)p->crop_h * p->crop_w);
        for (int y = 0; y < p->crop_h; y++)
            for (int x = 0; x < p->crop_w; x++)
                if (y + top >= 0 && y + top < ph && x + left >= 0 && x + left < pw)
                    px[(size_t)y * p->crop_w + x] = cur->px[(size_t)(y + top) * pw + x + left];
        b = (struct qt_image){.w = p->crop_w, .h = p->crop_h, .c = 1, .px = px};
        cur = &b;
    }
    if (cur->w != iw || cur->h != ih) {
        rc = qt_errf(err, QT_EDATA, "%dx%d after preprocessing, model expects %dx%d", cur->w, cur->h, iw, ih);
        goto out;
    }
    if (iw == ow && ih == oh) {
        memcpy(out, cur->px, (size_t)ow * oh);
    } else { /* to the output's size (models whose output is smaller than their input) */
        struct qt_image c = {0};
        if (nearest(cur, ow, oh, &c))
            goto oom;
        memcpy(out, c.px, (size_t)ow * oh);
        qt_image_release(&c);
    }
    goto out;
oom:
    rc = qt_errf(err, QT_ENOMEM, "out of memory preprocessing a mask");
out:
    qt_image_release(&a);
    qt_image_release(&b);
    return rc;
}
