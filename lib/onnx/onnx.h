/* onnx.h: lib/onnx internals shared with the rest of lib/ (protobuf-c types
 * stay inside lib/onnx except through these). */
#ifndef QT_ONNX_H
#define QT_ONNX_H
#include "engine.h"
#include "onnx.pb-c.h"

/* The newest ai.onnx opset qtool loads: the newest in the ONNX node-test
 * suite (onnx 1.23); opsets 22-28 changed only the types of the operators
 * qtool runs, and what an op does not run it refuses, naming the node. */
#define QT_OPSET_MAX 28

void *qt_onnx_env_ref(void *env);
void qt_onnx_env_release(void *env);
const Onnx__ModelProto *qt_onnx_env_model(const void *env);
/* TensorProto -> new tensor (QT_EMODEL when dims and data disagree). */
int qt_onnx_tensor_from_proto(const void *tp, struct qt_tensor **out, struct qt_err *err);
#endif
