/* testdir.h: folder listing shared by the test drivers that walk case
 * folders (t_ops: testdata/ops, t_node: ../shared/onnx-node-tests). */
#ifndef QT_TESTDIR_H
#define QT_TESTDIR_H
/* The names in DIR, sorted: those starting with PREFIX, or every name not
 * starting with '.' when PREFIX is NULL. *out is malloc'd (free it with
 * t_free_list). Returns the count, or -1 when DIR cannot be opened. */
int t_list_dir(const char *dir, const char *prefix, char ***out);
void t_free_list(char **v, int n);
#endif
