/* qoperator.c: the QOperator form of a plan (qtool export --format
 * qoperator). The QDQ model is written as calib writes it, then its
 * DequantizeLinear -> Conv/MatMul -> QuantizeLinear units are rewritten into
 * QLinearConv / QLinearMatMul by the same pattern matcher that gives qtool
 * eval its integer kernels (lib/int8/lower.c), so the two cannot disagree on
 * what a unit means. Without contrib only ai.onnx operators appear: Gemm,
 * Add, GlobalAveragePool, Concat, Sigmoid... stay DequantizeLinear -> float
 * op -> QuantizeLinear; with contrib, Gemm becomes com.microsoft QGemm and
 * Add / GlobalAveragePool QLinearAdd / QLinearGlobalAveragePool. A Relu or
 * Clip the quantized range does not already apply stays in QDQ form. */
#include "int8/int8.h"
#include "quant/quant.h"

int qt_qplan_export_qop(const struct qt_qplan *p, int contrib, struct qt_graph **out, int *nq, struct qt_err *err) {
    struct qt_graph *g = NULL;
    *out = NULL;
    *nq = 0;
    if (qt_qplan_export_qdq(p, &g, err))
        return err->code;
    if (qt_int8_lower_flags(g, QT_LOWER_NO_ACT | (contrib ? 0 : QT_LOWER_NO_CONTRIB), nq, err)) {
        qt_graph_free(g);
        return err->code;
    }
    *out = g;
    return 0;
}
