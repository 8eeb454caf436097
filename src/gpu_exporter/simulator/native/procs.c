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
            const sim_dev_t *m = &sim.dev[(unsigned)d->gpu * (SIM_MAX_MIG + 1) + 1 + j];
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
