/*
 * Simulated NVML: processes that start and exit, deterministically for a seed.
 *
 * Each device has a few process slots. Slot 0 is a long-running job on every busy GPU (and
 * on every MIG device); the other slots cycle through epochs of 1-5 minutes, and in each
 * epoch a process may start at some offset and exit before the epoch ends. The PID and
 * memory of an occurrence are hashes of (seed, device, slot, epoch).
 */
#include "sim.h"

int sim_mig_enabled(int gpu);
unsigned sim_mig_n(int gpu);

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
    sim_proc_t p[SIM_MAX_PROCS * SIM_MAX_MIG];
    unsigned n = sim_procs(d, tau, p, SIM_MAX_PROCS * SIM_MAX_MIG);
    unsigned long long used = 0;
    for (unsigned i = 0; i < n; i++) used += p[i].mem;
    /* driver context overhead per process */
    used += (unsigned long long)n * (310ULL << 20);
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
    sim_proc_t all[SIM_MAX_PROCS * SIM_MAX_MIG];
    unsigned n = sim_procs(d, sim_time(), all, SIM_MAX_PROCS * SIM_MAX_MIG), k = 0;
    const sim_gpu_t *g = &sim.gpu[d->gpu];
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
    sim_proc_t p[SIM_MAX_PROCS * SIM_MAX_MIG];
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
    sim_proc_t p[SIM_MAX_PROCS * SIM_MAX_MIG];
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

/* Process utilisation: one sample per busy process, taken every 1/6 s of simulated time. */
int sim_mig_enabled(int gpu);

typedef struct {
    unsigned pid;
    unsigned long long ts;
    unsigned sm, mem, enc, dec;
} sim_psample_t;

static nvmlReturn_t sim_psamples(const sim_dev_t *d, unsigned long long last_seen, sim_psample_t *out,
                                 unsigned *n_out)
{
    if (d->slot >= 0 || sim_mig_enabled(d->gpu)) return NVML_ERROR_NOT_SUPPORTED;
    double tau = sim_time();
    sim_proc_t p[SIM_MAX_PROCS];
    unsigned n = sim_procs(d, tau, p, SIM_MAX_PROCS), k = 0;
    sim_now_t now;
    sim_eval(d, tau, &now);
    long long period = 166666;
    unsigned long long ts = (unsigned long long)((sim_timestamp_us() / period) * period);
    if (ts <= last_seen) {
        *n_out = 0;
        return NVML_SUCCESS;
    }
    for (unsigned i = 0; i < n; i++) {
        unsigned sm = (unsigned)lround(now.util * p[i].sm_share);
        if (sm == 0 && !p[i].graphics) continue;
        out[k].pid = p[i].pid;
        out[k].ts = ts;
        out[k].sm = sm;
        out[k].mem = (unsigned)lround(now.mem_util * p[i].sm_share);
        out[k].enc = (unsigned)lround(now.enc_util * p[i].sm_share);
        out[k].dec = (unsigned)lround(now.dec_util * p[i].sm_share);
        k++;
    }
    *n_out = k;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetProcessUtilization(nvmlDevice_t device, nvmlProcessUtilizationSample_t *utilization, unsigned int *processSamplesCount, unsigned long long lastSeenTimeStamp)
{
    SIM_ENTER_DEV(nvmlDeviceGetProcessUtilization, device, d);
    if (processSamplesCount == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    sim_psample_t s[SIM_MAX_PROCS];
    unsigned n = 0;
    nvmlReturn_t r = sim_psamples(d, lastSeenTimeStamp, s, &n);
    if (r != NVML_SUCCESS) return r;
    if (n == 0) {
        *processSamplesCount = 0;
        return NVML_ERROR_NOT_FOUND;
    }
    if (utilization == NULL || *processSamplesCount < n) {
        *processSamplesCount = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (unsigned i = 0; i < n; i++) {
        utilization[i].pid = s[i].pid;
        utilization[i].timeStamp = s[i].ts;
        utilization[i].smUtil = s[i].sm;
        utilization[i].memUtil = s[i].mem;
        utilization[i].encUtil = s[i].enc;
        utilization[i].decUtil = s[i].dec;
    }
    *processSamplesCount = n;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetProcessesUtilizationInfo(nvmlDevice_t device, nvmlProcessesUtilizationInfo_t *procesesUtilInfo)
{
    SIM_ENTER_DEV(nvmlDeviceGetProcessesUtilizationInfo, device, d);
    SIM_CHECK_VERSION(procesesUtilInfo, nvmlProcessesUtilizationInfo_v1);
    nvmlProcessesUtilizationInfo_t *info = procesesUtilInfo;
    sim_psample_t s[SIM_MAX_PROCS];
    unsigned n = 0;
    nvmlReturn_t r = sim_psamples(d, info->lastSeenTimeStamp, s, &n);
    if (r != NVML_SUCCESS) return r;
    if (n == 0) {
        info->processSamplesCount = 0;
        return NVML_ERROR_NOT_FOUND;
    }
    if (info->procUtilArray == NULL || info->processSamplesCount < n) {
        info->processSamplesCount = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (unsigned i = 0; i < n; i++) {
        nvmlProcessUtilizationInfo_v1_t *o = &info->procUtilArray[i];
        o->timeStamp = s[i].ts;
        o->pid = s[i].pid;
        o->smUtil = s[i].sm;
        o->memUtil = s[i].mem;
        o->encUtil = s[i].enc;
        o->decUtil = s[i].dec;
        o->jpgUtil = 0;
        o->ofaUtil = 0;
    }
    info->processSamplesCount = n;
    return NVML_SUCCESS;
}
