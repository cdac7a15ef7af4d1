/* bench-peak.c: this CPU's multiply-accumulate peak on one core, measured
 * (make bench compiles and runs it): 12 independent chains of 512-bit
 * fused multiply-adds (float, 32 FLOP each) and of 512-bit vpdpbusd (int8,
 * 64 multiply-accumulates = 128 OP each), 256-bit when the CPU has no
 * AVX-512. Prints "float GFLOPS int8 GOPS isa" on one line. */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define N 40000000L

/* 12 chains of N fused multiply-adds of vector type T; the sum of one lane
 * of each, so the work is kept */
#define FMA_CHAINS(name, tgt, T, set1, fma, lane0)                                                               \
    __attribute__((target(tgt))) static float name(void) {                                                   \
        T c[12], a = set1(0.999f), b = set1(1e-3f);                                                           \
        for (int j = 0; j < 12; j++)                                                                           \
            c[j] = set1((float)j);                                                                             \
        for (long i = 0; i < N; i++)                                                                           \
            _Pragma("GCC unroll 12") for (int j = 0; j < 12; j++) c[j] = fma(a, c[j], b);                    \
        float s = 0;                                                                                           \
        for (int j = 0; j < 12; j++)                                                                           \
            s += lane0(c[j]);                                                                                  \
        return s;                                                                                              \
    }
FMA_CHAINS(f512, "avx512f", __m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_reduce_add_ps)
FMA_CHAINS(f256, "avx2,fma", __m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_cvtss_f32)

__attribute__((target("avx512f,avx512vnni"))) static int i512(void) {
    __m512i c[12], a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(5);
    for (int j = 0; j < 12; j++)
        c[j] = _mm512_set1_epi32(j);
    for (long i = 0; i < N; i++)
#pragma GCC unroll 12
        for (int j = 0; j < 12; j++)
            c[j] = _mm512_dpbusd_epi32(c[j], a, b);
    int s = 0;
    for (int j = 0; j < 12; j++)
        s += _mm512_reduce_add_epi32(c[j]);
    return s;
}

int main(void) {
    int v512 = __builtin_cpu_supports("avx512f"), vnni = __builtin_cpu_supports("avx512vnni");
    double t = now();
    volatile float sink = v512 ? f512() : f256();
    double fl = (double)N * 12 * (v512 ? 32 : 16) / (now() - t) / 1e9;
    double io = 0;
    if (vnni) {
        t = now();
        volatile int isink = i512();
        io = (double)N * 12 * 128 / (now() - t) / 1e9;
        (void)isink;
    }
    (void)sink;
    printf("%.1f %.1f %s\n", fl, io, vnni ? "avx512vnni" : v512 ? "avx512" : "avx2");
    return 0;
}
