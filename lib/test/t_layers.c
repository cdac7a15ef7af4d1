/* t_layers.c: per-node settings (qt_quant_opts.layers) reach the plan: a
 * node given 4-bit weights gets them, a node kept in float gets no
 * tensors, the others keep the global widths, and a name the model does not
 * have is a usage error naming it. */
#include "engine.h"
#include "quant/quant.h"
#include "test/tap.h"

#include <string.h>

static int nth_node(const struct qt_graph *g, const char *op, int nth) {
    for (int i = 0; i < g->nn; i++)
        if (!strcmp(g->n[i].op_type, op) && nth-- == 0)
            return i;
    return -1;
}

int main(void) {
    struct qt_graph *g = NULL;
    struct qt_err err = {0};
    if (qt_graph_load(&g, "testdata/fmnist/model.onnx", &err)) {
        T_OK(0, "load: %s", err.msg);
        return t_done();
    }
    int c0 = nth_node(g, "Conv", 0), c1 = nth_node(g, "Conv", 1), c2 = nth_node(g, "Conv", 2);
    T_OK(c0 >= 0 && c1 >= 0 && c2 >= 0, "three Conv nodes");
    struct qt_layer_set ls[2] = {{g->n[c0].name, 4, 6, 0}, {g->n[c1].name, 0, 0, 1}};
    struct qt_quant_opts o;
    qt_quant_opts_init(&o);
    o.layers = ls;
    o.nlayers = 2;
    struct qt_qplan *p = NULL;
    int rc = qt_qplan_build(&p, g, &o, NULL, NULL, &err);
    T_OK(rc == 0, "plan with per-node settings: %s", err.msg);
    if (!rc) {
        int k0 = qt_graph_find_node(p->g, ls[0].node), k1 = qt_graph_find_node(p->g, ls[1].node),
            k2 = qt_graph_find_node(p->g, g->n[c2].name);
        T_OK(k0 >= 0 && p->qn[k0].wbits == 4 && p->qn[k0].abits == 6 && !p->qn[k0].excluded,
             "'%s': wbits %d abits %d", ls[0].node, k0 >= 0 ? p->qn[k0].wbits : -1, k0 >= 0 ? p->qn[k0].abits : -1);
        T_OK(k1 >= 0 && p->qn[k1].excluded, "'%s' kept in float", ls[1].node);
        T_OK(k2 >= 0 && p->qn[k2].wbits == 8 && p->qn[k2].abits == 8 && !p->qn[k2].excluded,
             "'%s' keeps the global 8/8", g->n[c2].name);
        int wt1 = 0;
        for (int t = 0; t < p->nt; t++)
            wt1 += p->t[t].node == k1;
        T_OK(wt1 == 0, "no weight or bias tensor for the float node (%d)", wt1);
        T_OK(p->nexcluded >= 1, "counted as excluded (%d)", p->nexcluded);
        qt_qplan_free(p);
    }
    struct qt_layer_set bad = {"no-such-node", 4, 0, 0};
    o.layers = &bad;
    o.nlayers = 1;
    p = NULL;
    memset(&err, 0, sizeof err);
    rc = qt_qplan_build(&p, g, &o, NULL, NULL, &err);
    T_OK(rc == QT_EUSAGE && strstr(err.msg, "no-such-node"), "unknown node refused: rc %d '%s'", rc, err.msg);
    struct qt_layer_set badbits = {g->n[c0].name, 9, 0, 0};
    o.layers = &badbits;
    memset(&err, 0, sizeof err);
    rc = qt_qplan_build(&p, g, &o, NULL, NULL, &err);
    T_OK(rc == QT_EUSAGE && strstr(err.msg, "2..8"), "9 bits refused: rc %d '%s'", rc, err.msg);
    qt_graph_free(g);
    return t_done();
}
