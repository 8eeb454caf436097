/*
 * Simulated NVML: GPM (GPU performance monitoring), on profiles with gpm: true only.
 *
 * A sample holds its simulated time and cumulative counters (integral of utilisation, PCIe
 * bytes, NVLink KiB per link). nvmlGpmMetricsGet computes every metric as a rate over the
 * two samples, with its own nvmlReturn; with a frozen clock (equal sample times) it reports
 * the instantaneous values instead.
 */
#include "sim.h"

int sim_mig_enabled(int gpu);
unsigned sim_mig_n(int gpu);

#define SIM_GPM_MAGIC 0x47504D53u

struct nvmlGpmSample_st {
    unsigned magic;
    int filled;
    int gpu;
    int gi; /* -1 = whole GPU */
    double share;
    double tau;
    double util_int;
    double level; /* scripted processes: utilisation at the sample (< 0: follow the wave) */
    unsigned long long pcie[2];
    unsigned long long nvl[SIM_MAX_LINKS][2];
};

/* Live samples, so that a stale or foreign pointer is rejected instead of dereferenced. */
static pthread_mutex_t gpm_lock = PTHREAD_MUTEX_INITIALIZER;
static struct nvmlGpmSample_st **gpm_live;
static size_t gpm_n, gpm_cap;

static int gpm_track(struct nvmlGpmSample_st *s, int add)
{
    int found = 0;
    pthread_mutex_lock(&gpm_lock);
    for (size_t i = 0; i < gpm_n; i++) {
        if (gpm_live[i] == s) {
            found = 1;
            if (add < 0) gpm_live[i] = gpm_live[--gpm_n];
            break;
        }
    }
    if (add > 0 && !found) {
        if (gpm_n == gpm_cap) {
            size_t cap = gpm_cap ? gpm_cap * 2 : 64;
            struct nvmlGpmSample_st **p = realloc(gpm_live, cap * sizeof *p);
            if (p) {
                gpm_live = p;
                gpm_cap = cap;
            }
        }
        if (gpm_n < gpm_cap) {
            gpm_live[gpm_n++] = s;
            found = 1;
        }
    }
    pthread_mutex_unlock(&gpm_lock);
    return found;
}

#define GPM_VALID(s) ((s) != NULL && gpm_track((s), 0))

nvmlReturn_t DECLDIR nvmlGpmQueryDeviceSupport(nvmlDevice_t device, nvmlGpmSupport_t *gpmSupport)
{
    SIM_ENTER_DEV(nvmlGpmQueryDeviceSupport, device, d);
    SIM_CHECK_VERSION(gpmSupport, NVML_GPM_SUPPORT_VERSION);
    gpmSupport->isSupportedDevice = d->slot < 0 && sim_gpu_of(d)->gpm;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlGpmQueryIfStreamingEnabled(nvmlDevice_t device, unsigned int *state)
{
    SIM_ENTER_DEV(nvmlGpmQueryIfStreamingEnabled, device, d);
    if (state == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if (!sim_gpu_of(d)->gpm) return NVML_ERROR_NOT_SUPPORTED;
    *state = 0;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlGpmSampleAlloc(nvmlGpmSample_t *gpmSample)
{
    SIM_ENTER(nvmlGpmSampleAlloc);
    if (gpmSample == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    struct nvmlGpmSample_st *s = calloc(1, sizeof *s);
    if (!s) return NVML_ERROR_MEMORY;
    s->magic = SIM_GPM_MAGIC;
    if (!gpm_track(s, 1)) {
        free(s);
        return NVML_ERROR_MEMORY;
    }
    *gpmSample = s;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlGpmSampleFree(nvmlGpmSample_t gpmSample)
{
    SIM_ENTER(nvmlGpmSampleFree);
    if (gpmSample == NULL || !gpm_track(gpmSample, -1)) return NVML_ERROR_INVALID_ARGUMENT;
    gpmSample->magic = 0;
    free(gpmSample);
    return NVML_SUCCESS;
}

static void sim_gpm_fill(const sim_dev_t *d, int gi, double share, struct nvmlGpmSample_st *s)
{
    const sim_gpu_t *g = sim_gpu_of(d);
    double tau = sim_time();
    s->filled = 1;
    s->gpu = d->gpu;
    s->gi = gi;
    s->share = share;
    s->tau = tau;
    s->util_int = sim_wave_int(g, tau) * share;
    s->level = -1;
    double u, ui, x;
    const sim_dev_t *m = gi < 0 ? d : NULL;
    for (unsigned j = 0; gi >= 0 && j < sim_mig_n(d->gpu); j++) {
        const sim_dev_t *c = sim_mig_slot(d->gpu, j);
        if (c->active && (int)c->mig.gi == gi) {
            m = c;
            break;
        }
    }
    if (m != NULL && sim_script_util(m, tau, 0, &u, &ui, &x, &x, &x)) {
        s->util_int = ui;
        s->level = u;
    }
    s->pcie[0] = sim_pcie_bytes(g, tau, 0);
    s->pcie[1] = sim_pcie_bytes(g, tau, 1);
    for (unsigned l = 0; l < g->nvlink_links && l < SIM_MAX_LINKS; l++) {
        s->nvl[l][0] = sim_nvlink_kib(g, tau, (int)l, 0, 0);
        s->nvl[l][1] = sim_nvlink_kib(g, tau, (int)l, 1, 0);
    }
}

nvmlReturn_t DECLDIR nvmlGpmSampleGet(nvmlDevice_t device, nvmlGpmSample_t gpmSample)
{
    SIM_ENTER_DEV(nvmlGpmSampleGet, device, d);
    if (!GPM_VALID(gpmSample)) return NVML_ERROR_INVALID_ARGUMENT;
    if (!sim_gpu_of(d)->gpm || d->slot >= 0) return NVML_ERROR_NOT_SUPPORTED;
    sim_gpm_fill(d, -1, 1.0, gpmSample);
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlGpmMigSampleGet(nvmlDevice_t device, unsigned int gpuInstanceId, nvmlGpmSample_t gpmSample)
{
    SIM_ENTER_DEV(nvmlGpmMigSampleGet, device, d);
    if (!GPM_VALID(gpmSample)) return NVML_ERROR_INVALID_ARGUMENT;
    if (!sim_gpu_of(d)->gpm || d->slot >= 0) return NVML_ERROR_NOT_SUPPORTED;
    if (!sim_mig_enabled(d->gpu)) return NVML_ERROR_INVALID_STATE;
    for (unsigned j = 0; j < sim_mig_n(d->gpu); j++) {
        const sim_dev_t *m = sim_mig_slot(d->gpu, j);
        if (m->active && m->mig.gi == gpuInstanceId) {
            sim_gpm_fill(d, (int)gpuInstanceId, m->share, gpmSample);
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

typedef struct {
    const char *shortName, *longName, *unit;
} sim_metric_info_t;

/* Fraction of the graphics-engine activity each utilisation metric shows. */
static double sim_metric_ratio(unsigned id)
{
    switch (id) {
    case NVML_GPM_METRIC_GRAPHICS_UTIL: return 1.0;
    case NVML_GPM_METRIC_SM_UTIL: return 0.92;
    case NVML_GPM_METRIC_SM_OCCUPANCY: return 0.75;
    case NVML_GPM_METRIC_INTEGER_UTIL: return 0.10;
    case NVML_GPM_METRIC_ANY_TENSOR_UTIL: return 0.50;
    case NVML_GPM_METRIC_DFMA_TENSOR_UTIL: return 0.03;
    case NVML_GPM_METRIC_HMMA_TENSOR_UTIL: return 0.45;
    case NVML_GPM_METRIC_DMMA_TENSOR_UTIL: return 0.03;
    case NVML_GPM_METRIC_IMMA_TENSOR_UTIL: return 0.02;
    case NVML_GPM_METRIC_DRAM_BW_UTIL: return 0.55;
    case NVML_GPM_METRIC_FP64_UTIL: return 0.05;
    case NVML_GPM_METRIC_FP32_UTIL: return 0.25;
    case NVML_GPM_METRIC_FP16_UTIL: return 0.35;
    default: return -1;
    }
}

static nvmlReturn_t sim_metric(const struct nvmlGpmSample_st *a, const struct nvmlGpmSample_st *b,
                               unsigned id, double *value, sim_metric_info_t *info)
{
    const sim_gpu_t *g = &sim.gpu[b->gpu];
    double dt = b->tau - a->tau;
    /* mean utilisation over the interval (instantaneous when the clock is frozen) */
    double util = dt > 0 ? (b->util_int - a->util_int) / dt : sim_wave(g, b->tau) * b->share;
    if (dt <= 0 && b->level >= 0) util = b->level; /* frozen clock, scripted processes */
    double r = sim_metric_ratio(id);
    info->shortName = "";
    info->longName = "";
    info->unit = "%";
    if (r >= 0) {
        *value = util * r;
        return NVML_SUCCESS;
    }
    if (id == NVML_GPM_METRIC_PCIE_TX_PER_SEC || id == NVML_GPM_METRIC_PCIE_RX_PER_SEC) {
        if (b->gi >= 0) return NVML_ERROR_NOT_SUPPORTED;
        int rx = id == NVML_GPM_METRIC_PCIE_RX_PER_SEC;
        info->unit = "MiB/sec";
        if (dt <= 0) {
            double x = (double)(sim_pcie_bytes(g, b->tau, rx) - sim_pcie_bytes(g, b->tau - 1, rx));
            *value = x / 1048576.0;
        } else {
            *value = (double)(b->pcie[rx] - a->pcie[rx]) / dt / 1048576.0;
        }
        return NVML_SUCCESS;
    }
    if (id >= NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC && id <= NVML_GPM_METRIC_NVLINK_L17_TX_PER_SEC) {
        if (b->gi >= 0 || g->nvlink_links == 0) return NVML_ERROR_NOT_SUPPORTED;
        int rx = (id % 2) == 0; /* 60 total RX, 61 total TX, 62 L0 RX, 63 L0 TX, ... */
        unsigned first = 0, last = (unsigned)g->nvlink_links;
        if (id >= NVML_GPM_METRIC_NVLINK_L0_RX_PER_SEC) {
            first = (id - NVML_GPM_METRIC_NVLINK_L0_RX_PER_SEC) / 2;
            if (first >= g->nvlink_links) return NVML_ERROR_NOT_SUPPORTED;
            last = first + 1;
        }
        double kib = 0;
        for (unsigned l = first; l < last; l++) {
            if (dt <= 0)
                kib += (double)(sim_nvlink_kib(g, b->tau, (int)l, rx, 0) -
                                sim_nvlink_kib(g, b->tau - 1, (int)l, rx, 0));
            else
                kib += (double)(b->nvl[l][rx] - a->nvl[l][rx]) / dt;
        }
        info->unit = "MiB/sec";
        *value = kib / 1024.0;
        return NVML_SUCCESS;
    }
    if (id >= NVML_GPM_METRIC_NVDEC_0_UTIL && id <= NVML_GPM_METRIC_NVDEC_7_UTIL) {
        if (!g->decoder) return NVML_ERROR_NOT_SUPPORTED;
        *value = util * 0.08;
        return NVML_SUCCESS;
    }
    if ((id >= NVML_GPM_METRIC_NVJPG_0_UTIL && id <= NVML_GPM_METRIC_NVJPG_7_UTIL) ||
        id == NVML_GPM_METRIC_NVOFA_0_UTIL || id == NVML_GPM_METRIC_NVOFA_1_UTIL) {
        *value = 0;
        return NVML_SUCCESS;
    }
    if (id >= NVML_GPM_METRIC_NVENC_0_UTIL && id <= NVML_GPM_METRIC_NVENC_3_UTIL) {
        if (!g->encoder) return NVML_ERROR_NOT_SUPPORTED;
        *value = util * 0.03;
        return NVML_SUCCESS;
    }
    if (id >= NVML_GPM_METRIC_MAX) return NVML_ERROR_INVALID_ARGUMENT;
    return NVML_ERROR_NOT_SUPPORTED;
}

nvmlReturn_t DECLDIR nvmlGpmMetricsGet(nvmlGpmMetricsGet_t *metricsGet)
{
    SIM_ENTER(nvmlGpmMetricsGet);
    SIM_CHECK_VERSION(metricsGet, NVML_GPM_METRICS_GET_VERSION);
    const struct nvmlGpmSample_st *a = metricsGet->sample1, *b = metricsGet->sample2;
    if (!GPM_VALID((struct nvmlGpmSample_st *)a) || !GPM_VALID((struct nvmlGpmSample_st *)b) ||
        !a->filled || !b->filled || a->gpu != b->gpu || a->gi != b->gi)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (metricsGet->numMetrics > NVML_GPM_METRIC_MAX) return NVML_ERROR_INVALID_ARGUMENT;
    if (sim_faults()->lost[b->gpu]) return NVML_ERROR_GPU_IS_LOST;
    for (unsigned i = 0; i < metricsGet->numMetrics; i++) {
        nvmlGpmMetric_t *m = &metricsGet->metrics[i];
        sim_metric_info_t info;
        double v = 0;
        m->nvmlReturn = sim_metric(a, b, m->metricId, &v, &info);
        m->value = m->nvmlReturn == NVML_SUCCESS ? v : 0;
        m->metricInfo.shortName = (char *)info.shortName;
        m->metricInfo.longName = (char *)info.longName;
        m->metricInfo.unit = (char *)info.unit;
    }
    return NVML_SUCCESS;
}
