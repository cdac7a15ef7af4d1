/* testdir.c: see testdir.h. */
#include "test/testdir.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

static int names_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int t_list_dir(const char *dir, const char *prefix, char ***out) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char **v = NULL;
    int n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d))) {
        if (prefix ? strncmp(e->d_name, prefix, strlen(prefix)) != 0 : e->d_name[0] == '.')
            continue;
        v = realloc(v, sizeof *v * (size_t)(n + 1));
        v[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n)
        qsort(v, (size_t)n, sizeof *v, names_cmp);
    *out = v;
    return n;
}

void t_free_list(char **v, int n) {
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}
