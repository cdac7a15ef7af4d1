/* map.c: string -> int hash map (open addressing, FNV-1a), for value names. */
#include "engine.h"

#include <string.h>

struct qt_map {
    char **keys;
    int *vals;
    size_t cap, n, tomb;
};

static const char tombstone[1];

static uint64_t hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

struct qt_map *qt_map_new(void) {
    struct qt_map *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cap = 64;
    m->keys = calloc(m->cap, sizeof *m->keys);
    m->vals = calloc(m->cap, sizeof *m->vals);
    if (!m->keys || !m->vals) {
        qt_map_free(m);
        return NULL;
    }
    return m;
}

void qt_map_free(struct qt_map *m) {
    if (!m)
        return;
    for (size_t i = 0; m->keys && i < m->cap; i++)
        if (m->keys[i] && m->keys[i] != tombstone)
            free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    free(m);
}

static size_t slot(const struct qt_map *m, const char *key, int *found) {
    size_t mask = m->cap - 1, i = hash(key) & mask, first_tomb = (size_t)-1;
    for (;;) {
        char *k = m->keys[i];
        if (!k) {
            *found = 0;
            return first_tomb != (size_t)-1 ? first_tomb : i;
        }
        if (k == tombstone) {
            if (first_tomb == (size_t)-1)
                first_tomb = i;
        } else if (strcmp(k, key) == 0) {
            *found = 1;
            return i;
        }
        i = (i + 1) & mask;
    }
}

static int grow(struct qt_map *m) {
    struct qt_map nm = {0};
    nm.cap = m->cap * 2;
    nm.keys = calloc(nm.cap, sizeof *nm.keys);
    nm.vals = calloc(nm.cap, sizeof *nm.vals);
    if (!nm.keys || !nm.vals) {
        free(nm.keys);
        free(nm.vals);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] && m->keys[i] != tombstone) {
            int f;
            size_t s = slot(&nm, m->keys[i], &f);
            nm.keys[s] = m->keys[i];
            nm.vals[s] = m->vals[i];
            nm.n++;
        }
    }
    free(m->keys);
    free(m->vals);
    *m = nm;
    return 0;
}

int qt_map_put(struct qt_map *m, const char *key, int value) {
    int found;
    if ((m->n + m->tomb + 1) * 2 > m->cap && grow(m))
        return -1;
    size_t s = slot(m, key, &found);
    if (found) {
        m->vals[s] = value;
        return 0;
    }
    char *k = strdup(key);
    if (!k)
        return -1;
    if (m->keys[s] == tombstone)
        m->tomb--;
    m->keys[s] = k;
    m->vals[s] = value;
    m->n++;
    return 0;
}

int qt_map_get(const struct qt_map *m, const char *key) {
    int found;
    size_t s = slot(m, key, &found);
    return found ? m->vals[s] : -1;
}

void qt_map_del(struct qt_map *m, const char *key) {
    int found;
    size_t s = slot(m, key, &found);
    if (!found)
        return;
    free(m->keys[s]);
    m->keys[s] = (char *)tombstone;
    m->n--;
    m->tomb++;
}
