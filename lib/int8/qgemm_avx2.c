/* qgemm_avx2.c: the AVX2 micro kernel and epilogue of the integer GEMM
 * (see qkern.h); t_int8 checks them against the reference bit for bit. */
#include "int8/qkern.h"

#if QT_X86
#include <immintrin.h>

/* ---- AVX2: vpmaddubsw on the low 7 bits and on the top bit separately, so
 * no int16 pair sum saturates (exact for any u8 x s8) ---------------------- */

__attribute__((target("avx2,fma"))) void qt_qepi__avx2(EPILOGUE_ARGS) {
    EPILOGUE_BODY
}

__attribute__((target("avx2,fma"))) void qt_qkern__avx2(const int8_t *w, int64_t kp, const uint8_t *bp, int mr,
                                                          int nc, int32_t *acc) {
    const int8_t *wr[MR];
    for (int r = 0; r < MR; r++)
        wr[r] = w + (r < mr ? r : 0) * kp;
    const __m256i m7 = _mm256_set1_epi8(0x7f), one8 = _mm256_set1_epi8(1);
    const __m256i ones = _mm256_set1_epi16(1), c128 = _mm256_set1_epi16(128);
    int nv = (nc + 7) / 8;
    for (int v = 0; v < nv; v++) {
        __m256i c[MR];
        for (int r = 0; r < MR; r++)
            c[r] = _mm256_setzero_si256();
        for (int64_t k4 = 0; k4 < kp / 4; k4++) {
            __m256i b = _mm256_loadu_si256((const __m256i *)(bp + k4 * 4 * NR + v * 32));
            __m256i lo = _mm256_and_si256(b, m7);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(b, 7), one8);
            for (int r = 0; r < MR; r++) {
                int32_t wv;
                memcpy(&wv, wr[r] + k4 * 4, 4);
                __m256i wb = _mm256_set1_epi32(wv);
                __m256i pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, wb), ones);
                __m256i ph = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, wb), c128);
                c[r] = _mm256_add_epi32(c[r], _mm256_add_epi32(pl, ph));
            }
        }
        for (int r = 0; r < mr; r++)
            _mm256_storeu_si256((__m256i *)(acc + r * NR + v * 8), c[r]);
    }
}
#endif
