/* isa.c: which integer kernels run (see int8.h): the best the CPU has, or
 * the one QT_INT8_ISA / qt_int8_set_isa() forces. */
#include "int8/qkern.h"

#include <stdlib.h>

static int isa_cur = -1;

int qt_int8_isa_max(void) {
#if QT_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vnni"))
        return QT_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return QT_ISA_AVX2;
#endif
    return QT_ISA_REF;
}

int qt_int8_set_isa(int isa) {
    int mx = qt_int8_isa_max();
    if (isa < QT_ISA_REF)
        isa = QT_ISA_REF;
    __atomic_store_n(&isa_cur, isa > mx ? mx : isa, __ATOMIC_RELAXED);
    return isa_cur;
}

int qt_int8_isa(void) {
    int isa = __atomic_load_n(&isa_cur, __ATOMIC_RELAXED);
    if (isa >= 0)
        return isa;
    const char *e = getenv("QT_INT8_ISA");
    isa = qt_int8_isa_max();
    if (e && !strcmp(e, "ref"))
        isa = QT_ISA_REF;
    else if (e && !strcmp(e, "avx2"))
        isa = QT_ISA_AVX2;
    else if (e && !strcmp(e, "avx512"))
        isa = QT_ISA_AVX512;
    return qt_int8_set_isa(isa);
}

const char *qt_int8_isa_name(int isa) {
    return isa == QT_ISA_AVX512 ? "avx512-vnni" : isa == QT_ISA_AVX2 ? "avx2" : "ref";
}
