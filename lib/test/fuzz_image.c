/* fuzz_image.c: libFuzzer target for the PNG and JPEG decoders (decided by
 * content), each result converted to the other channel count and
 * preprocessed (resize + crop) as a dataset image would be. Built by
 * `make fuzz`. */
#include "engine.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct qt_err err = {0};
    struct qt_image img;
    int want = size ? data[size - 1] % 3 : 0; /* 0: as stored, 1: grey, 2 -> 3: RGB */
    if (qt_image_load_mem(&img, data, size, "fuzz.img", want == 2 ? 3 : want, &err))
        return 0;
    if ((size_t)img.w * img.h <= 1 << 20) { /* the decoders allow larger; keep runs fast */
        struct qt_preproc pp;
        int ow, oh;
        qt_preproc_default(&pp);
        pp.channels = img.c;
        pp.resize = 8;
        pp.crop_h = pp.crop_w = 7;
        qt_preproc_out_size(&pp, img.w, img.h, &ow, &oh);
        float *out = malloc(sizeof(float) * 3 * (size_t)ow * oh + 1);
        if (out)
            qt_preprocess(&img, &pp, out, oh, ow, NULL, &err);
        free(out);
    }
    qt_image_release(&img);
    return 0;
}
