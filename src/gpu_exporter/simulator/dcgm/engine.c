/*
 * Stub libdcgm.so.4, the host engine's NVML side: it loads whatever libnvidia-ml.so.1 the
 * process's loader finds (in tests the simulated NVML), enumerates GPUs, GPU instances and
 * compute instances the way DCGM's cache manager does, and derives each profiling value from
 * an NVML reading taken at sample time, so DCGM and NVML series of one cycle agree:
 *
 *   GR_ENGINE_ACTIVE (1001)   a = utilisation.gpu / 100. NVML has no utilisation for MIG
 *                             devices (nor for their GPU), so a MIG instance's a is its memory
 *                             occupancy (used / total of its MIG device, which follows the
 *                             instance's processes) and a GPU in MIG mode gets its instances'
 *                             values weighted by their slices
 *   SM_ACTIVE .. FP16 (1002-1004, 1006-1008)  fixed fractions of a (0.92, 0.45, 0.30, 0.02,
 *                             0.55, 0.25)
 *   DRAM_ACTIVE (1005)        utilisation.memory / 100 (MIG: 0.8 a)
 *   PCIE_TX/RX_BYTES          nvmlDeviceGetPcieThroughput (KB/s) * 1024, bytes per second
 *   NVLINK_TX/RX_BYTES        the rate of NVML's NVLink data counters (all links) between
 *                             this sample and the previous one, bytes per second
 *   DEV_UUID (54)             nvmlDeviceGetUUID of the GPU
 */
#include "stub.h"

#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NVML_FN(name) static __typeof__(name) *p_##name
NVML_FN(nvmlInit_v2);
NVML_FN(nvmlShutdown);
NVML_FN(nvmlDeviceGetCount_v2);
NVML_FN(nvmlDeviceGetHandleByIndex_v2);
NVML_FN(nvmlDeviceGetUUID);
NVML_FN(nvmlDeviceGetArchitecture);
NVML_FN(nvmlDeviceGetBrand);
NVML_FN(nvmlDeviceGetNvLinkState);
NVML_FN(nvmlDeviceGetMigMode);
NVML_FN(nvmlDeviceGetMaxMigDeviceCount);
NVML_FN(nvmlDeviceGetMigDeviceHandleByIndex);
NVML_FN(nvmlDeviceGetGpuInstanceId);
NVML_FN(nvmlDeviceGetComputeInstanceId);
NVML_FN(nvmlDeviceGetGpuInstanceProfileInfo);
NVML_FN(nvmlDeviceGetGpuInstances);
NVML_FN(nvmlGpuInstanceGetInfo);
NVML_FN(nvmlGpuInstanceGetComputeInstanceProfileInfo);
NVML_FN(nvmlGpuInstanceGetComputeInstances);
NVML_FN(nvmlGpuInstanceGetComputeInstanceById);
NVML_FN(nvmlComputeInstanceGetInfo_v2);
NVML_FN(nvmlDeviceGetUtilizationRates);
NVML_FN(nvmlDeviceGetMemoryInfo);
NVML_FN(nvmlDeviceGetPcieThroughput);
NVML_FN(nvmlDeviceGetFieldValues);

static void *nvml_lib;
static int nvml_up;

#define LOAD(name)                                                       \
    do {                                                                 \
        *(void **)(&p_##name) = dlsym(nvml_lib, #name);                  \
        if (p_##name == NULL) ok = 0;                                    \
    } while (0)

/* Load and initialise NVML; 0 when there is none (the engine then manages no GPUs, as
 * DCGM >= 3.3.9 does: DcgmHostEngineHandler.cpp:1877-1910). */
int stub_nvml_open(void)
{
    if (nvml_up) return 1;
    if (nvml_lib == NULL) nvml_lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (nvml_lib == NULL) return 0;
    int ok = 1;
    LOAD(nvmlInit_v2);
    LOAD(nvmlShutdown);
    LOAD(nvmlDeviceGetCount_v2);
    LOAD(nvmlDeviceGetHandleByIndex_v2);
    LOAD(nvmlDeviceGetUUID);
    LOAD(nvmlDeviceGetArchitecture);
    LOAD(nvmlDeviceGetBrand);
    LOAD(nvmlDeviceGetNvLinkState);
    LOAD(nvmlDeviceGetMigMode);
    LOAD(nvmlDeviceGetMaxMigDeviceCount);
    LOAD(nvmlDeviceGetMigDeviceHandleByIndex);
    LOAD(nvmlDeviceGetGpuInstanceId);
    LOAD(nvmlDeviceGetComputeInstanceId);
    LOAD(nvmlDeviceGetGpuInstanceProfileInfo);
    LOAD(nvmlDeviceGetGpuInstances);
    LOAD(nvmlGpuInstanceGetInfo);
    LOAD(nvmlGpuInstanceGetComputeInstanceProfileInfo);
    LOAD(nvmlGpuInstanceGetComputeInstances);
    LOAD(nvmlGpuInstanceGetComputeInstanceById);
    LOAD(nvmlComputeInstanceGetInfo_v2);
    LOAD(nvmlDeviceGetUtilizationRates);
    LOAD(nvmlDeviceGetMemoryInfo);
    LOAD(nvmlDeviceGetPcieThroughput);
    LOAD(nvmlDeviceGetFieldValues);
    if (!ok || p_nvmlInit_v2() != NVML_SUCCESS) return 0;
    nvml_up = 1;
    return 1;
}

void stub_nvml_close(void)
{
    if (nvml_up) p_nvmlShutdown();
    nvml_up = 0;
    /* the library stays loaded: another user in this process (pynvml) may hold it */
}

int64_t stub_now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* GPU instances and compute instances in DCGM's order: by GPU instance profile index, then as
 * NVML lists them; entity ids gpuId * maxGpcs + running index, for GPU instances and compute
 * instances alike (DcgmCacheManager.cpp:933-1031, ids at :941 and :978). */
static void stub_enum_mig(stub_gpu_t *g, unsigned gpu_id)
{
    unsigned ci_count = 0;
    for (unsigned idx = 0; idx < NVML_GPU_INSTANCE_PROFILE_COUNT && g->ninst < STUB_MAX_MIG; idx++) {
        nvmlGpuInstanceProfileInfo_t pinfo;
        memset(&pinfo, 0, sizeof pinfo);
        if (p_nvmlDeviceGetGpuInstanceProfileInfo(g->dev, idx, &pinfo) != NVML_SUCCESS) continue;
        nvmlGpuInstance_t gis[STUB_MAX_MIG];
        unsigned n = 0;
        if (p_nvmlDeviceGetGpuInstances(g->dev, pinfo.id, gis, &n) != NVML_SUCCESS) continue;
        for (unsigned k = 0; k < n && k < STUB_MAX_MIG && g->ninst < STUB_MAX_MIG; k++) {
            nvmlGpuInstanceInfo_t info;
            memset(&info, 0, sizeof info);
            if (p_nvmlGpuInstanceGetInfo(gis[k], &info) != NVML_SUCCESS) continue;
            stub_inst_t *in = &g->inst[g->ninst];
            memset(in, 0, sizeof *in);
            in->eid = gpu_id * g->max_mig + g->ninst;
            in->nvml_gi = info.id;
            in->profile = info.profileId;
            in->slices = pinfo.sliceCount;
            for (unsigned c = 0; c < NVML_COMPUTE_INSTANCE_PROFILE_COUNT; c++) {
                nvmlComputeInstanceProfileInfo_t cp;
                memset(&cp, 0, sizeof cp);
                if (p_nvmlGpuInstanceGetComputeInstanceProfileInfo(
                        gis[k], c, NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED, &cp) != NVML_SUCCESS)
                    continue;
                nvmlComputeInstance_t cis[STUB_MAX_MIG];
                unsigned cn = 0;
                if (p_nvmlGpuInstanceGetComputeInstances(gis[k], cp.id, cis, &cn) != NVML_SUCCESS)
                    continue;
                for (unsigned q = 0; q < cn && q < STUB_MAX_MIG && in->nci < STUB_MAX_MIG &&
                                     ci_count < STUB_MAX_MIG;
                     q++) {
                    nvmlComputeInstanceInfo_t ci;
                    memset(&ci, 0, sizeof ci);
                    if (p_nvmlComputeInstanceGetInfo_v2(cis[q], &ci) != NVML_SUCCESS) continue;
                    stub_ci_t *o = &in->ci[in->nci++];
                    o->nvml_ci = ci.id;
                    o->profile = ci.profileId;
                    o->slices = cp.sliceCount;
                    o->eid = gpu_id * g->max_mig + ci_count++;
                }
            }
            for (unsigned j = 0; j < g->max_mig; j++) {
                nvmlDevice_t m;
                unsigned gid, cid;
                if (p_nvmlDeviceGetMigDeviceHandleByIndex(g->dev, j, &m) != NVML_SUCCESS ||
                    p_nvmlDeviceGetGpuInstanceId(m, &gid) != NVML_SUCCESS || gid != in->nvml_gi ||
                    p_nvmlDeviceGetComputeInstanceId(m, &cid) != NVML_SUCCESS)
                    continue;
                if (in->mig == NULL) in->mig = m;
                int known = 0;
                for (unsigned q = 0; q < in->nci; q++) {
                    if (in->ci[q].nvml_ci != cid) continue;
                    in->ci[q].mig = m;
                    known = 1;
                }
                /* a compute instance the profile walk did not list (an NVML whose GPU instance
                 * handle reports only some compute instance profiles): taken from its MIG device */
                nvmlComputeInstance_t ch;
                nvmlComputeInstanceInfo_t info;
                memset(&info, 0, sizeof info);
                if (known || in->nci >= STUB_MAX_MIG || ci_count >= STUB_MAX_MIG ||
                    p_nvmlGpuInstanceGetComputeInstanceById(gis[k], cid, &ch) != NVML_SUCCESS ||
                    p_nvmlComputeInstanceGetInfo_v2(ch, &info) != NVML_SUCCESS)
                    continue;
                stub_ci_t *o = &in->ci[in->nci++];
                o->nvml_ci = cid;
                o->profile = info.profileId;
                o->slices = info.placement.size;
                o->eid = gpu_id * g->max_mig + ci_count++;
                o->mig = m;
            }
            g->ninst++;
        }
    }
}

unsigned stub_topology(stub_gpu_t *gpus, unsigned max)
{
    if (!nvml_up) return 0;
    unsigned n = 0;
    if (p_nvmlDeviceGetCount_v2(&n) != NVML_SUCCESS) return 0;
    if (n > max) n = max;
    for (unsigned i = 0; i < n; i++) {
        stub_gpu_t *g = &gpus[i];
        memset(g, 0, sizeof *g);
        if (p_nvmlDeviceGetHandleByIndex_v2(i, &g->dev) != NVML_SUCCESS) {
            g->dev = NULL;
            continue;
        }
        if (p_nvmlDeviceGetUUID(g->dev, g->uuid, sizeof g->uuid) != NVML_SUCCESS) g->uuid[0] = 0;
        nvmlDeviceArchitecture_t arch = 0;
        g->arch = p_nvmlDeviceGetArchitecture(g->dev, &arch) == NVML_SUCCESS ? arch : 0;
        nvmlBrandType_t brand = 0;
        g->brand = p_nvmlDeviceGetBrand(g->dev, &brand) == NVML_SUCCESS ? (unsigned)brand : 0;
        nvmlEnableState_t st;
        g->nvlink = p_nvmlDeviceGetNvLinkState(g->dev, 0, &st) == NVML_SUCCESS;
        unsigned cur = 0, pend = 0;
        g->mig_on = p_nvmlDeviceGetMigMode(g->dev, &cur, &pend) == NVML_SUCCESS &&
                    cur == NVML_DEVICE_MIG_ENABLE;
        unsigned maxm = 0;
        if (p_nvmlDeviceGetMaxMigDeviceCount(g->dev, &maxm) != NVML_SUCCESS || maxm == 0)
            maxm = DCGM_MAX_INSTANCES_PER_GPU; /* DCGM's own fallback (DcgmCacheManager.cpp:924) */
        g->max_mig = maxm;
        if (g->mig_on) stub_enum_mig(g, i);
    }
    return n;
}

/* Whether an entity exists; its GPU, GPU instance slot and compute instance slot (-1 where
 * the entity is above that level). */
int stub_entity_exists(const stub_gpu_t *gpus, unsigned ngpu, unsigned eg, unsigned eid,
                       unsigned *gpu, int *inst, int *ci)
{
    *inst = *ci = -1;
    if (eg == DCGM_FE_GPU) {
        if (eid >= ngpu || gpus[eid].dev == NULL) return 0;
        *gpu = eid;
        return 1;
    }
    if (eg != DCGM_FE_GPU_I && eg != DCGM_FE_GPU_CI) return 0;
    for (unsigned i = 0; i < ngpu; i++) {
        for (unsigned k = 0; k < gpus[i].ninst; k++) {
            const stub_inst_t *in = &gpus[i].inst[k];
            if (eg == DCGM_FE_GPU_I && in->eid == eid) {
                *gpu = i;
                *inst = (int)k;
                return 1;
            }
            for (unsigned q = 0; eg == DCGM_FE_GPU_CI && q < in->nci; q++) {
                if (in->ci[q].eid != eid) continue;
                *gpu = i;
                *inst = (int)k;
                *ci = (int)q;
                return 1;
            }
        }
    }
    return 0;
}

unsigned short stub_field_type(unsigned field)
{
    if (field == DCGM_FI_DEV_UUID) return DCGM_FT_STRING;
    if (field >= DCGM_FI_PROF_PCIE_TX_BYTES && field <= DCGM_FI_PROF_NVLINK_RX_BYTES) return DCGM_FT_INT64;
    if (field >= DCGM_FI_PROF_FIRST && field <= DCGM_FI_PROF_LAST) return DCGM_FT_DOUBLE;
    return DCGM_FT_INT64;
}

void stub_blank(stub_sample_t *s, int kind)
{
    s->i64 = DCGM_INT64_BLANK + kind;
    s->dbl = DCGM_FP64_BLANK + (double)kind;
    static const char *const str[] = {DCGM_STR_BLANK, DCGM_STR_NOT_FOUND, DCGM_STR_NOT_SUPPORTED,
                                      DCGM_STR_NOT_PERMISSIONED};
    snprintf(s->str, sizeof s->str, "%s", str[kind & 3]);
}

/* The deepest entity level a field exists at: 2 compute instance, 1 GPU instance, 0 GPU
 * (dcgm_fields.cpp:4317-4436, see dcgm-backend.md §4). A shallower field asked of a MIG entity
 * reads the entity's parent, as DCGM does for GPU-scoped fields. */
static int stub_field_level(unsigned field)
{
    if ((field >= 1001 && field <= 1004) || (field >= 1006 && field <= 1008)) return 2;
    if (field == 1005) return 1;
    return 0;
}

static int stub_dcgm_status(nvmlReturn_t r)
{
    switch (r) {
    case NVML_ERROR_GPU_IS_LOST: return DCGM_ST_GPU_IS_LOST;
    case NVML_ERROR_NO_PERMISSION: return DCGM_ST_NO_PERMISSION;
    default: return DCGM_ST_NVML_ERROR;
    }
}

/* Activity of a MIG device in percent: its memory occupancy (see the header comment). */
static nvmlReturn_t stub_mig_activity(nvmlDevice_t mig, double *sm, double *mem)
{
    *sm = *mem = 0;
    if (mig == NULL) return NVML_ERROR_NOT_FOUND;
    nvmlMemory_t m;
    nvmlReturn_t r = p_nvmlDeviceGetMemoryInfo(mig, &m);
    if (r != NVML_SUCCESS) return r;
    *sm = m.total ? 100.0 * (double)m.used / (double)m.total : 0;
    *mem = 0.8 * *sm;
    return NVML_SUCCESS;
}

/* Activity ratios of a GPU (inst < 0), a GPU instance (ci < 0) or a compute instance. */
static nvmlReturn_t stub_activity(const stub_gpu_t *g, int inst, int ci, double *act, double *mem)
{
    double sm = 0, mu = 0;
    if (inst >= 0) {
        nvmlDevice_t m = ci >= 0 ? g->inst[inst].ci[ci].mig : g->inst[inst].mig;
        nvmlReturn_t r = stub_mig_activity(m, &sm, &mu);
        if (r != NVML_SUCCESS) return r;
    } else if (g->mig_on) {
        double w = g->max_mig ? (double)g->max_mig : 1.0;
        for (unsigned k = 0; k < g->ninst; k++) {
            double a, m;
            nvmlReturn_t r = stub_mig_activity(g->inst[k].mig, &a, &m);
            if (r != NVML_SUCCESS) return r;
            sm += fmin(a, 100.0) * g->inst[k].slices / w;
            mu += fmin(m, 100.0) * g->inst[k].slices / w;
        }
    } else {
        nvmlUtilization_t u;
        nvmlReturn_t r = p_nvmlDeviceGetUtilizationRates(g->dev, &u);
        if (r != NVML_SUCCESS) return r;
        sm = u.gpu;
        mu = u.memory;
    }
    *act = fmin(sm, 100.0) / 100.0;
    *mem = fmin(mu, 100.0) / 100.0;
    return NVML_SUCCESS;
}

static void stub_fail(stub_sample_t *s, nvmlReturn_t r)
{
    if (r == NVML_ERROR_NOT_SUPPORTED) {
        stub_blank(s, STUB_NOT_SUPPORTED);
        return;
    }
    s->status = stub_dcgm_status(r);
    stub_blank(s, r == NVML_ERROR_NO_PERMISSION ? STUB_NOT_PERMISSIONED : STUB_BLANK);
}

void stub_sample(const stub_gpu_t *gpus, unsigned ngpu, unsigned eg, unsigned eid, unsigned field,
                 stub_link_base_t *links, stub_sample_t *out)
{
    memset(out, 0, sizeof *out);
    out->type = stub_field_type(field);
    out->ts = stub_now_us();
    out->status = DCGM_ST_OK;
    unsigned gi;
    int inst, ci;
    if (!stub_entity_exists(gpus, ngpu, eg, eid, &gi, &inst, &ci)) {
        out->status = eg == DCGM_FE_GPU_I    ? DCGM_ST_INSTANCE_NOT_FOUND
                      : eg == DCGM_FE_GPU_CI ? DCGM_ST_COMPUTE_INSTANCE_NOT_FOUND
                                             : DCGM_ST_BADPARAM;
        stub_blank(out, STUB_NOT_FOUND);
        return;
    }
    const stub_gpu_t *g = &gpus[gi];
    int level = stub_field_level(field);
    if (level < 2) ci = -1;   /* a compute instance reads its GPU instance's value */
    if (level < 1) inst = -1; /* an instance reads its GPU's value */
    nvmlReturn_t r;
    double a, m;
    switch (field) {
    case DCGM_FI_DEV_UUID:
        snprintf(out->str, sizeof out->str, "%s", g->uuid);
        return;
    case DCGM_FI_PROF_GR_ENGINE_ACTIVE: case DCGM_FI_PROF_SM_ACTIVE:
    case DCGM_FI_PROF_SM_OCCUPANCY: case DCGM_FI_PROF_PIPE_TENSOR_ACTIVE:
    case DCGM_FI_PROF_DRAM_ACTIVE: case DCGM_FI_PROF_PIPE_FP64_ACTIVE:
    case DCGM_FI_PROF_PIPE_FP32_ACTIVE: case DCGM_FI_PROF_PIPE_FP16_ACTIVE: {
        static const double frac[] = {1.0, 0.92, 0.45, 0.30, 0, 0.02, 0.55, 0.25};
        r = stub_activity(g, inst, ci, &a, &m);
        if (r != NVML_SUCCESS) {
            stub_fail(out, r);
            return;
        }
        out->dbl = field == DCGM_FI_PROF_DRAM_ACTIVE ? m : a * frac[field - DCGM_FI_PROF_FIRST];
        return;
    }
    case DCGM_FI_PROF_PCIE_TX_BYTES:
    case DCGM_FI_PROF_PCIE_RX_BYTES: {
        unsigned kbs = 0;
        r = p_nvmlDeviceGetPcieThroughput(
            g->dev, field == DCGM_FI_PROF_PCIE_TX_BYTES ? NVML_PCIE_UTIL_TX_BYTES : NVML_PCIE_UTIL_RX_BYTES,
            &kbs);
        if (r != NVML_SUCCESS) {
            stub_fail(out, r);
            return;
        }
        out->i64 = (int64_t)kbs * 1024;
        return;
    }
    case DCGM_FI_PROF_NVLINK_TX_BYTES:
    case DCGM_FI_PROF_NVLINK_RX_BYTES: {
        nvmlFieldValue_t v[2];
        memset(v, 0, sizeof v);
        v[0].fieldId = NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX;
        v[1].fieldId = NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX;
        v[0].scopeId = v[1].scopeId = UINT_MAX;
        r = p_nvmlDeviceGetFieldValues(g->dev, 2, v);
        if (r == NVML_SUCCESS) r = v[0].nvmlReturn != NVML_SUCCESS ? v[0].nvmlReturn : v[1].nvmlReturn;
        if (r != NVML_SUCCESS) {
            stub_fail(out, r);
            return;
        }
        stub_link_base_t *b = &links[gi];
        unsigned long long tx = v[0].value.ullVal, rx = v[1].value.ullVal;
        long long now = out->ts;
        if (!b->have) { /* no previous reading: this one is the base, no rate yet */
            b->have = 1, b->tx_kib = tx, b->rx_kib = rx, b->at_us = now;
            out->status = DCGM_ST_NO_DATA;
            stub_blank(out, STUB_BLANK);
            return;
        }
        double dt = (double)(now - b->at_us) / 1e6;
        unsigned long long cur = field == DCGM_FI_PROF_NVLINK_TX_BYTES ? tx : rx;
        unsigned long long prev = field == DCGM_FI_PROF_NVLINK_TX_BYTES ? b->tx_kib : b->rx_kib;
        out->i64 = dt > 0 && cur >= prev ? (int64_t)((double)(cur - prev) * 1024.0 / dt) : 0;
        if (dt >= 0.1) b->tx_kib = tx, b->rx_kib = rx, b->at_us = now;
        return;
    }
    default:
        stub_blank(out, STUB_NOT_SUPPORTED);
        return;
    }
}

/* A realistic metric group split for the architecture (majorId / minorId / fields):
 * - before Hopper (profiling module), after the T4 listing of DCGM's user guide ("a metric
 *   from each letter group can be collected without multiplexing") and NVIDIA/DCGM#144 (A10:
 *   A.1 = 1002 1003 1004 1007, A.3 = 1008): A.1 SM/tensor/FP32, A.2 FP64, A.3 FP16, B.0 DRAM,
 *   C.0 PCIe, D.0 graphics engine, E.0 NVLink (only with NVLink);
 * - Hopper and later (GPM): the same fields, every group under its own majorId (all of them
 *   can be watched together: dcgm_agent.h:2044-2067).
 * GeForce boards before Blackwell and GPUs before Volta have none (*unsupported = 1;
 * NVIDIA/DCGM#97, #234). */
unsigned stub_default_groups(const stub_gpu_t *g, dcgmProfMetricGroupInfo_v2 *out, int *unsupported)
{
    static const struct {
        unsigned short major, minor;
        unsigned short n, f[4];
    } base[] = {
        {0, 1, 4, {1002, 1003, 1004, 1007}}, {0, 2, 1, {1006}}, {0, 3, 1, {1008}},
        {1, 0, 1, {1005}}, {2, 0, 2, {1009, 1010}}, {3, 0, 1, {1001}}, {4, 0, 2, {1011, 1012}},
    };
    *unsupported = 0;
    if (g->arch < NVML_DEVICE_ARCH_VOLTA || g->arch == NVML_DEVICE_ARCH_UNKNOWN ||
        (g->brand == NVML_BRAND_GEFORCE && g->arch < NVML_DEVICE_ARCH_BLACKWELL)) {
        *unsupported = 1;
        return 0;
    }
    int gpm = g->arch >= NVML_DEVICE_ARCH_HOPPER;
    unsigned n = 0;
    for (unsigned i = 0; i < sizeof base / sizeof base[0]; i++) {
        if (base[i].major == 4 && !g->nvlink) continue;
        dcgmProfMetricGroupInfo_v2 *o = &out[n];
        memset(o, 0, sizeof *o);
        o->majorId = gpm ? (unsigned short)n : base[i].major;
        o->minorId = gpm ? 0 : base[i].minor;
        o->numFieldIds = base[i].n;
        memcpy(o->fieldIds, base[i].f, base[i].n * sizeof base[i].f[0]);
        n++;
    }
    return n;
}
