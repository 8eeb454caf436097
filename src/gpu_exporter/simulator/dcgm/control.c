/*
 * Stub libdcgm.so.4: the behaviour control file named by $GPU_SIM_DCGM_CONFIG (grammar in
 * docs/simulator.md). It is re-read whenever its inode, size or modification time changes; a
 * file that does not parse is reported once on stderr and the previous behaviour stays.
 */
#include "stub.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void stub_cfg_defaults(stub_cfg_t *c)
{
    memset(c, 0, sizeof *c);
    c->mux = 5; /* DLG_MAX_METRIC_GROUPS (testing/python3/tests/test_prof.py:38-40) */
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    if (s == NULL || *s < '0' || *s > '9') return 0;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v > max) return 0;
    *out = v;
    return 1;
}

static int parse_gpu(const char *s, int *gpu)
{
    unsigned long v;
    if (s && strcmp(s, "*") == 0) {
        *gpu = STUB_GPU_ALL;
        return 1;
    }
    if (!parse_uint(s, STUB_MAX_GPUS - 1, &v)) return 0;
    *gpu = (int)v;
    return 1;
}

static int parse_field(const char *s, int *field)
{
    unsigned long v;
    if (s && strcmp(s, "*") == 0) {
        *field = -1;
        return 1;
    }
    if (!parse_uint(s, DCGM_FI_MAX_FIELDS - 1, &v) || v == 0) return 0;
    *field = (int)v;
    return 1;
}

static int parse_entity(const char *s, int *eg, unsigned *eid)
{
    static const struct {
        const char *prefix;
        int eg;
    } kinds[] = {{"gpu:", DCGM_FE_GPU}, {"gpu_i:", DCGM_FE_GPU_I}, {"gpu_ci:", DCGM_FE_GPU_CI}};
    unsigned long v;
    if (s && strcmp(s, "*") == 0) {
        *eg = -1;
        *eid = 0;
        return 1;
    }
    for (unsigned i = 0; s && i < 3; i++) {
        size_t n = strlen(kinds[i].prefix);
        if (strncmp(s, kinds[i].prefix, n) == 0 && parse_uint(s + n, 0xffffffffUL, &v)) {
            *eg = kinds[i].eg;
            *eid = (unsigned)v;
            return 1;
        }
    }
    return 0;
}

static int parse_kind(const char *s, int *kind)
{
    static const char *const names[] = {"blank", "not_found", "not_supported", "not_permissioned"};
    if (s == NULL) {
        *kind = STUB_BLANK;
        return 1;
    }
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *kind = i;
            return 1;
        }
    }
    return 0;
}

__attribute__((format(printf, 4, 5))) static void fail_at(char *err, size_t errlen, unsigned line,
                                                          const char *fmt, ...)
{
    int n = snprintf(err, errlen, "line %u: ", line);
    if (n < 0 || (size_t)n >= errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

#define FAIL(...)                                       \
    do {                                                \
        fail_at(err, errlen, lineno, __VA_ARGS__);      \
        free(copy);                                     \
        return 0;                                       \
    } while (0)

/* Parse the whole text into *c (defaults first); 0 and a message naming the line on error. */
int stub_cfg_parse(const char *text, stub_cfg_t *c, char *err, size_t errlen)
{
    stub_cfg_defaults(c);
    char *copy = strdup(text);
    if (copy == NULL) {
        snprintf(err, errlen, "out of memory");
        return 0;
    }
    unsigned lineno = 0;
    for (char *line = copy, *next; line; line = next) { /* empty lines count too */
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *tok[8] = {0};
        int nt = 0;
        char *save = NULL;
        for (char *t = strtok_r(line, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
            if (nt == 8) FAIL("too many words");
            tok[nt++] = t;
        }
        if (nt == 0) continue;
        const char *key = tok[0];
        int gpu, field, eg, kind;
        unsigned eid;
        unsigned long v;
        if (strcmp(key, "module_not_loaded") == 0 || strcmp(key, "paused") == 0) {
            if (nt != 1) FAIL("%s takes no value", key);
            if (key[0] == 'm') c->module_not_loaded = 1;
            else c->paused = 1;
        } else if (strcmp(key, "mux") == 0) {
            if (nt != 2 || !parse_uint(tok[1], DCGM_PROF_MAX_NUM_GROUPS_V2, &v) || v == 0)
                FAIL("mux takes a number of passes from 1 to %d", DCGM_PROF_MAX_NUM_GROUPS_V2);
            c->mux = (unsigned)v;
        } else if (strcmp(key, "profiling_not_supported") == 0 || strcmp(key, "library_error") == 0) {
            if (nt != 2 || !parse_gpu(tok[1], &gpu)) FAIL("%s takes a GPU id or *", key);
            unsigned char *set = key[0] == 'p' ? c->prof_unsupported : c->library_error;
            for (int i = 0; i < STUB_MAX_GPUS; i++)
                if (gpu == STUB_GPU_ALL || gpu == i) set[i] = 1;
        } else if (strcmp(key, "group") == 0) {
            unsigned long major, minor;
            if (nt != 5 || !parse_gpu(tok[1], &gpu) || !parse_uint(tok[2], 0xffff, &major) ||
                !parse_uint(tok[3], 0xffff, &minor))
                FAIL("group takes GPU MAJOR MINOR FIELD[,FIELD...]");
            if (c->ngroups == STUB_MAX_GROUPS_CFG) FAIL("more than %d groups", STUB_MAX_GROUPS_CFG);
            stub_cfg_group_t *g = &c->groups[c->ngroups];
            memset(g, 0, sizeof *g);
            g->gpu = gpu;
            g->major = (unsigned short)major;
            g->minor = (unsigned short)minor;
            char *fsave = NULL;
            for (char *f = strtok_r(tok[4], ",", &fsave); f; f = strtok_r(NULL, ",", &fsave)) {
                if (!parse_field(f, &field) || field < 0) FAIL("group: bad field id '%s'", f);
                if (g->nfields == DCGM_PROF_MAX_FIELD_IDS_PER_GROUP_V2)
                    FAIL("group: more than %d fields", DCGM_PROF_MAX_FIELD_IDS_PER_GROUP_V2);
                g->fields[g->nfields++] = (unsigned short)field;
            }
            if (g->nfields == 0) FAIL("group: no field ids");
            unsigned per_gpu = 0;
            for (int i = 0; i <= c->ngroups; i++)
                if (c->groups[i].gpu == gpu) per_gpu++;
            if (per_gpu > DCGM_PROF_MAX_NUM_GROUPS_V2)
                FAIL("group: more than %d groups for one GPU", DCGM_PROF_MAX_NUM_GROUPS_V2);
            c->ngroups++;
        } else if (strcmp(key, "blank") == 0 || strcmp(key, "status") == 0) {
            int is_status = key[0] == 's';
            if (nt < 3 || nt > 4 || !parse_field(tok[1], &field) || !parse_entity(tok[2], &eg, &eid))
                FAIL("%s takes FIELD|* ENTITY|* %s (ENTITY: gpu:N, gpu_i:N, gpu_ci:N)", key,
                     is_status ? "CODE" : "[KIND]");
            int code = 0;
            if (is_status) {
                char *end;
                long s = nt == 4 ? strtol(tok[3], &end, 10) : 0;
                if (nt != 4 || *end || s >= 0 || s < -1000) FAIL("status takes a negative DCGM return code");
                code = (int)s;
            } else {
                if (!parse_kind(nt == 4 ? tok[3] : NULL, &kind))
                    FAIL("blank kind is one of blank, not_found, not_supported, not_permissioned");
                code = kind;
            }
            if (c->nrules == STUB_MAX_RULES) FAIL("more than %d blank/status lines", STUB_MAX_RULES);
            stub_rule_t *r = &c->rules[c->nrules++];
            r->kind = is_status;
            r->field = field;
            r->eg = eg;
            r->eid = eid;
            r->code = code;
        } else {
            FAIL("unknown key '%s'", key);
        }
    }
    free(copy);
    return 1;
}

static stub_cfg_t cfg_current;
static int cfg_loaded;
static struct {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    int present;
} cfg_seen;

const stub_cfg_t *stub_cfg(void)
{
    if (!cfg_loaded) {
        stub_cfg_defaults(&cfg_current);
        cfg_loaded = 1;
    }
    const char *path = getenv("GPU_SIM_DCGM_CONFIG");
    struct stat st;
    if (path == NULL || *path == 0 || stat(path, &st) != 0) {
        if (cfg_seen.present) stub_cfg_defaults(&cfg_current); /* removed: back to defaults */
        memset(&cfg_seen, 0, sizeof cfg_seen);
        return &cfg_current;
    }
    if (cfg_seen.present && cfg_seen.dev == st.st_dev && cfg_seen.ino == st.st_ino &&
        cfg_seen.size == st.st_size && cfg_seen.mtime.tv_sec == st.st_mtim.tv_sec &&
        cfg_seen.mtime.tv_nsec == st.st_mtim.tv_nsec)
        return &cfg_current;
    cfg_seen.present = 1;
    cfg_seen.dev = st.st_dev;
    cfg_seen.ino = st.st_ino;
    cfg_seen.size = st.st_size;
    cfg_seen.mtime = st.st_mtim;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "libdcgm stub: %s: %s\n", path, strerror(errno));
        return &cfg_current;
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap);
    if (buf) len = fread(buf, 1, cap - 1, f);
    fclose(f);
    if (buf == NULL) return &cfg_current;
    buf[len] = 0;
    static stub_cfg_t parsed; /* large: not on the stack */
    char err[256];
    if (stub_cfg_parse(buf, &parsed, err, sizeof err)) cfg_current = parsed;
    else fprintf(stderr, "libdcgm stub: %s: %s; keeping the previous behaviour\n", path, err);
    free(buf);
    return &cfg_current;
}
