/*
 * Simulated NVML: MIG mode, MIG device handles, GPU and compute instances.
 *
 * Each MIG device is one compute instance: usually the only one, spanning its GPU instance
 * (profile "3g.40gb"); a split GPU instance has several MIG devices with the same GPU
 * instance id and compute instance ids 0, 1, ... (profiles "1c.3g.40gb", "2c.3g.40gb").
 * MIG device indices are dense (0..n-1 in layout order); GPU instance ids follow the
 * placement, so they differ from the indices, as on real hardware.
 */
#include "sim.h"

int sim_mig_enabled(int gpu);
unsigned sim_mig_n(int gpu);

#define SIM_ARG(p)                                          \
    do {                                                    \
        if ((p) == NULL) return NVML_ERROR_INVALID_ARGUMENT; \
    } while (0)

static unsigned sim_compute_slices(const sim_mig_t *m)
{
    return (unsigned)(m->profile[0] - '0');
}

static unsigned sim_ci_profile(const sim_mig_t *m)
{
    unsigned s = sim_compute_slices(m);
    return s == 7 ? NVML_COMPUTE_INSTANCE_PROFILE_7_SLICE : s - 1;
}

static const sim_gip_t *sim_find_gip(const sim_gpu_t *g, unsigned value, int by_id)
{
    for (unsigned i = 0; i < g->ngip; i++)
        if ((by_id ? g->gip[i].id : g->gip[i].cnst) == value) return &g->gip[i];
    return NULL;
}

/* GPU/compute instance handle -> MIG device, with the usual gates. */
static nvmlReturn_t sim_gi_dev(const void *h, const void *base, size_t count, size_t stride, sim_dev_t **out)
{
    uintptr_t p = (uintptr_t)h, b = (uintptr_t)base;
    if (p < b || p >= b + count * stride || (p - b) % stride != 0) return NVML_ERROR_INVALID_ARGUMENT;
    sim_dev_t *d = ((const sim_gi_handle_t *)h)->mig;
    if (d == NULL || !d->active || d->slot < 0) return NVML_ERROR_INVALID_ARGUMENT;
    if (sim_faults()->lost[d->gpu]) return NVML_ERROR_GPU_IS_LOST;
    *out = d;
    return NVML_SUCCESS;
}

#define SIM_ENTER_GI(fn, h, d)                                                                 \
    sim_dev_t *d = NULL;                                                                       \
    do {                                                                                       \
        nvmlReturn_t _r = sim_enter(FN_##fn);                                                  \
        if (_r == NVML_SUCCESS)                                                                \
            _r = sim_gi_dev((h), sim.gi_h, sim.ngpu * SIM_DEV_STRIDE, sizeof(sim_gi_handle_t), &d); \
        if (_r != NVML_SUCCESS) return _r;                                                     \
    } while (0)

#define SIM_ENTER_CI(fn, h, d)                                                                 \
    sim_dev_t *d = NULL;                                                                       \
    do {                                                                                       \
        nvmlReturn_t _r = sim_enter(FN_##fn);                                                  \
        if (_r == NVML_SUCCESS)                                                                \
            _r = sim_gi_dev((h), sim.ci_h, sim.ngpu * SIM_DEV_STRIDE, sizeof(sim_ci_handle_t), &d); \
        if (_r != NVML_SUCCESS) return _r;                                                     \
    } while (0)

static size_t sim_index_of(const sim_dev_t *d)
{
    return (size_t)(d - sim.dev);
}

/* ---------------------------------------------------------------- device-level queries */

nvmlReturn_t DECLDIR nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *currentMode, unsigned int *pendingMode)
{
    SIM_ENTER_DEV(nvmlDeviceGetMigMode, device, d);
    SIM_ARG(currentMode);
    SIM_ARG(pendingMode);
    if (d->slot >= 0 || !sim_gpu_of(d)->mig_capable) return NVML_ERROR_NOT_SUPPORTED;
    *currentMode = *pendingMode = (unsigned)sim_mig_enabled(d->gpu);
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count)
{
    SIM_ENTER_DEV(nvmlDeviceGetMaxMigDeviceCount, device, d);
    SIM_ARG(count);
    if (d->slot >= 0 || !sim_gpu_of(d)->mig_capable) return NVML_ERROR_NOT_SUPPORTED;
    *count = SIM_MAX_MIG;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index, nvmlDevice_t *migDevice)
{
    SIM_ENTER_DEV(nvmlDeviceGetMigDeviceHandleByIndex, device, d);
    SIM_ARG(migDevice);
    if (d->slot >= 0) return NVML_ERROR_INVALID_ARGUMENT;
    if (!sim_gpu_of(d)->mig_capable) return NVML_ERROR_NOT_SUPPORTED;
    if (index >= SIM_MAX_MIG) return NVML_ERROR_INVALID_ARGUMENT;
    if (!sim_mig_enabled(d->gpu) || index >= sim_mig_n(d->gpu)) return NVML_ERROR_NOT_FOUND;
    sim_dev_t *m = sim_mig_slot(d->gpu, index);
    if (!m->active) return NVML_ERROR_NOT_FOUND;
    *migDevice = sim_handle(m);
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t migDevice, nvmlDevice_t *device)
{
    SIM_ENTER_DEV(nvmlDeviceGetDeviceHandleFromMigDeviceHandle, migDevice, d);
    SIM_ARG(device);
    if (d->slot < 0) return NVML_ERROR_INVALID_ARGUMENT;
    *device = sim_handle(sim_whole(d->gpu));
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceIsMigDeviceHandle(nvmlDevice_t device, unsigned int *isMigDevice)
{
    SIM_ENTER_DEV(nvmlDeviceIsMigDeviceHandle, device, d);
    SIM_ARG(isMigDevice);
    *isMigDevice = d->slot >= 0;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned int *id)
{
    SIM_ENTER_DEV(nvmlDeviceGetGpuInstanceId, device, d);
    SIM_ARG(id);
    if (d->slot < 0) return NVML_ERROR_NOT_SUPPORTED;
    *id = d->mig.gi;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetComputeInstanceId(nvmlDevice_t device, unsigned int *id)
{
    SIM_ENTER_DEV(nvmlDeviceGetComputeInstanceId, device, d);
    SIM_ARG(id);
    if (d->slot < 0) return NVML_ERROR_NOT_SUPPORTED;
    *id = d->mig.ci;
    return NVML_SUCCESS;
}

static nvmlReturn_t sim_attributes(const sim_dev_t *d, nvmlDeviceAttributes_t *a)
{
    SIM_ARG(a);
    const sim_gpu_t *g = sim_gpu_of(d);
    memset(a, 0, sizeof *a);
    if (d->slot >= 0) {
        a->multiprocessorCount = d->mig.sm;
        a->sharedCopyEngineCount = d->mig.ce;
        a->sharedDecoderCount = d->mig.dec;
        a->sharedEncoderCount = d->mig.enc;
        a->sharedJpegCount = d->mig.jpg;
        a->sharedOfaCount = d->mig.ofa;
        a->gpuInstanceSliceCount = sim_compute_slices(&d->mig);
        a->computeInstanceSliceCount = sim_compute_slices(&d->mig);
        a->memorySizeMB = d->mig.mem_mib;
    } else {
        a->multiprocessorCount = (unsigned)g->sm_count;
        a->sharedCopyEngineCount = g->mig_capable ? 7 : 2;
        a->sharedDecoderCount = g->decoder ? 5 : 0;
        a->sharedEncoderCount = g->encoder ? 1 : 0;
        a->gpuInstanceSliceCount = g->mig_capable ? 7 : 0;
        a->computeInstanceSliceCount = g->mig_capable ? 7 : 0;
        a->memorySizeMB = g->mem_total_mib;
    }
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetAttributes_v2(nvmlDevice_t device, nvmlDeviceAttributes_t *attributes)
{
    SIM_ENTER_DEV(nvmlDeviceGetAttributes_v2, device, d);
    return sim_attributes(d, attributes);
}

nvmlReturn_t DECLDIR nvmlDeviceGetAttributes(nvmlDevice_t device, nvmlDeviceAttributes_t *attributes)
{
    SIM_ENTER_DEV(nvmlDeviceGetAttributes, device, d);
    SIM_ARG(attributes);
    nvmlDeviceAttributes_t a;
    nvmlReturn_t r = sim_attributes(d, &a);
    if (r == NVML_SUCCESS) memcpy(attributes, &a, SIM_ATTRIBUTES_V1_SIZE); /* pre-_v2 layout */
    return r;
}

/* ---------------------------------------------------------------- GPU instance profiles */

static nvmlReturn_t sim_gip_lookup(const sim_dev_t *d, unsigned value, int by_id, const sim_gip_t **out)
{
    const sim_gpu_t *g = sim_gpu_of(d);
    if (d->slot >= 0 || !g->mig_capable) return NVML_ERROR_NOT_SUPPORTED;
    *out = sim_find_gip(g, value, by_id);
    if (*out == NULL) return by_id || value < NVML_GPU_INSTANCE_PROFILE_COUNT ? NVML_ERROR_NOT_SUPPORTED
                                                                               : NVML_ERROR_INVALID_ARGUMENT;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetGpuInstanceProfileInfo(nvmlDevice_t device, unsigned int profile, nvmlGpuInstanceProfileInfo_t *info)
{
    SIM_ENTER_DEV(nvmlDeviceGetGpuInstanceProfileInfo, device, d);
    SIM_ARG(info);
    const sim_gip_t *p;
    nvmlReturn_t r = sim_gip_lookup(d, profile, 0, &p);
    if (r != NVML_SUCCESS) return r;
    info->id = p->id;
    info->isP2pSupported = 0;
    info->sliceCount = p->slices;
    info->instanceCount = p->count;
    info->multiprocessorCount = p->sm;
    info->copyEngineCount = p->ce;
    info->decoderCount = p->dec;
    info->encoderCount = p->enc;
    info->jpegCount = p->jpg;
    info->ofaCount = p->ofa;
    info->memorySizeMB = p->mem_mib;
    return NVML_SUCCESS;
}

static nvmlReturn_t sim_gip_v(const sim_dev_t *d, unsigned value, int by_id, nvmlGpuInstanceProfileInfo_v2_t *info)
{
    if (info == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if (info->version != nvmlGpuInstanceProfileInfo_v2 && info->version != nvmlGpuInstanceProfileInfo_v3)
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    const sim_gip_t *p;
    nvmlReturn_t r = sim_gip_lookup(d, value, by_id, &p);
    if (r != NVML_SUCCESS) return r;
    if (info->version == nvmlGpuInstanceProfileInfo_v3) {
        nvmlGpuInstanceProfileInfo_v3_t *v3 = (nvmlGpuInstanceProfileInfo_v3_t *)info;
        v3->id = p->id;
        v3->sliceCount = p->slices;
        v3->instanceCount = p->count;
        v3->multiprocessorCount = p->sm;
        v3->copyEngineCount = p->ce;
        v3->decoderCount = p->dec;
        v3->encoderCount = p->enc;
        v3->jpegCount = p->jpg;
        v3->ofaCount = p->ofa;
        v3->memorySizeMB = p->mem_mib;
        snprintf(v3->name, sizeof v3->name, "MIG %s", p->name);
        v3->capabilities = 0;
        return NVML_SUCCESS;
    }
    info->id = p->id;
    info->isP2pSupported = 0;
    info->sliceCount = p->slices;
    info->instanceCount = p->count;
    info->multiprocessorCount = p->sm;
    info->copyEngineCount = p->ce;
    info->decoderCount = p->dec;
    info->encoderCount = p->enc;
    info->jpegCount = p->jpg;
    info->ofaCount = p->ofa;
    info->memorySizeMB = p->mem_mib;
    snprintf(info->name, sizeof info->name, "MIG %s", p->name);
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetGpuInstanceProfileInfoV(nvmlDevice_t device, unsigned int profile, nvmlGpuInstanceProfileInfo_v2_t *info)
{
    SIM_ENTER_DEV(nvmlDeviceGetGpuInstanceProfileInfoV, device, d);
    return sim_gip_v(d, profile, 0, info);
}

nvmlReturn_t DECLDIR nvmlDeviceGetGpuInstanceProfileInfoByIdV(nvmlDevice_t device, unsigned int profileId, nvmlGpuInstanceProfileInfo_v2_t *info)
{
    SIM_ENTER_DEV(nvmlDeviceGetGpuInstanceProfileInfoByIdV, device, d);
    return sim_gip_v(d, profileId, 1, info);
}

/* ---------------------------------------------------------------- GPU instances */

nvmlReturn_t DECLDIR nvmlDeviceGetGpuInstances(nvmlDevice_t device, unsigned int profileId, nvmlGpuInstance_t *gpuInstances, unsigned int *count)
{
    SIM_ENTER_DEV(nvmlDeviceGetGpuInstances, device, d);
    SIM_ARG(gpuInstances);
    SIM_ARG(count);
    const sim_gip_t *p;
    /* profileId is the profile's id (nvidia-smi's "Profile ID", GpuInstanceProfileInfo.id),
     * as NVIDIA's go-nvml passes it, not the NVML_GPU_INSTANCE_PROFILE_* constant */
    nvmlReturn_t r = sim_gip_lookup(d, profileId, 1, &p);
    if (r != NVML_SUCCESS) return r;
    unsigned n = 0;
    if (sim_mig_enabled(d->gpu)) {
        for (unsigned j = 0; j < sim_mig_n(d->gpu); j++) {
            sim_dev_t *m = sim_mig_slot(d->gpu, j);
            if (!m->active || m->mig.gip_const != p->cnst || m->mig.ci != 0) continue;
            /* the caller's buffer holds the profile's instanceCount handles, no more */
            if (n < p->count) gpuInstances[n++] = (nvmlGpuInstance_t)&sim.gi_h[sim_index_of(m)];
        }
    }
    *count = n;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetGpuInstanceById(nvmlDevice_t device, unsigned int id, nvmlGpuInstance_t *gpuInstance)
{
    SIM_ENTER_DEV(nvmlDeviceGetGpuInstanceById, device, d);
    SIM_ARG(gpuInstance);
    if (d->slot >= 0 || !sim_gpu_of(d)->mig_capable) return NVML_ERROR_NOT_SUPPORTED;
    if (!sim_mig_enabled(d->gpu)) return NVML_ERROR_INVALID_STATE;
    for (unsigned j = 0; j < sim_mig_n(d->gpu); j++) {
        sim_dev_t *m = sim_mig_slot(d->gpu, j);
        if (m->active && m->mig.gi == id) {
            *gpuInstance = (nvmlGpuInstance_t)&sim.gi_h[sim_index_of(m)];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

nvmlReturn_t DECLDIR nvmlGpuInstanceGetInfo(nvmlGpuInstance_t gpuInstance, nvmlGpuInstanceInfo_t *info)
{
    SIM_ENTER_GI(nvmlGpuInstanceGetInfo, gpuInstance, d);
    SIM_ARG(info);
    info->device = sim_handle(sim_whole(d->gpu));
    info->id = d->mig.gi;
    info->profileId = d->mig.gip_id; /* the profile's id, as nvidia-smi mig -lgi shows it */
    info->placement.start = d->mig.start;
    info->placement.size = d->mig.size;
    return NVML_SUCCESS;
}

static void sim_fill_cip(const sim_dev_t *d, unsigned *id, unsigned *slices, unsigned *count, unsigned *sm,
                         unsigned *ce, unsigned *dec, unsigned *enc, unsigned *jpg, unsigned *ofa)
{
    *id = sim_ci_profile(&d->mig);
    *slices = sim_compute_slices(&d->mig);
    *count = 1;
    *sm = d->mig.sm;
    *ce = d->mig.ce;
    *dec = d->mig.dec;
    *enc = d->mig.enc;
    *jpg = d->mig.jpg;
    *ofa = d->mig.ofa;
}

nvmlReturn_t DECLDIR nvmlGpuInstanceGetComputeInstanceProfileInfo(nvmlGpuInstance_t gpuInstance, unsigned int profile, unsigned int engProfile, nvmlComputeInstanceProfileInfo_t *info)
{
    SIM_ENTER_GI(nvmlGpuInstanceGetComputeInstanceProfileInfo, gpuInstance, d);
    SIM_ARG(info);
    if (engProfile != NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED) return NVML_ERROR_NOT_SUPPORTED;
    if (profile != sim_ci_profile(&d->mig)) return NVML_ERROR_NOT_SUPPORTED;
    sim_fill_cip(d, &info->id, &info->sliceCount, &info->instanceCount, &info->multiprocessorCount,
                 &info->sharedCopyEngineCount, &info->sharedDecoderCount, &info->sharedEncoderCount,
                 &info->sharedJpegCount, &info->sharedOfaCount);
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlGpuInstanceGetComputeInstanceProfileInfoV(nvmlGpuInstance_t gpuInstance, unsigned int profile, unsigned int engProfile, nvmlComputeInstanceProfileInfo_v2_t *info)
{
    SIM_ENTER_GI(nvmlGpuInstanceGetComputeInstanceProfileInfoV, gpuInstance, d);
    SIM_ARG(info);
    if (info->version != nvmlComputeInstanceProfileInfo_v2 && info->version != nvmlComputeInstanceProfileInfo_v3)
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    if (engProfile != NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED) return NVML_ERROR_NOT_SUPPORTED;
    if (profile != sim_ci_profile(&d->mig)) return NVML_ERROR_NOT_SUPPORTED;
    /* v2 and v3 share their layout up to name[96]; v3 adds capabilities */
    sim_fill_cip(d, &info->id, &info->sliceCount, &info->instanceCount, &info->multiprocessorCount,
                 &info->sharedCopyEngineCount, &info->sharedDecoderCount, &info->sharedEncoderCount,
                 &info->sharedJpegCount, &info->sharedOfaCount);
    snprintf(info->name, sizeof info->name, "MIG %s", d->mig.profile);
    if (info->version == nvmlComputeInstanceProfileInfo_v3)
        ((nvmlComputeInstanceProfileInfo_v3_t *)info)->capabilities = 0;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlGpuInstanceGetComputeInstances(nvmlGpuInstance_t gpuInstance, unsigned int profileId, nvmlComputeInstance_t *computeInstances, unsigned int *count)
{
    SIM_ENTER_GI(nvmlGpuInstanceGetComputeInstances, gpuInstance, d);
    SIM_ARG(computeInstances);
    SIM_ARG(count);
    unsigned n = 0;
    for (unsigned j = 0; j < sim_mig_n(d->gpu); j++) {
        sim_dev_t *m = sim_mig_slot(d->gpu, j);
        if (m->active && m->mig.gi == d->mig.gi && sim_ci_profile(&m->mig) == profileId &&
            n < SIM_MAX_MIG)
            computeInstances[n++] = (nvmlComputeInstance_t)&sim.ci_h[sim_index_of(m)];
    }
    *count = n;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlGpuInstanceGetComputeInstanceById(nvmlGpuInstance_t gpuInstance, unsigned int id, nvmlComputeInstance_t *computeInstance)
{
    SIM_ENTER_GI(nvmlGpuInstanceGetComputeInstanceById, gpuInstance, d);
    SIM_ARG(computeInstance);
    for (unsigned j = 0; j < sim_mig_n(d->gpu); j++) {
        sim_dev_t *m = sim_mig_slot(d->gpu, j);
        if (m->active && m->mig.gi == d->mig.gi && m->mig.ci == id) {
            *computeInstance = (nvmlComputeInstance_t)&sim.ci_h[sim_index_of(m)];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

static nvmlReturn_t sim_ci_info(const sim_dev_t *d, nvmlComputeInstanceInfo_t *info)
{
    SIM_ARG(info);
    info->device = sim_handle(sim_whole(d->gpu));
    info->gpuInstance = (nvmlGpuInstance_t)&sim.gi_h[sim_index_of(d)];
    info->id = d->mig.ci;
    info->profileId = sim_ci_profile(&d->mig);
    info->placement.start = 0;
    info->placement.size = sim_compute_slices(&d->mig);
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlComputeInstanceGetInfo_v2(nvmlComputeInstance_t computeInstance, nvmlComputeInstanceInfo_t *info)
{
    SIM_ENTER_CI(nvmlComputeInstanceGetInfo_v2, computeInstance, d);
    return sim_ci_info(d, info);
}

nvmlReturn_t DECLDIR nvmlComputeInstanceGetInfo(nvmlComputeInstance_t computeInstance, nvmlComputeInstanceInfo_t *info)
{
    SIM_ENTER_CI(nvmlComputeInstanceGetInfo, computeInstance, d);
    SIM_ARG(info);
    nvmlComputeInstanceInfo_t i;
    nvmlReturn_t r = sim_ci_info(d, &i);
    if (r == NVML_SUCCESS) memcpy(info, &i, SIM_CI_INFO_V1_SIZE); /* pre-_v2 layout */
    return r;
}

/* ---------------------------------------------------------------- placements, capacity */

/* Memory slices and compute slices taken by the GPU instances of the layout in use. */
static void sim_gi_usage(const sim_dev_t *d, unsigned *mem_mask, unsigned *compute)
{
    const sim_gpu_t *g = sim_gpu_of(d);
    *mem_mask = 0;
    *compute = 0;
    for (unsigned j = 0; j < sim_mig_n(d->gpu); j++) {
        const sim_dev_t *m = sim_mig_slot(d->gpu, j);
        if (!m->active || m->mig.ci != 0) continue; /* one entry per GPU instance */
        *mem_mask |= ((1u << m->mig.size) - 1u) << m->mig.start;
        const sim_gip_t *p = sim_find_gip(g, m->mig.gip_const, 0);
        *compute += p ? p->slices : m->mig.size;
    }
}

nvmlReturn_t DECLDIR nvmlDeviceGetGpuInstancePossiblePlacements_v2(nvmlDevice_t device, unsigned int profileId, nvmlGpuInstancePlacement_t *placements, unsigned int *count)
{
    SIM_ENTER_DEV(nvmlDeviceGetGpuInstancePossiblePlacements_v2, device, d);
    SIM_ARG(count);
    const sim_gip_t *p;
    nvmlReturn_t r = sim_gip_lookup(d, profileId, 1, &p);
    if (r != NVML_SUCCESS) return r;
    unsigned n = 0;
    for (unsigned s = 0; s < 8; s++) {
        if (!(p->starts >> s & 1u)) continue;
        /* a NULL array asks for the count; otherwise *count is the caller's capacity */
        if (placements != NULL) {
            if (n >= *count) return NVML_ERROR_INSUFFICIENT_SIZE;
            placements[n].start = s;
            placements[n].size = p->mem_slices;
        }
        n++;
    }
    *count = n;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetGpuInstanceRemainingCapacity(nvmlDevice_t device, unsigned int profileId, unsigned int *count)
{
    SIM_ENTER_DEV(nvmlDeviceGetGpuInstanceRemainingCapacity, device, d);
    SIM_ARG(count);
    const sim_gip_t *p;
    nvmlReturn_t r = sim_gip_lookup(d, profileId, 1, &p);
    if (r != NVML_SUCCESS) return r;
    if (!sim_mig_enabled(d->gpu)) return NVML_ERROR_NOT_SUPPORTED; /* nvml.h: MIG mode off */
    unsigned used, compute, existing = 0, n = 0;
    sim_gi_usage(d, &used, &compute);
    for (unsigned j = 0; j < sim_mig_n(d->gpu); j++) {
        const sim_dev_t *m = sim_mig_slot(d->gpu, j);
        if (m->active && m->mig.ci == 0 && m->mig.gip_const == p->cnst) existing++;
    }
    /* first-fit over the free placements, within the 7 compute slices and the profile's
     * instance count, as nvidia-smi mig -cgi would place them */
    for (unsigned s = 0; s < 8; s++) {
        unsigned mask = ((1u << p->mem_slices) - 1u) << s;
        if (!(p->starts >> s & 1u) || s + p->mem_slices > 8 || (used & mask)) continue;
        if (compute + p->slices > 7 || existing + n >= p->count) break;
        used |= mask;
        compute += p->slices;
        n++;
    }
    *count = n;
    return NVML_SUCCESS;
}
