/*
 * Simulated NVML: processes that start and exit, deterministically for a seed.
 *
 * Each device has a few process slots. Slot 0 is a long-running job on every busy GPU (and
 * on every MIG device); the other slots cycle through epochs of 1-5 minutes, and in each
 * epoch a process may start at some offset and exit before the epoch ends. The PID and
 * memory of an occurrence are hashes of (seed, device, slot, epoch).
 *
 * Scripted processes (the faults file's "scripted"/"proc" lines, written by
 * FaultInjector.add_process) replace a GPU's seeded ones: its lists, memory, utilisation,
 * power and energy then follow them. Utilisation is piecewise constant between process starts
 * and ends (wall-clock microseconds shared by every process using the state directory), so
 * its integral, from which energy follows, is exact and only grows.
 */
#include "sim.h"

int sim_mig_enabled(int gpu);
unsigned sim_mig_n(int gpu);

/* ---------------------------------------------------------------- scripted processes */

static int sim_gi_key(int gi) { return gi < 0 ? 15 : (gi & 15); }

/* The first active MIG device of GPU instance gi, or NULL. */
static const sim_dev_t *sim_gi_dev(int gpu, int gi)
{
    if (gi < 0 || !sim_mig_enabled(gpu)) return NULL;
    for (unsigned j = 0; j < sim_mig_n(gpu); j++) {
        const sim_dev_t *m = sim_mig_slot(gpu, j);
        if (m->active && (int)m->mig.gi == gi) return m;
    }
    return NULL;
}

/* Utilisation of a track from per-instance sums: an instance's is its processes' sum (at most
 * 100); a MIG GPU's is its instances' weighted by their share of the memory slices. */
static double sim_level(const double *sum, const double *frac, int gi)
{
    if (gi >= 0) return fmin(100.0, sum[sim_gi_key(gi)]);
    double u = 0;
    for (int k = 0; k < 16; k++) u += frac[k] * fmin(100.0, sum[k]);
    return fmin(100.0, u);
}

typedef struct {
    long long t;
    int key;
    double d;
} sim_ev_t;

static int sim_ev_cmp(const void *a, const void *b)
{
    long long x = ((const sim_ev_t *)a)->t, y = ((const sim_ev_t *)b)->t;
    return (x > y) - (x < y);
}

static void sim_build_track(sim_faults_t *fl, int gpu, int gi, const double *frac, int mig)
{
    if (fl->ntrack >= SIM_MAX_TRACKS) return;
    sim_track_t *tr = &fl->track[fl->ntrack++];
    memset(tr, 0, sizeof *tr);
    tr->gpu = gpu;
    tr->gi = gi;
    tr->off = fl->ntev;
    double live[4][16] = {{0}};
    sim_ev_t ev[2 * SIM_MAX_SPROCS];
    int nev = 0;
    for (int j = fl->gproc_off[gpu]; j < fl->gproc_off[gpu + 1]; j++) {
        const sim_sproc_t *p = &fl->sproc[fl->gproc[j]];
        if (gi >= 0 && p->gi != gi) continue;
        int key = mig ? sim_gi_key(p->gi) : 15; /* without MIG a GPU instance means nothing */
        if (p->end_us == 0) {
            live[0][key] += p->sm;
            live[1][key] += p->mu;
            live[2][key] += p->enc;
            live[3][key] += p->dec;
        }
        if (p->sm == 0) continue;
        ev[nev++] = (sim_ev_t){p->start_us, key, (double)p->sm};
        if (p->end_us) ev[nev++] = (sim_ev_t){p->end_us, key, -(double)p->sm};
    }
    tr->sm = sim_level(live[0], frac, gi);
    tr->mu = sim_level(live[1], frac, gi);
    tr->enc = sim_level(live[2], frac, gi);
    tr->dec = sim_level(live[3], frac, gi);
    qsort(ev, (size_t)nev, sizeof ev[0], sim_ev_cmp);
    double sum[16] = {0}, integral = 0, level = 0;
    long long t0 = fl->script_t0[gpu], prev = t0;
    for (int e = 0; e < nev && fl->ntev < SIM_MAX_TEV; e++) {
        long long t = ev[e].t < t0 ? t0 : ev[e].t;
        integral += level * (double)(t - prev);
        prev = t;
        sum[ev[e].key] += ev[e].d;
        if (sum[ev[e].key] < 0.5) sum[ev[e].key] = 0;
        level = sim_level(sum, frac, gi);
        fl->tev[fl->ntev++] = (sim_tev_t){t, integral, level};
    }
    tr->n = fl->ntev - tr->off;
}

/* Precompute the utilisation tracks of every scripted GPU and its instances (at each reload,
 * after the MIG layout of the same snapshot is in place). */
void sim_build_tracks(sim_faults_t *fl)
{
    /* index the records per GPU (counting sort, file order kept) */
    memset(fl->gproc_off, 0, sizeof fl->gproc_off);
    for (int i = 0; i < fl->nsproc; i++) fl->gproc_off[fl->sproc[i].gpu + 1]++;
    for (int g = 0; g < SIM_MAX_GPUS; g++) fl->gproc_off[g + 1] += fl->gproc_off[g];
    short fill[SIM_MAX_GPUS];
    memcpy(fill, fl->gproc_off, sizeof fill);
    for (int i = 0; i < fl->nsproc; i++) fl->gproc[fill[fl->sproc[i].gpu]++] = (short)i;
    for (unsigned gpu = 0; gpu < sim.ngpu && gpu < SIM_MAX_GPUS; gpu++) {
        if (!fl->script_t0[gpu]) continue;
        double frac[16] = {0};
        int mig = sim_mig_enabled((int)gpu);
        if (!mig) frac[15] = 1.0;
        for (unsigned j = 0; mig && j < sim_mig_n((int)gpu); j++) {
            const sim_dev_t *m = sim_mig_slot((int)gpu, j);
            if (m->active && m->mig.ci == 0) frac[sim_gi_key((int)m->mig.gi)] = m->mig.size / 8.0;
        }
        sim_build_track(fl, (int)gpu, -1, frac, mig);
        for (unsigned j = 0; mig && j < sim_mig_n((int)gpu); j++) {
            const sim_dev_t *m = sim_mig_slot((int)gpu, j);
            if (m->active && m->mig.ci == 0) sim_build_track(fl, (int)gpu, (int)m->mig.gi, frac, mig);
        }
    }
}

static const sim_track_t *sim_track(const sim_faults_t *fl, int gpu, int gi)
{
    for (int i = 0; i < fl->ntrack; i++)
        if (fl->track[i].gpu == gpu && fl->track[i].gi == gi) return &fl->track[i];
    return NULL;
}

/* Integral (percent * seconds) of a track's utilisation from scripting start to now_us. */
static double sim_track_int(const sim_faults_t *fl, const sim_track_t *tr, long long now_us)
{
    if (tr == NULL || tr->n == 0) return 0;
    int lo = 0, hi = tr->n - 1, k = -1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (fl->tev[tr->off + mid].t <= now_us) {
            k = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    if (k < 0) return 0;
    const sim_tev_t *e = &fl->tev[tr->off + k];
    return (e->integral + e->level * (double)(now_us - e->t)) / 1e6;
}

/* This process's simulated time when it first saw GPU gpu scripted: the profile's utilisation
 * integral up to then is kept, so energy never goes back (the scripted part counts from the
 * scripting start, the at most ~100 ms before this process noticed included). */
static double sim_script_tau0(int gpu, long long t0, double tau)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static long long seen_t0[SIM_MAX_GPUS];
    static double seen_tau[SIM_MAX_GPUS];
    pthread_mutex_lock(&lock);
    if (seen_t0[gpu] != t0) {
        seen_t0[gpu] = t0;
        seen_tau[gpu] = tau;
    }
    double r = seen_tau[gpu];
    pthread_mutex_unlock(&lock);
    return r;
}

int sim_script_util(const sim_dev_t *d, double tau, int whole, double *u, double *ui, double *mu,
                    double *enc, double *dec)
{
    const sim_faults_t *fl = sim_faults();
    long long t0 = fl->script_t0[d->gpu];
    if (!t0) return 0;
    int gi = (!whole && d->slot >= 0) ? (int)d->mig.gi : -1;
    const sim_track_t *tr = sim_track(fl, d->gpu, gi);
    long long now = sim_timestamp_us();
    double share = gi >= 0 ? d->share : 1.0;
    *u = tr ? tr->sm : 0;
    *mu = tr ? tr->mu : 0;
    *enc = tr ? tr->enc : 0;
    *dec = tr ? tr->dec : 0;
    if (ui) {
        double tau0 = sim_script_tau0(d->gpu, t0, tau);
        *ui = sim_wave_int(&sim.gpu[d->gpu], tau0) * share +
              (sim.frozen >= 0 ? 0 : sim_track_int(fl, tr, now));
    }
    return 1;
}

/* Live scripted processes of a device: a MIG device lists its GPU instance's. */
static unsigned sim_sprocs(const sim_faults_t *fl, const sim_dev_t *d, sim_proc_t *out, unsigned max)
{
    unsigned n = 0;
    for (int j = fl->gproc_off[d->gpu]; j < fl->gproc_off[d->gpu + 1] && n < max; j++) {
        const sim_sproc_t *p = &fl->sproc[fl->gproc[j]];
        if (p->end_us != 0) continue;
        const sim_dev_t *m = sim_gi_dev(d->gpu, p->gi);
        if (d->slot >= 0 && (m == NULL || m->mig.gi != d->mig.gi || m->mig.ci != d->mig.ci)) continue;
        sim_proc_t o = {0};
        o.pid = p->pid;
        o.mem = p->mem;
        o.gi = m ? m->mig.gi : 0xFFFFFFFFu;
        o.ci = m ? m->mig.ci : 0xFFFFFFFFu;
        o.graphics = p->kind == 1;
        o.mps = p->kind == 2;
        o.sm_share = p->sm / 100.0;
        out[n++] = o;
    }
    return n;
}

static unsigned sim_procs_one(const sim_dev_t *d, double tau, sim_proc_t *out, unsigned max)
{
    const sim_gpu_t *g = &sim.gpu[d->gpu];
    unsigned n = 0;
    int mig = d->slot >= 0;
    unsigned slots = mig ? 2 : (unsigned)g->procs;
    if (slots > SIM_MAX_PROCS) slots = SIM_MAX_PROCS;
    if (!mig && g->util_mean <= 0 && !g->graphics_procs) return 0;
    double total = mig ? (double)d->mig.mem_mib : (double)(g->mem_total_mib - g->mem_reserved_mib);
    total *= 1048576.0;
    uint64_t dkey = mig ? 1000 + d->mig.gi : 0;
    for (unsigned k = 0; k < slots && n < max; k++) {
        uint64_t base = sim_hash(sim_hash(g->seed, dkey), k);
        sim_proc_t p = {0};
        p.gi = mig ? d->mig.gi : 0xFFFFFFFFu;
        p.ci = mig ? d->mig.ci : 0xFFFFFFFFu;
        int graphics = !mig && g->graphics_procs && k == slots - 1;
        if (graphics) {
            p.pid = 1200 + (unsigned)(base % 800);
            p.mem = 24ULL << 20;
            p.graphics = 1;
            p.sm_share = 0.01;
        } else if (k == 0) {
            if (!mig && g->util_mean <= 0) continue;
            p.pid = 3000 + (unsigned)(base % 20000);
            p.mem = (unsigned long long)(total * (0.45 + 0.2 * (double)(base >> 40) / 16777216.0));
            p.sm_share = 0.8;
        } else {
            double len = 60 + (double)(base % 240);
            double e = floor(tau / len);
            uint64_t h = sim_hash(base, (uint64_t)e);
            if (h % 100 >= 60) continue;
            double start = e * len + (double)((h >> 8) % (uint64_t)(len / 3));
            double dur = len / 3 + (double)((h >> 16) % (uint64_t)(len / 2));
            if (tau < start || tau >= start + dur) continue;
            p.pid = 24000 + (unsigned)((h >> 24) % 40000);
            double share = total / 8.0;
            p.mem = (unsigned long long)(share * (0.2 + 0.8 * (double)((h >> 32) % 1000) / 1000.0));
            p.mem &= ~((1ULL << 20) - 1);
            p.sm_share = 0.2 / (double)(slots > 1 ? slots - 1 : 1);
        }
        p.mem &= ~((1ULL << 20) - 1);
        out[n++] = p;
    }
    return n;
}

unsigned sim_procs(const sim_dev_t *d, double tau, sim_proc_t *out, unsigned max)
{
    const sim_faults_t *fl = sim_faults();
    if (fl->script_t0[d->gpu]) return sim_sprocs(fl, d, out, max);
    if (d->slot < 0 && sim_mig_enabled(d->gpu)) {
        unsigned n = 0;
        for (unsigned j = 0; j < sim_mig_n(d->gpu); j++) {
            const sim_dev_t *m = sim_mig_slot(d->gpu, j);
            if (!m->active) continue;
            n += sim_procs_one(m, tau, out + n, max - n);
        }
        return n;
    }
    return sim_procs_one(d, tau, out, max);
}

unsigned long long sim_mem_used(const sim_dev_t *d, double tau)
{
    sim_proc_t p[SIM_LIST_MAX];
    unsigned n = sim_procs(d, tau, p, SIM_LIST_MAX);
    unsigned long long used = 0;
    for (unsigned i = 0; i < n; i++) used += p[i].mem;
    /* driver context overhead per process (scripted processes: exactly their memory) */
    if (!sim_faults()->script_t0[d->gpu]) used += (unsigned long long)n * (310ULL << 20);
    const sim_gpu_t *g = &sim.gpu[d->gpu];
    unsigned long long cap = d->slot >= 0 ? (unsigned long long)d->mig.mem_mib << 20
                                          : (g->mem_total_mib - g->mem_reserved_mib) << 20;
    if (used > cap) used = cap;
    return used;
}

/* ---------------------------------------------------------------- NVML entry points */

static unsigned sim_sample_procs(const sim_dev_t *d, int kind, sim_proc_t *out)
{
    /* kind: 0 compute, 1 graphics, 2 MPS clients */
    sim_proc_t all[SIM_LIST_MAX];
    unsigned n = sim_procs(d, sim_time(), all, SIM_LIST_MAX), k = 0;
    const sim_gpu_t *g = &sim.gpu[d->gpu];
    if (sim_faults()->script_t0[d->gpu]) {
        /* MPS clients: their own list; the compute list shows the MPS server holding them */
        unsigned long long mps_mem = 0;
        int server = -1;
        for (unsigned i = 0; i < n; i++) {
            if (all[i].mps) {
                mps_mem += all[i].mem;
                if (server < 0) server = (int)i;
            }
            if ((kind == 0 && !all[i].mps && !all[i].graphics) || (kind == 1 && all[i].graphics) ||
                (kind == 2 && all[i].mps))
                out[k++] = all[i];
        }
        if (kind == 0 && server >= 0) {
            out[k] = all[server];
            out[k].pid = 900 + (unsigned)(g->seed % 90);
            out[k].mem = mps_mem;
            out[k].mps = 0;
            k++;
        }
        return k;
    }
    if (g->mps && kind != 1) {
        if (kind == 0) {
            /* the compute list shows the MPS server holding its clients' memory */
            unsigned long long mem = 0;
            for (unsigned i = 0; i < n; i++)
                if (!all[i].graphics) mem += all[i].mem;
            if (mem == 0) return 0;
            out[0] = all[0];
            out[0].pid = 900 + (unsigned)(g->seed % 90);
            out[0].mem = mem;
            return 1;
        }
        for (unsigned i = 0; i < n; i++)
            if (!all[i].graphics) out[k++] = all[i];
        return k;
    }
    if (kind == 2) return 0;
    for (unsigned i = 0; i < n; i++)
        if (all[i].graphics == (kind == 1)) out[k++] = all[i];
    return k;
}

static nvmlReturn_t sim_proc_list(const sim_dev_t *d, int kind, unsigned *count, void *infos, int v1)
{
    if (count == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    sim_proc_t p[SIM_LIST_MAX];
    unsigned n = sim_sample_procs(d, kind, p);
    if (infos == NULL || *count < n) {
        /* size query (or too small a buffer): SUCCESS when there is nothing to list */
        *count = n;
        return n == 0 ? NVML_SUCCESS : NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (unsigned i = 0; i < n; i++) {
        if (v1) {
            nvmlProcessInfo_v1_t *o = (nvmlProcessInfo_v1_t *)infos + i;
            o->pid = p[i].pid;
            o->usedGpuMemory = p[i].mem;
        } else {
            nvmlProcessInfo_t *o = (nvmlProcessInfo_t *)infos + i;
            o->pid = p[i].pid;
            o->usedGpuMemory = p[i].mem;
            o->gpuInstanceId = p[i].gi;
            o->computeInstanceId = p[i].ci;
        }
    }
    *count = n;
    return NVML_SUCCESS;
}

#define SIM_PROC_FN(fn, kind, type, v1)                                               \
    nvmlReturn_t DECLDIR fn(nvmlDevice_t device, unsigned int *infoCount, type *infos) \
    {                                                                                 \
        SIM_ENTER_DEV(fn, device, d);                                                 \
        return sim_proc_list(d, kind, infoCount, infos, v1);                          \
    }

SIM_PROC_FN(nvmlDeviceGetComputeRunningProcesses, 0, nvmlProcessInfo_v1_t, 1)
SIM_PROC_FN(nvmlDeviceGetComputeRunningProcesses_v2, 0, nvmlProcessInfo_v2_t, 0)
SIM_PROC_FN(nvmlDeviceGetComputeRunningProcesses_v3, 0, nvmlProcessInfo_t, 0)
SIM_PROC_FN(nvmlDeviceGetGraphicsRunningProcesses, 1, nvmlProcessInfo_v1_t, 1)
SIM_PROC_FN(nvmlDeviceGetGraphicsRunningProcesses_v2, 1, nvmlProcessInfo_v2_t, 0)
SIM_PROC_FN(nvmlDeviceGetGraphicsRunningProcesses_v3, 1, nvmlProcessInfo_t, 0)
SIM_PROC_FN(nvmlDeviceGetMPSComputeRunningProcesses, 2, nvmlProcessInfo_v1_t, 1)
SIM_PROC_FN(nvmlDeviceGetMPSComputeRunningProcesses_v2, 2, nvmlProcessInfo_v2_t, 0)
SIM_PROC_FN(nvmlDeviceGetMPSComputeRunningProcesses_v3, 2, nvmlProcessInfo_t, 0)

nvmlReturn_t DECLDIR nvmlDeviceGetRunningProcessDetailList(nvmlDevice_t device, nvmlProcessDetailList_t *plist)
{
    SIM_ENTER_DEV(nvmlDeviceGetRunningProcessDetailList, device, d);
    SIM_CHECK_VERSION(plist, nvmlProcessDetailList_v1);
    if (plist->mode > 2) return NVML_ERROR_INVALID_ARGUMENT;
    sim_proc_t p[SIM_LIST_MAX];
    unsigned n = sim_sample_procs(d, (int)plist->mode, p);
    if (plist->procArray == NULL || plist->numProcArrayEntries < n) {
        plist->numProcArrayEntries = n;
        return n == 0 ? NVML_SUCCESS : NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (unsigned i = 0; i < n; i++) {
        nvmlProcessDetail_v1_t *o = &plist->procArray[i];
        o->pid = p[i].pid;
        o->usedGpuMemory = p[i].mem;
        o->gpuInstanceId = p[i].gi;
        o->computeInstanceId = p[i].ci;
        o->usedGpuCcProtectedMemory = 0;
    }
    plist->numProcArrayEntries = n;
    return NVML_SUCCESS;
}

/* Process utilisation, as nvml.h describes it: one sample per process that ran in its last
 * sample period, newer than lastSeenTimeStamp (public traces of real drivers agree: one entry
 * per PID per call, whatever the time since the last call). Seeded processes: one sample per
 * busy process, the latest 1/6 s period. Scripted processes: the newest 1/6 s period (aligned
 * to multiples of the period in wall-clock microseconds) in which the process ran, its
 * utilisation times the part of that period it ran; a process that exited keeps its last
 * sample for SIM_PSAMPLE_DEPTH periods. A PID with two records (reused) gives its newest. A
 * call returns the samples strictly newer than lastSeenTimeStamp, oldest first; a buffer
 * too small for all of them gets INSUFFICIENT_SIZE and the count, as drivers answer. */
typedef nvmlProcessUtilizationSample_t sim_psample_t;

static nvmlReturn_t sim_psamples_seeded(const sim_dev_t *d, unsigned long long last_seen,
                                        sim_psample_t *out, unsigned *n_out)
{
    double tau = sim_time();
    sim_proc_t p[SIM_MAX_PROCS];
    unsigned n = sim_procs(d, tau, p, SIM_MAX_PROCS), k = 0;
    sim_now_t now;
    sim_eval(d, tau, &now);
    long long period = SIM_PSAMPLE_PERIOD_US;
    unsigned long long ts = (unsigned long long)((sim_timestamp_us() / period) * period);
    if (ts <= last_seen) {
        *n_out = 0;
        return NVML_SUCCESS;
    }
    for (unsigned i = 0; i < n; i++) {
        unsigned sm = (unsigned)lround(now.util * p[i].sm_share);
        if (sm == 0 && !p[i].graphics) continue;
        out[k].pid = p[i].pid;
        out[k].timeStamp = ts;
        out[k].smUtil = sm;
        out[k].memUtil = (unsigned)lround(now.mem_util * p[i].sm_share);
        out[k].encUtil = (unsigned)lround(now.enc_util * p[i].sm_share);
        out[k].decUtil = (unsigned)lround(now.dec_util * p[i].sm_share);
        k++;
    }
    *n_out = k;
    return NVML_SUCCESS;
}

/* The samples newer than last_seen, oldest first: written into `room` entries at `buf` when
 * they surely fit there (*out == buf then), else malloc'd (NULL when none). */
static nvmlReturn_t sim_psamples(const sim_dev_t *d, unsigned long long last_seen, sim_psample_t **out,
                                 unsigned *n_out, sim_psample_t *buf, unsigned room)
{
    *out = NULL;
    *n_out = 0;
    if (d->slot >= 0 || sim_mig_enabled(d->gpu)) return NVML_ERROR_NOT_SUPPORTED;
    const sim_faults_t *fl = sim_faults();
    if (!fl->script_t0[d->gpu]) {
        sim_psample_t *s = calloc(SIM_MAX_PROCS, sizeof *s);
        if (s == NULL) return NVML_ERROR_MEMORY;
        nvmlReturn_t r = sim_psamples_seeded(d, last_seen, s, n_out);
        if (r != NVML_SUCCESS || *n_out == 0) {
            free(s);
            return r;
        }
        *out = s;
        return NVML_SUCCESS;
    }
    const long long P = SIM_PSAMPLE_PERIOD_US;
    long long now = sim_timestamp_us();
    long long khi = now / P;
    long long klo = (long long)(last_seen / (unsigned long long)P) + 1;
    if (last_seen > (unsigned long long)now) return NVML_SUCCESS;
    if (khi - klo + 1 > SIM_PSAMPLE_DEPTH) klo = khi - SIM_PSAMPLE_DEPTH + 1;
    if (klo > khi) return NVML_SUCCESS;
    /* this GPU's records that ever used it (ended ones too: their last periods are kept) */
    const short *rec = &fl->gproc[fl->gproc_off[d->gpu]];
    int nall = fl->gproc_off[d->gpu + 1] - fl->gproc_off[d->gpu];
    unsigned nrec = 0;
    for (int j = 0; j < nall; j++) {
        const sim_sproc_t *p = &fl->sproc[rec[j]];
        if (p->sm | p->mu | p->enc | p->dec) nrec++;
    }
    if (nrec == 0) return NVML_SUCCESS;
    size_t most = nrec;
    sim_psample_t *s = buf != NULL && most <= room ? buf : calloc(most, sizeof *s);
    if (s == NULL) return NVML_ERROR_MEMORY;
    unsigned n = 0;
    int frozen = sim.frozen >= 0;
    for (int j = 0; j < nall; j++) {
        const sim_sproc_t *p = &fl->sproc[rec[j]];
        if (!(p->sm | p->mu | p->enc | p->dec)) continue;
        long long k = khi; /* the process's last period: the newest one, or the one it exited in */
        if (frozen) {
            if (p->end_us != 0) continue;
        } else if (p->end_us != 0 && p->end_us < khi * P) {
            k = (p->end_us + P - 1) / P;
        }
        long long ts = k * P, from = ts - P;
        if (k < klo || (!frozen && p->start_us >= ts)) continue;
        double f = 1.0;
        if (!frozen && (p->start_us > from || (p->end_us != 0 && p->end_us < ts))) {
            /* ran in part of the period: its utilisation times that part */
            long long a = p->start_us > from ? p->start_us : from;
            long long b = p->end_us != 0 && p->end_us < ts ? p->end_us : ts;
            if (b <= a) continue;
            f = (double)(b - a) / (double)P;
        }
        unsigned at = n; /* a reused PID: its newest record's sample only */
        for (unsigned i = 0; i < n; i++) {
            if (s[i].pid == p->pid) {
                at = (unsigned long long)ts >= s[i].timeStamp ? i : n + 1;
                break;
            }
        }
        if (at > n) continue;
        if (at < n) { /* drop the older one, keeping the order of the rest */
            memmove(&s[at], &s[at + 1], (n - at - 1) * sizeof *s);
            n--;
        }
        sim_psample_t v = {.pid = p->pid, .timeStamp = (unsigned long long)ts,
                           .smUtil = (unsigned)lround(p->sm * f),
                           .memUtil = (unsigned)lround(p->mu * f),
                           .encUtil = (unsigned)lround(p->enc * f),
                           .decUtil = (unsigned)lround(p->dec * f)};
        unsigned i = n++; /* oldest first; equal timestamps keep the records' order */
        while (i > 0 && s[i - 1].timeStamp > v.timeStamp) {
            s[i] = s[i - 1];
            i--;
        }
        s[i] = v;
    }
    if (n == 0) {
        if (s != buf) free(s);
        return NVML_SUCCESS;
    }
    *out = s;
    *n_out = n;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetProcessUtilization(nvmlDevice_t device, nvmlProcessUtilizationSample_t *utilization, unsigned int *processSamplesCount, unsigned long long lastSeenTimeStamp)
{
    SIM_ENTER_DEV(nvmlDeviceGetProcessUtilization, device, d);
    if (processSamplesCount == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    sim_psample_t *s = NULL;
    unsigned n = 0;
    /* written straight into the caller's array when they surely fit there (no copy) */
    nvmlReturn_t r = sim_psamples(d, lastSeenTimeStamp, &s, &n, utilization,
                                  utilization == NULL ? 0 : *processSamplesCount);
    if (r != NVML_SUCCESS) return r;
    if (n == 0) {
        *processSamplesCount = 0;
        return NVML_ERROR_NOT_FOUND;
    }
    if (s == utilization) {
        *processSamplesCount = n;
        return NVML_SUCCESS;
    }
    if (utilization == NULL || *processSamplesCount < n) { /* the size query, or too small */
        free(s);
        *processSamplesCount = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    memcpy(utilization, s, n * sizeof *s);
    free(s);
    *processSamplesCount = n;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetProcessesUtilizationInfo(nvmlDevice_t device, nvmlProcessesUtilizationInfo_t *procesesUtilInfo)
{
    SIM_ENTER_DEV(nvmlDeviceGetProcessesUtilizationInfo, device, d);
    SIM_CHECK_VERSION(procesesUtilInfo, nvmlProcessesUtilizationInfo_v1);
    nvmlProcessesUtilizationInfo_t *info = procesesUtilInfo;
    sim_psample_t *s = NULL;
    unsigned n = 0;
    nvmlReturn_t r = sim_psamples(d, info->lastSeenTimeStamp, &s, &n, NULL, 0);
    if (r != NVML_SUCCESS) return r;
    if (n == 0) {
        info->processSamplesCount = 0;
        return NVML_ERROR_NOT_FOUND;
    }
    if (info->procUtilArray == NULL || info->processSamplesCount < n) {
        free(s);
        info->processSamplesCount = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    unsigned m = n;
    for (unsigned i = 0; i < m; i++) {
        nvmlProcessUtilizationInfo_v1_t *o = &info->procUtilArray[i];
        o->timeStamp = s[i].timeStamp;
        o->pid = s[i].pid;
        o->smUtil = s[i].smUtil;
        o->memUtil = s[i].memUtil;
        o->encUtil = s[i].encUtil;
        o->decUtil = s[i].decUtil;
        o->jpgUtil = 0;
        o->ofaUtil = 0;
    }
    free(s);
    info->processSamplesCount = m;
    return NVML_SUCCESS;
}
