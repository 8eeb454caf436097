/*
 * Simulated NVML: library state, configuration, faults, call counters, init/shutdown.
 */
#include "sim.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

sim_state_t sim = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ---------------------------------------------------------------- call counters */

#define SIM_COUNTS_MAGIC "GSIMCNT1"
static uint64_t sim_local_counts[FN__COUNT];
static uint64_t *sim_counts = sim_local_counts;

void sim_count(int fn)
{
    __atomic_fetch_add(&sim_counts[fn], 1, __ATOMIC_RELAXED);
}

static void sim_write_names(void)
{
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/calls.names", sim.dir);
    struct stat st;
    if (stat(path, &st) == 0) return;
    snprintf(tmp, sizeof tmp, "%s.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    for (int i = 0; i < FN__COUNT; i++) fprintf(f, "%s\n", sim_fn_names[i]);
    if (fclose(f) == 0) rename(tmp, path);
    else unlink(tmp);
}

/* Map $GPU_SIM_DIR/calls.bin (shared by every process using the state dir). */
static void sim_map_counts(void)
{
    if (sim_counts != sim_local_counts) return;
    char path[4200];
    snprintf(path, sizeof path, "%s/calls.bin", sim.dir);
    size_t size = 16 + sizeof(uint64_t) * FN__COUNT;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return;
    struct stat st;
    if (fstat(fd, &st) != 0 || (st.st_size != 0 && (size_t)st.st_size != size)) {
        close(fd);
        return;
    }
    if (st.st_size == 0 && ftruncate(fd, (off_t)size) != 0) {
        close(fd);
        return;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return;
    char *hdr = p;
    if (memcmp(hdr, SIM_COUNTS_MAGIC, 8) != 0) {
        uint32_t n = FN__COUNT;
        memcpy(hdr + 8, &n, 4);
        memcpy(hdr, SIM_COUNTS_MAGIC, 8);
    }
    uint64_t *shared = (uint64_t *)(hdr + 16);
    for (int i = 0; i < FN__COUNT; i++) {
        uint64_t v = __atomic_load_n(&sim_local_counts[i], __ATOMIC_RELAXED);
        if (v) __atomic_fetch_add(&shared[i], v, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&sim_counts, shared, __ATOMIC_RELEASE);
    sim_write_names();
}

/* ---------------------------------------------------------------- helpers */

uint64_t sim_hash(uint64_t a, uint64_t b)
{
    uint64_t z = a * 0x9E3779B97F4A7C15ULL + b + 0x632BE59BD9B4E019ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double sim_unit(uint64_t h)
{
    return (double)(h >> 11) / 9007199254740992.0;
}

int sim_fn_lookup(const char *name)
{
    int lo = 0, hi = FN__COUNT - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(name, sim_fn_names[mid]);
        if (c == 0) return mid;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return -1;
}

nvmlReturn_t sim_copy_str(char *dst, unsigned len, const char *src)
{
    if (dst == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    size_t n = strlen(src);
    if (len < n + 1) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(dst, src, n + 1);
    return NVML_SUCCESS;
}

static double sim_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int64_t sim_mono_coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double sim_time(void)
{
    if (sim.frozen >= 0) return sim.uptime + sim.frozen;
    return sim.uptime + (sim_mono() - sim.t_init);
}

/* Microsecond timestamps: real time, or a fixed epoch plus the simulated time when frozen. */
long long sim_timestamp_us(void)
{
    if (sim.frozen >= 0) return (long long)((1700000000.0 + sim.frozen) * 1e6);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

/* ---------------------------------------------------------------- configuration */

enum { K_STR, K_U64, K_DBL };
typedef struct {
    const char *name;
    int type;
    size_t off;
} sim_key_t;

#define SIM_KEY_S(n) {#n, K_STR, offsetof(sim_gpu_t, n)},
#define SIM_KEY_U(n) {#n, K_U64, offsetof(sim_gpu_t, n)},
#define SIM_KEY_D(n) {#n, K_DBL, offsetof(sim_gpu_t, n)},
static const sim_key_t sim_keys[] = {SIM_GPU_FIELDS(SIM_KEY_S, SIM_KEY_U, SIM_KEY_D)};

static void sim_chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r')) s[--n] = 0;
}

int sim_parse_mig(const char *s, sim_mig_t *m)
{
    memset(m, 0, sizeof *m);
    int n = sscanf(s, "%31s %u %u %u %u %u %u %u %u %u %u %u %u %u", m->profile, &m->gip_const,
                   &m->gip_id, &m->gi, &m->ci, &m->start, &m->size, &m->mem_mib, &m->sm, &m->ce,
                   &m->dec, &m->enc, &m->jpg, &m->ofa);
    return n == 14 ? 0 : -1;
}

static int sim_gpu_line(sim_gpu_t *g, const char *key, char *val)
{
    if (strcmp(key, "unsupported") == 0) {
        if (strncmp(val, "field:", 6) == 0) {
            unsigned long id = strtoul(val + 6, NULL, 10);
            if (id >= SIM_FIELD_MAX) return -1;
            g->unsup_field[id / 64] |= 1ULL << (id % 64);
            return 0;
        }
        int fn = sim_fn_lookup(val);
        if (fn < 0) return -1;
        g->unsup_fn[fn / 64] |= 1ULL << (fn % 64);
        return 0;
    }
    if (strcmp(key, "gip") == 0) {
        if (g->ngip >= SIM_MAX_GIP) return -1;
        sim_gip_t *p = &g->gip[g->ngip];
        int n = sscanf(val, "%31s %u %u %u %u %u %u %u %u %u %u %u %u %u", p->name, &p->cnst,
                       &p->id, &p->slices, &p->count, &p->mem_mib, &p->sm, &p->ce, &p->dec,
                       &p->enc, &p->jpg, &p->ofa, &p->mem_slices, &p->starts);
        if (n != 14 || p->mem_slices == 0 || p->mem_slices > 8) return -1;
        g->ngip++;
        return 0;
    }
    if (strcmp(key, "mig") == 0) {
        if (g->nmig >= SIM_MAX_MIG) return -1;
        if (sim_parse_mig(val, &g->mig[g->nmig]) != 0) return -1;
        g->nmig++;
        return 0;
    }
    for (size_t i = 0; i < sizeof sim_keys / sizeof sim_keys[0]; i++) {
        if (strcmp(sim_keys[i].name, key) != 0) continue;
        char *p = (char *)g + sim_keys[i].off;
        if (sim_keys[i].type == K_STR) {
            snprintf(p, SIM_STR, "%s", val);
        } else if (sim_keys[i].type == K_U64) {
            unsigned long long v = strtoull(val, NULL, 0);
            memcpy(p, &v, sizeof v);
        } else {
            double v = strtod(val, NULL);
            memcpy(p, &v, sizeof v);
        }
        return 0;
    }
    return -1;
}

static void sim_derive(unsigned i)
{
    sim_gpu_t *g = &sim.gpu[i];
    g->seed = sim_hash(sim.seed, i + 1);
    static const double share[SIM_WAVES] = {0.5, 0.3, 0.15, 0.05};
    static const double div[SIM_WAVES] = {1.0, 3.7, 11.3, 37.1};
    double period = g->util_period > 1 ? g->util_period : 300;
    for (int k = 0; k < SIM_WAVES; k++) {
        uint64_t h = sim_hash(g->seed, 100 + (uint64_t)k);
        g->wave[k].amp = g->util_amp * share[k];
        g->wave[k].omega = 2 * M_PI / (period / div[k] * (0.8 + 0.4 * sim_unit(h)));
        g->wave[k].phase = 2 * M_PI * sim_unit(sim_hash(h, 1));
        double x = g->wave[k].omega * 40.0; /* thermal time constant: 40 s */
        g->wave[k].lag_amp = g->wave[k].amp / sqrt(1 + x * x);
        g->wave[k].lag_phase = g->wave[k].phase - atan(x);
    }
    for (int l = 0; l < SIM_MAX_LINKS; l++) {
        g->link_tx[l] = 0.8 + 0.4 * sim_unit(sim_hash(g->seed, 200 + (uint64_t)l));
        g->link_rx[l] = 0.8 + 0.4 * sim_unit(sim_hash(g->seed, 300 + (uint64_t)l));
    }
}

static int sim_load_config(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/config", sim.dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "gpu-sim: %s: %s (run `gpu-sim env PROFILE` first)\n", path,
                strerror(errno));
        return -1;
    }
    memset(sim.gpu, 0, sizeof sim.gpu);
    sim.ngpu = 0;
    sim.frozen = -1.0;
    sim.uptime = 0;
    char line[1024];
    int lineno = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        sim_chomp(line);
        if (!line[0] || line[0] == '#') continue;
        char key[64];
        int off = 0;
        if (sscanf(line, "%63s %n", key, &off) < 1) continue;
        char *val = line + off;
        if (strcmp(key, "g") == 0) {
            unsigned idx;
            char gkey[64];
            int off2 = 0;
            if (sscanf(val, "%u %63s %n", &idx, gkey, &off2) < 2 || idx >= SIM_MAX_GPUS ||
                sim_gpu_line(&sim.gpu[idx], gkey, val + off2) != 0) {
                fprintf(stderr, "gpu-sim: %s:%d: bad line: %s\n", path, lineno, line);
                bad = 1;
            }
        } else if (strcmp(key, "gpus") == 0) {
            sim.ngpu = (unsigned)strtoul(val, NULL, 10);
            if (sim.ngpu > SIM_MAX_GPUS) sim.ngpu = SIM_MAX_GPUS;
        } else if (strcmp(key, "seed") == 0) {
            sim.seed = strtoull(val, NULL, 10);
        } else if (strcmp(key, "frozen_time") == 0) {
            sim.frozen = strtod(val, NULL);
        } else if (strcmp(key, "uptime") == 0) {
            sim.uptime = strtod(val, NULL);
        } else if (strcmp(key, "driver_version") == 0) {
            snprintf(sim.driver_version, SIM_STR, "%s", val);
        } else if (strcmp(key, "nvml_version") == 0) {
            snprintf(sim.nvml_version, SIM_STR, "%s", val);
        } else if (strcmp(key, "cuda_version") == 0) {
            sim.cuda_version = strtoull(val, NULL, 10);
        } else if (strcmp(key, "version") != 0) {
            fprintf(stderr, "gpu-sim: %s:%d: unknown key %s\n", path, lineno, key);
            bad = 1;
        }
    }
    fclose(f);
    if (bad) return -1;
    const char *fz = getenv("GPU_SIM_FROZEN_TIME");
    if (fz && *fz) sim.frozen = strtod(fz, NULL);
    for (unsigned i = 0; i < sim.ngpu; i++) {
        sim_derive(i);
        sim_dev_t *d = sim_whole((int)i);
        d->gpu = (int)i;
        d->slot = -1;
        d->active = 1;
        d->share = 1.0;
        snprintf(d->name, SIM_STR, "%s", sim.gpu[i].name);
        snprintf(d->uuid, SIM_STR, "%s", sim.gpu[i].uuid);
        sim_apply_mig((int)i, sim.gpu[i].mig_enabled ? sim.gpu[i].nmig : 0, sim.gpu[i].mig);
    }
    return 0;
}

/* ---------------------------------------------------------------- MIG layout */

/* Per GPU: MIG device count | MIG mode << 4 | bank in use << 5, switched atomically. */
static int sim_mig_state[SIM_MAX_GPUS];
#define SIM_MIG_N(s) ((unsigned)(s) & 15u)
#define SIM_MIG_ON(s) (((s) >> 4) & 1)
#define SIM_MIG_BANK(s) (((s) >> 5) & 1)

static int sim_mig_load(int gpu)
{
    return __atomic_load_n(&sim_mig_state[gpu], __ATOMIC_ACQUIRE);
}

sim_dev_t *sim_whole(int gpu)
{
    return &sim.dev[(unsigned)gpu * SIM_DEV_STRIDE];
}

static unsigned sim_bank_index(int gpu, int bank, unsigned j)
{
    return (unsigned)gpu * SIM_DEV_STRIDE + 1 + (unsigned)bank * SIM_MAX_MIG + j;
}

/* MIG device j of the layout in use. */
sim_dev_t *sim_mig_slot(int gpu, unsigned j)
{
    return &sim.dev[sim_bank_index(gpu, SIM_MIG_BANK(sim_mig_load(gpu)), j)];
}

int sim_mig_enabled(int gpu)
{
    return SIM_MIG_ON(sim_mig_load(gpu));
}

unsigned sim_mig_n(int gpu)
{
    return SIM_MIG_N(sim_mig_load(gpu));
}

/* Install a MIG layout (caller holds sim.lock): fill the idle bank, switch, retire the old. */
void sim_apply_mig(int gpu, unsigned n, const sim_mig_t *mig)
{
    sim_gpu_t *g = &sim.gpu[gpu];
    if (n > SIM_MAX_MIG) n = SIM_MAX_MIG;
    int old = sim_mig_load(gpu);
    int bank = !SIM_MIG_BANK(old);
    for (int b = 0; b < 2; b++) {
        for (unsigned j = 0; j < SIM_MAX_MIG; j++) {
            unsigned k = sim_bank_index(gpu, b, j);
            sim.gi_h[k].mig = &sim.dev[k];
            sim.ci_h[k].mig = &sim.dev[k];
        }
    }
    for (unsigned j = 0; j < SIM_MAX_MIG; j++) {
        sim_dev_t *d = &sim.dev[sim_bank_index(gpu, bank, j)];
        __atomic_store_n(&d->active, 0, __ATOMIC_RELEASE);
        d->gpu = gpu;
        d->slot = (int)j;
        if (j >= n) continue;
        d->mig = mig[j];
        char name[SIM_STR];
        snprintf(name, sizeof name, "%.58s MIG %.31s", g->name, d->mig.profile);
        memcpy(d->name, name, sizeof name);
        uint64_t h1 = sim_hash(g->seed, 1000 + d->mig.gi * 16 + d->mig.ci);
        uint64_t h2 = sim_hash(h1, 7);
        snprintf(d->uuid, SIM_STR, "MIG-%08x-%04x-%04x-%04x-%012llx", (unsigned)(h1 >> 32),
                 (unsigned)((h1 >> 16) & 0xffff), (unsigned)(0x5000 | (h1 & 0x0fff)),
                 (unsigned)(0x8000 | ((h2 >> 48) & 0x3fff)),
                 (unsigned long long)(h2 & 0xffffffffffffULL));
        d->share = 0.5 + 0.5 * sim_unit(sim_hash(g->seed, 2000 + d->mig.gi));
        __atomic_store_n(&d->active, 1, __ATOMIC_RELEASE);
    }
    int on = g->mig_capable && (n > 0 || g->mig_enabled);
    __atomic_store_n(&sim_mig_state[gpu], (int)n | on << 4 | bank << 5, __ATOMIC_RELEASE);
    for (unsigned j = 0; j < SIM_MAX_MIG; j++)
        __atomic_store_n(&sim.dev[sim_bank_index(gpu, !bank, j)].active, 0, __ATOMIC_RELEASE);
}

/* ---------------------------------------------------------------- faults */

static const sim_faults_t sim_no_faults;
static const sim_faults_t *sim_cur_faults = &sim_no_faults;
#define SIM_RETIRED 8
static sim_faults_t *sim_retired[SIM_RETIRED];
static int sim_retired_pos;
static struct stat sim_faults_st;
static int64_t sim_last_check_ms;
/* Set while this process's inotify watcher (events.c) watches the faults file's directory:
 * it reloads the file the moment it changes, so the calls need not look at it. */
int sim_faults_watched;

const sim_faults_t *sim_faults(void)
{
    return __atomic_load_n(&sim_cur_faults, __ATOMIC_ACQUIRE);
}

static void sim_parse_faults(FILE *f, sim_faults_t *fl)
{
    char line[512];
    while (fgets(line, sizeof line, f)) {
        sim_chomp(line);
        char kind[32], what[160];
        int dev = -1, off = 0;
        if (sscanf(line, "%31s %d %n", kind, &dev, &off) < 2) continue;
        int slot = dev < 0 ? SIM_MAX_GPUS : dev;
        if (dev >= SIM_MAX_GPUS) continue;
        char *rest = line + off;
        if (strcmp(kind, "lost") == 0 && dev >= 0) {
            fl->lost[dev] = 1;
        } else if (strcmp(kind, "ecc") == 0 && dev >= 0) {
            unsigned long long s = 0, d = 0;
            if (sscanf(rest, "%llu %llu", &s, &d) == 2) {
                fl->ecc_sbe[dev] += s;
                fl->ecc_dbe[dev] += d;
            }
        } else if (strcmp(kind, "unsupported") == 0) {
            if (sscanf(rest, "%159s", what) != 1) continue;
            if (strncmp(what, "field:", 6) == 0) {
                unsigned long id = strtoul(what + 6, NULL, 10);
                if (id < SIM_FIELD_MAX) fl->unsup_field[slot][id / 64] |= 1ULL << (id % 64);
            } else {
                int fn = sim_fn_lookup(what);
                if (fn >= 0) fl->unsup_fn[slot][fn / 64] |= 1ULL << (fn % 64);
            }
        } else if ((strcmp(kind, "latency") == 0 || strcmp(kind, "hang") == 0) &&
                   fl->ndelay < SIM_MAX_DELAYS) {
            double secs = 0;
            int n = sscanf(rest, "%159s %lf", what, &secs);
            if (n < 1) continue;
            sim_delay_t *dl = &fl->delay[fl->ndelay];
            dl->dev = dev;
            dl->fn = strcmp(what, "*") == 0 ? -1 : sim_fn_lookup(what);
            if (dl->fn < 0 && strcmp(what, "*") != 0) continue;
            dl->hang = kind[0] == 'h';
            dl->seconds = secs;
            fl->ndelay++;
        } else if (strcmp(kind, "error") == 0 && fl->nerror < SIM_MAX_ERRORS) {
            sim_error_t *e = &fl->error[fl->nerror];
            if (sscanf(rest, "%u %159s", &e->code, what) != 2 || e->code == NVML_SUCCESS) continue;
            e->dev = dev;
            e->fn = -1;
            e->field = -1;
            if (strncmp(what, "field:", 6) == 0) {
                unsigned long id = strtoul(what + 6, NULL, 10);
                if (id >= SIM_FIELD_MAX) continue;
                e->field = (int)id;
            } else if ((e->fn = sim_fn_lookup(what)) < 0) {
                continue;
            }
            fl->nerror++;
        } else if (strcmp(kind, "xid") == 0 && dev >= 0 && fl->nxid < SIM_MAX_XIDS) {
            sim_xid_t *x = &fl->xid[fl->nxid];
            if (sscanf(rest, "%u %u %u %llu", &x->code, &x->gi, &x->ci, &x->seq) == 4) {
                x->dev = dev;
                fl->nxid++;
            }
        } else if (strcmp(kind, "mig") == 0 && dev >= 0) {
            fl->mig_set[dev] = 1 + (atoi(rest) != 0);
            fl->nmig[dev] = 0;
        } else if (strcmp(kind, "migdev") == 0 && dev >= 0 && fl->nmig[dev] < SIM_MAX_MIG) {
            if (sim_parse_mig(rest, &fl->mig[dev][fl->nmig[dev]]) == 0) fl->nmig[dev]++;
        } else if (strcmp(kind, "scripted") == 0 && dev >= 0) {
            long long t0 = atoll(rest);
            fl->script_t0[dev] = t0 > 0 ? t0 : 1;
        } else if (strcmp(kind, "proc") == 0 && dev >= 0 && fl->nsproc < SIM_MAX_SPROCS) {
            sim_sproc_t *p = &fl->sproc[fl->nsproc];
            p->gpu = dev;
            if (sscanf(rest, "%u %u %d %llu %u %u %u %u %lld %lld", &p->pid, &p->kind, &p->gi,
                       &p->mem, &p->sm, &p->mu, &p->enc, &p->dec, &p->start_us, &p->end_us) == 10 &&
                p->kind <= 2)
                fl->nsproc++;
        }
    }
}

static void sim_reload_faults(int force)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/faults", sim.dir);
    struct stat st;
    if (stat(path, &st) != 0) memset(&st, 0, sizeof st);
    if (!force && st.st_ino == sim_faults_st.st_ino && st.st_size == sim_faults_st.st_size &&
        st.st_mtim.tv_sec == sim_faults_st.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == sim_faults_st.st_mtim.tv_nsec)
        return;
    sim_faults_st = st;
    sim_faults_t *fl = calloc(1, sizeof *fl);
    if (!fl) return;
    FILE *f = st.st_ino ? fopen(path, "r") : NULL;
    if (f) {
        sim_parse_faults(f, fl);
        fclose(f);
    }
    const sim_faults_t *old = sim_cur_faults;
    for (unsigned i = 0; i < sim.ngpu; i++) {
        int changed = fl->mig_set[i] != old->mig_set[i] || fl->nmig[i] != old->nmig[i] ||
                      memcmp(fl->mig[i], old->mig[i], sizeof fl->mig[i]) != 0;
        if (!changed && !force) continue; /* re-init re-reads the profile's layout */
        if (changed) sim_events_mig_changed((int)i);
        if (fl->mig_set[i] == 0) {
            sim_apply_mig((int)i, sim.gpu[i].mig_enabled ? sim.gpu[i].nmig : 0, sim.gpu[i].mig);
        } else {
            sim_gpu_t *g = &sim.gpu[i];
            unsigned long long saved = g->mig_enabled;
            g->mig_enabled = fl->mig_set[i] == 2;
            sim_apply_mig((int)i, fl->mig_set[i] == 2 ? fl->nmig[i] : 0, fl->mig[i]);
            g->mig_enabled = saved;
        }
    }
    sim_build_tracks(fl);
    __atomic_store_n(&sim_cur_faults, fl, __ATOMIC_RELEASE);
    /* Keep the last few snapshots alive for readers that still hold them. */
    if (sim_retired[sim_retired_pos]) free(sim_retired[sim_retired_pos]);
    sim_retired[sim_retired_pos] = old == &sim_no_faults ? NULL : (sim_faults_t *)old;
    sim_retired_pos = (sim_retired_pos + 1) % SIM_RETIRED;
    sim_events_route();
}

void sim_tick(void)
{
    /* a real driver looks at no file: with the watcher on, neither do the calls */
    if (__atomic_load_n(&sim_faults_watched, __ATOMIC_ACQUIRE)) return;
    int64_t now = sim_mono_coarse_ms();
    int64_t last = __atomic_load_n(&sim_last_check_ms, __ATOMIC_RELAXED);
    if (now - last < 100) return;
    if (pthread_mutex_trylock(&sim.lock) != 0) return;
    if (now - sim_last_check_ms >= 100) {
        __atomic_store_n(&sim_last_check_ms, now, __ATOMIC_RELAXED);
        sim_reload_faults(0);
    }
    pthread_mutex_unlock(&sim.lock);
}

/* Re-read the faults file now if it changed (stat compare), whatever the last check's age:
 * the event watcher's wake-up after the file was replaced (events.c). */
void sim_check_faults(void)
{
    pthread_mutex_lock(&sim.lock);
    if (__atomic_load_n(&sim.initialized, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&sim_last_check_ms, sim_mono_coarse_ms(), __ATOMIC_RELAXED);
        sim_reload_faults(0);
    }
    pthread_mutex_unlock(&sim.lock);
}

static void sim_sleep(double seconds)
{
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void sim_delay(int fn, int dev)
{
    for (;;) {
        const sim_faults_t *fl = sim_faults();
        if (fl->ndelay == 0) return;
        double wait = 0;
        int hang = 0;
        for (int i = 0; i < fl->ndelay; i++) {
            const sim_delay_t *d = &fl->delay[i];
            if ((d->fn == -1 || d->fn == fn) && (d->dev == -1 || d->dev == dev)) {
                if (d->hang) hang = 1;
                else if (d->seconds > wait) wait = d->seconds;
            }
        }
        if (!hang) {
            if (wait > 0) sim_sleep(wait);
            return;
        }
        sim_sleep(0.05); /* hung until the fault is cleared */
        sim_tick();
    }
}

/* ---------------------------------------------------------------- handles and gates */

sim_dev_t *sim_dev_of(nvmlDevice_t h)
{
    uintptr_t p = (uintptr_t)h, base = (uintptr_t)&sim.dev[0];
    uintptr_t end = (uintptr_t)&sim.dev[sim.ngpu * SIM_DEV_STRIDE];
    if (p < base || p >= end || (p - base) % sizeof(sim_dev_t) != 0) return NULL;
    sim_dev_t *d = (sim_dev_t *)h;
    return d;
}

nvmlDevice_t sim_handle(sim_dev_t *d)
{
    return (nvmlDevice_t)d;
}

sim_gpu_t *sim_gpu_of(const sim_dev_t *d)
{
    return &sim.gpu[d->gpu];
}

/* An injected return code for function fn on device dev (-1: a call without a device). */
static nvmlReturn_t sim_fn_error(const sim_faults_t *fl, int fn, int dev)
{
    for (int i = 0; i < fl->nerror; i++) {
        const sim_error_t *e = &fl->error[i];
        if (e->fn == fn && (e->dev == -1 || e->dev == dev)) return (nvmlReturn_t)e->code;
    }
    return NVML_SUCCESS;
}

nvmlReturn_t sim_enter(int fn)
{
    sim_count(fn);
    if (!__atomic_load_n(&sim.initialized, __ATOMIC_ACQUIRE)) return NVML_ERROR_UNINITIALIZED;
    sim_tick();
    sim_delay(fn, -1);
    const sim_faults_t *fl = sim_faults();
    nvmlReturn_t err = sim_fn_error(fl, fn, -1);
    if (err != NVML_SUCCESS) return err;
    if (fl->unsup_fn[SIM_MAX_GPUS][fn / 64] & (1ULL << (fn % 64))) return NVML_ERROR_NOT_SUPPORTED;
    return NVML_SUCCESS;
}

nvmlReturn_t sim_enter_dev(int fn, nvmlDevice_t h, sim_dev_t **out)
{
    sim_count(fn);
    *out = NULL;
    if (!__atomic_load_n(&sim.initialized, __ATOMIC_ACQUIRE)) return NVML_ERROR_UNINITIALIZED;
    sim_tick();
    sim_dev_t *d = sim_dev_of(h);
    if (d == NULL || !__atomic_load_n(&d->active, __ATOMIC_ACQUIRE))
        return NVML_ERROR_INVALID_ARGUMENT;
    const sim_faults_t *fl = sim_faults();
    if (fl->lost[d->gpu]) return NVML_ERROR_GPU_IS_LOST;
    sim_delay(fn, d->gpu);
    fl = sim_faults();
    if (fl->lost[d->gpu]) return NVML_ERROR_GPU_IS_LOST;
    nvmlReturn_t err = sim_fn_error(fl, fn, d->gpu);
    if (err != NVML_SUCCESS) return err;
    uint64_t bit = 1ULL << (fn % 64);
    if ((sim.gpu[d->gpu].unsup_fn[fn / 64] | fl->unsup_fn[d->gpu][fn / 64] |
         fl->unsup_fn[SIM_MAX_GPUS][fn / 64]) & bit)
        return NVML_ERROR_NOT_SUPPORTED;
    *out = d;
    return NVML_SUCCESS;
}

int sim_field_unsupported(const sim_dev_t *d, unsigned field)
{
    if (field >= SIM_FIELD_MAX) return 1;
    const sim_faults_t *fl = sim_faults();
    uint64_t bit = 1ULL << (field % 64);
    return ((sim.gpu[d->gpu].unsup_field[field / 64] | fl->unsup_field[d->gpu][field / 64] |
             fl->unsup_field[SIM_MAX_GPUS][field / 64]) & bit) != 0;
}

nvmlReturn_t sim_field_error(const sim_dev_t *d, unsigned field)
{
    const sim_faults_t *fl = sim_faults();
    for (int i = 0; i < fl->nerror; i++) {
        const sim_error_t *e = &fl->error[i];
        if (e->field == (int)field && (e->dev == -1 || e->dev == d->gpu))
            return (nvmlReturn_t)e->code;
    }
    return NVML_SUCCESS;
}

nvmlReturn_t sim_stub(int fn, nvmlDevice_t device)
{
    nvmlReturn_t r;
    if (device) {
        sim_dev_t *d;
        r = sim_enter_dev(fn, device, &d);
    } else {
        r = sim_enter(fn);
    }
    return r != NVML_SUCCESS ? r : NVML_ERROR_NOT_SUPPORTED;
}

/* ---------------------------------------------------------------- init / shutdown */

static nvmlReturn_t sim_init(int fn)
{
    sim_count(fn);
    pthread_mutex_lock(&sim.lock);
    if (sim.initialized > 0) {
        sim.initialized++;
        pthread_mutex_unlock(&sim.lock);
        return NVML_SUCCESS;
    }
    const char *dir = getenv("GPU_SIM_DIR");
    if (!dir || !*dir) {
        fprintf(stderr, "gpu-sim: GPU_SIM_DIR is not set: this is the simulated NVML library; "
                        "run `eval \"$(gpu-sim env PROFILE)\"` to choose a profile\n");
        pthread_mutex_unlock(&sim.lock);
        return NVML_ERROR_DRIVER_NOT_LOADED;
    }
    snprintf(sim.dir, sizeof sim.dir, "%s", dir);
    if (sim_load_config() != 0) {
        pthread_mutex_unlock(&sim.lock);
        return NVML_ERROR_DRIVER_NOT_LOADED;
    }
    if (sim.t_init == 0) sim.t_init = sim_mono();
    sim_map_counts();
    sim_faults_st.st_ino = (ino_t)-1; /* force the first read */
    sim_reload_faults(1);
    sim_last_check_ms = sim_mono_coarse_ms();
    /* the directory may be another one now: polled until a wait watches it */
    __atomic_store_n(&sim_faults_watched, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&sim.initialized, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&sim.lock);
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlInitWithFlags(unsigned int flags)
{
    (void)flags;
    return sim_init(FN_nvmlInitWithFlags);
}

nvmlReturn_t DECLDIR nvmlInit_v2(void)
{
    return sim_init(FN_nvmlInit_v2);
}

nvmlReturn_t DECLDIR nvmlInit(void)
{
    return sim_init(FN_nvmlInit);
}

nvmlReturn_t DECLDIR nvmlShutdown(void)
{
    sim_count(FN_nvmlShutdown);
    pthread_mutex_lock(&sim.lock);
    if (sim.initialized <= 0) {
        pthread_mutex_unlock(&sim.lock);
        return NVML_ERROR_UNINITIALIZED;
    }
    __atomic_store_n(&sim.initialized, sim.initialized - 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&sim.lock);
    return NVML_SUCCESS;
}

const DECLDIR char *nvmlErrorString(nvmlReturn_t result)
{
    sim_count(FN_nvmlErrorString);
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_ALREADY_INITIALIZED: return "Already Initialized";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_INSUFFICIENT_POWER: return "Insufficient External Power";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT: return "Timeout";
    case NVML_ERROR_IRQ_ISSUE: return "Interrupt Request Issue";
    case NVML_ERROR_LIBRARY_NOT_FOUND: return "NVML Shared Library Not Found";
    case NVML_ERROR_FUNCTION_NOT_FOUND: return "Function Not Found";
    case NVML_ERROR_CORRUPTED_INFOROM: return "Corrupted infoROM";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_RESET_REQUIRED: return "GPU requires restart";
    case NVML_ERROR_OPERATING_SYSTEM: return "The operating system has blocked the request.";
    case NVML_ERROR_LIB_RM_VERSION_MISMATCH: return "RM has detected an NVML/RM version mismatch.";
    case NVML_ERROR_IN_USE: return "In use by another client";
    case NVML_ERROR_MEMORY: return "Insufficient Memory";
    case NVML_ERROR_NO_DATA: return "No data";
    case NVML_ERROR_VGPU_ECC_NOT_SUPPORTED: return "ECC is not supported on vGPU";
    case NVML_ERROR_INSUFFICIENT_RESOURCES: return "Insufficient resources";
    case NVML_ERROR_FREQ_NOT_SUPPORTED: return "Frequency not supported";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH: return "Argument version mismatch";
    case NVML_ERROR_DEPRECATED: return "Deprecated";
    case NVML_ERROR_NOT_READY: return "Not ready";
    case NVML_ERROR_GPU_NOT_FOUND: return "GPU not found";
    case NVML_ERROR_INVALID_STATE: return "Invalid state";
    default: return "Unknown Error";
    }
}
