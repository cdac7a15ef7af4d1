/* t_image.c: the image pipeline against PIL + torchvision
 * (testdata/images, made by scripts/gen-imagetests.py): every PNG colour
 * type and bit depth and JPEG decodes and preprocesses (Resize, CenterCrop,
 * ToTensor, Normalize) to torchvision's floats within 1e-6, broken files fail
 * with QT_EDATA naming the file, and ImageFolder order and labels. */
#include "engine.h"
#include "test/tap.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define DIR "testdata/images"

static void one_case(const char *line) {
    char name[256], bin[256], path[600];
    int ch, rs, cr, oh, ow;
    if (sscanf(line, "%255s %d %d %d %d %d %255s", name, &ch, &rs, &cr, &oh, &ow, bin) != 7)
        return;
    struct qt_err err = {0};
    struct qt_image img;
    struct qt_preproc p;
    qt_preproc_default(&p);
    p.channels = ch;
    p.resize = rs;
    p.crop_h = p.crop_w = cr;
    for (int i = 0; i < 3; i++) {
        p.mean[i] = 0.5f;
        p.std[i] = 0.25f;
    }
    snprintf(path, sizeof path, DIR "/%s", name);
    if (qt_image_load(&img, path, ch, &err)) {
        T_OK(0, "%s: %s", bin, err.msg);
        return;
    }
    size_t n = (size_t)ch * oh * ow;
    float *got = calloc(n, sizeof(float)), *want = calloc(n, sizeof(float));
    snprintf(path, sizeof path, DIR "/%s", bin);
    FILE *f = fopen(path, "rb");
    int ok = f && fread(want, sizeof(float), n, f) == n;
    if (f)
        fclose(f);
    int pw, ph;
    qt_preproc_out_size(&p, img.w, img.h, &pw, &ph);
    ok = ok && pw == ow && ph == oh && !qt_preprocess(&img, &p, got, oh, ow, NULL, &err);
    double md = 0;
    for (size_t i = 0; ok && i < n; i++)
        md = fmax(md, fabs((double)got[i] - want[i]));
    T_OK(ok && md <= 1e-6, "%s: %dx%d, max diff %.3g %s", bin, ow, oh, md, err.msg);
    free(got);
    free(want);
    qt_image_release(&img);
}

int main(void) {
    char line[1024];
    FILE *f = fopen(DIR "/expected.txt", "r");
    T_OK(f != NULL, "fixture list " DIR "/expected.txt");
    while (f && fgets(line, sizeof line, f))
        one_case(line);
    if (f)
        fclose(f);

    f = fopen(DIR "/broken.txt", "r");
    T_OK(f != NULL, "broken list");
    while (f && fgets(line, sizeof line, f)) {
        char path[1100];
        line[strcspn(line, "\n")] = 0;
        snprintf(path, sizeof path, DIR "/%s", line);
        struct qt_err err = {0};
        struct qt_image img;
        int rc = qt_image_load(&img, path, 3, &err);
        T_OK(rc == QT_EDATA && strstr(err.msg, line), "%s fails with bad data naming the file: %s", line, err.msg);
    }
    if (f)
        fclose(f);
    {
        struct qt_err err = {0};
        struct qt_image img;
        T_OK(qt_image_load(&img, DIR "/missing.png", 3, &err) == QT_EIO && strstr(err.msg, "missing.png"),
             "missing file: %s", err.msg);
    }

    struct qt_dataset *ds = NULL;
    struct qt_err err = {0};
    int rc = qt_dataset_open(&ds, DIR "/folder", NULL, &err);
    T_OK(rc == 0, "open ImageFolder %s", err.msg);
    if (ds) {
        T_OK(qt_dataset_count(ds) == 4, "4 images (non-images ignored, sub-folders walked): %d",
             qt_dataset_count(ds));
        T_OK(qt_dataset_nclasses(ds) == 3, "3 classes including the empty one");
        T_OK(qt_dataset_label(ds, 0) == 0 && strstr(qt_dataset_path(ds, 0), "a_cls/0.png"), "a_cls first, label 0");
        T_OK(qt_dataset_label(ds, 1) == 1 && strstr(qt_dataset_path(ds, 1), "b_cls/0.png"), "b_cls label 1");
        T_OK(qt_dataset_label(ds, 3) == 1 && strstr(qt_dataset_path(ds, 3), "b_cls/sub/z.PNG"),
             "nested image keeps its class folder's label, sorted last");
        struct qt_preproc p;
        qt_preproc_default(&p);
        p.channels = 1;
        float *a = calloc(4 * 17 * 23, sizeof(float)), *b = calloc(4 * 17 * 23, sizeof(float));
        int la[4], lb[4];
        struct qt_err e1 = {0}, e2 = {0};
        int r1 = qt_dataset_load(ds, &p, 0, 4, 1, 17, 23, a, la, 1, 0, &e1);
        int r2 = qt_dataset_load(ds, &p, 0, 4, 1, 17, 23, b, lb, 2, 0, &e2);
        T_OK(!r1 && !r2 && !memcmp(a, b, sizeof(float) * 4 * 17 * 23) && !memcmp(la, lb, sizeof la),
             "batch identical with 1 and 2 threads");
        struct qt_err e3 = {0};
        T_OK(qt_dataset_load(ds, &p, 0, 4, 1, 28, 28, a, la, 2, 0, &e3) == QT_EDATA && strstr(e3.msg, "28x28") &&
                 strstr(e3.msg, ".png"),
             "wrong size names the file and sizes: %s", e3.msg);
        free(a);
        free(b);
        qt_dataset_free(ds);
    }
    /* qat's held-back slice: every 10th image of the bundled Fashion-MNIST
     * calibration folder, disjoint from the rest, every class kept */
    err.code = 0;
    ds = NULL;
    struct qt_dataset *all = NULL, *held = NULL;
    if (qt_dataset_open(&ds, "testdata/fmnist/calib", NULL, &err) == 0 &&
        qt_dataset_open(&all, "testdata/fmnist/calib", NULL, &err) == 0 &&
        qt_dataset_hold_back(ds, 10, &held, &err) == 0) {
        int n = qt_dataset_count(all), nt = qt_dataset_count(ds), nh = qt_dataset_count(held), both = 0, seen = 0;
        int per_class[16] = {0};
        for (int i = 0; i < nh; i++) {
            for (int j = 0; j < nt; j++)
                both += !strcmp(qt_dataset_path(held, i), qt_dataset_path(ds, j));
            seen += !strcmp(qt_dataset_path(held, i), qt_dataset_path(all, 10 * i + 9)) &&
                    qt_dataset_label(held, i) == qt_dataset_label(all, 10 * i + 9);
            if (qt_dataset_label(held, i) >= 0 && qt_dataset_label(held, i) < 16)
                per_class[qt_dataset_label(held, i)]++;
        }
        int order = 1;
        for (int j = 0, k = 0; j < n; j++)
            if (j % 10 != 9)
                order &= !strcmp(qt_dataset_path(ds, k++), qt_dataset_path(all, j));
        T_OK(n == 300 && nt == 270 && nh == 30, "hold back every 10th of %d: %d trained, %d held", n, nt, nh);
        T_OK(both == 0 && seen == nh && order, "held-back images are images 9, 19, ... and none is trained on");
        T_OK(per_class[0] == 3 && per_class[9] == 3 && qt_dataset_nclasses(held) == 10 && qt_dataset_labeled(held),
             "3 held back per class, labels kept");
    } else {
        T_OK(0, "hold back: %s", err.msg);
    }
    qt_dataset_free(ds);
    qt_dataset_free(all);
    qt_dataset_free(held);
    err.code = 0;
    ds = NULL;
    T_OK(qt_dataset_open(&ds, DIR "/nope", NULL, &err) == QT_EIO && strstr(err.msg, "nope"), "missing folder: %s",
         err.msg);
    return t_done();
}
