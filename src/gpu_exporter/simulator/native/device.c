/*
 * Simulated NVML: system queries, handles, identity, clocks, power, thermals, utilisation,
 * memory, PCIe, ECC and NVLink state.
 */
#include "sim.h"

int sim_mig_enabled(int gpu);

/* Physical properties are NOT_SUPPORTED on MIG device handles. */
#define SIM_WHOLE(d)                                      \
    do {                                                  \
        if ((d)->slot >= 0) return NVML_ERROR_NOT_SUPPORTED; \
    } while (0)
#define SIM_ARG(p)                                          \
    do {                                                    \
        if ((p) == NULL) return NVML_ERROR_INVALID_ARGUMENT; \
    } while (0)

static void sim_now(const sim_dev_t *d, sim_now_t *o)
{
    sim_eval(d, sim_time(), o);
}

/* ---------------------------------------------------------------- system */

nvmlReturn_t DECLDIR nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    SIM_ENTER(nvmlSystemGetDriverVersion);
    return sim_copy_str(version, length, sim.driver_version);
}

nvmlReturn_t DECLDIR nvmlSystemGetNVMLVersion(char *version, unsigned int length)
{
    SIM_ENTER(nvmlSystemGetNVMLVersion);
    return sim_copy_str(version, length, sim.nvml_version);
}

static nvmlReturn_t sim_cuda(int *v)
{
    SIM_ARG(v);
    *v = (int)sim.cuda_version;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlSystemGetCudaDriverVersion(int *cudaDriverVersion)
{
    SIM_ENTER(nvmlSystemGetCudaDriverVersion);
    return sim_cuda(cudaDriverVersion);
}

nvmlReturn_t DECLDIR nvmlSystemGetCudaDriverVersion_v2(int *cudaDriverVersion)
{
    SIM_ENTER(nvmlSystemGetCudaDriverVersion_v2);
    return sim_cuda(cudaDriverVersion);
}

nvmlReturn_t DECLDIR nvmlSystemGetProcessName(unsigned int pid, char *name, unsigned int length)
{
    SIM_ENTER(nvmlSystemGetProcessName);
    char buf[64];
    if (pid >= 1200 && pid < 2000) snprintf(buf, sizeof buf, "/usr/lib/xorg/Xorg");
    else if (pid >= 24000) snprintf(buf, sizeof buf, "python3");
    else snprintf(buf, sizeof buf, "/usr/bin/python3");
    return sim_copy_str(name, length, buf);
}

/* ---------------------------------------------------------------- handles */

static nvmlReturn_t sim_count_devices(unsigned int *n)
{
    SIM_ARG(n);
    *n = sim.ngpu;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetCount_v2(unsigned int *deviceCount)
{
    SIM_ENTER(nvmlDeviceGetCount_v2);
    return sim_count_devices(deviceCount);
}

nvmlReturn_t DECLDIR nvmlDeviceGetCount(unsigned int *deviceCount)
{
    SIM_ENTER(nvmlDeviceGetCount);
    return sim_count_devices(deviceCount);
}

static nvmlReturn_t sim_by_index(unsigned int index, nvmlDevice_t *device)
{
    SIM_ARG(device);
    if (index >= sim.ngpu) return NVML_ERROR_INVALID_ARGUMENT;
    if (sim_faults()->lost[index]) return NVML_ERROR_GPU_IS_LOST;
    *device = sim_handle(sim_whole((int)index));
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    SIM_ENTER(nvmlDeviceGetHandleByIndex_v2);
    return sim_by_index(index, device);
}

nvmlReturn_t DECLDIR nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device)
{
    SIM_ENTER(nvmlDeviceGetHandleByIndex);
    return sim_by_index(index, device);
}

static nvmlReturn_t sim_by_string(const char *s, nvmlDevice_t *device, int what)
{
    SIM_ARG(s);
    SIM_ARG(device);
    for (unsigned i = 0; i < sim.ngpu; i++) {
        sim_gpu_t *g = &sim.gpu[i];
        int match = 0;
        if (what == 0) match = strcmp(s, g->uuid) == 0;
        else if (what == 1) match = strcmp(s, g->serial) == 0;
        else match = strcasecmp(s, g->bus_id) == 0 || strcasecmp(s, g->bus_id + 4) == 0;
        if (match) {
            if (sim_faults()->lost[i]) return NVML_ERROR_GPU_IS_LOST;
            *device = sim_handle(sim_whole((int)i));
            return NVML_SUCCESS;
        }
        if (what == 0 && sim_mig_enabled((int)i)) {
            for (unsigned j = 0; j < sim_mig_n((int)i); j++) {
                sim_dev_t *m = sim_mig_slot((int)i, j);
                if (m->active && strcmp(s, m->uuid) == 0) {
                    if (sim_faults()->lost[i]) return NVML_ERROR_GPU_IS_LOST;
                    *device = sim_handle(m);
                    return NVML_SUCCESS;
                }
            }
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

nvmlReturn_t DECLDIR nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device)
{
    SIM_ENTER(nvmlDeviceGetHandleByUUID);
    return sim_by_string(uuid, device, 0);
}

nvmlReturn_t DECLDIR nvmlDeviceGetHandleByUUIDV(const nvmlUUID_t *uuid, nvmlDevice_t *device)
{
    SIM_ENTER(nvmlDeviceGetHandleByUUIDV);
    SIM_CHECK_VERSION(uuid, nvmlUUID_v1);
    if (uuid->type != NVML_UUID_TYPE_ASCII) return NVML_ERROR_NOT_SUPPORTED;
    char buf[NVML_DEVICE_UUID_ASCII_LEN + 1];
    snprintf(buf, sizeof buf, "%s", uuid->value.str);
    return sim_by_string(buf, device, 0);
}

nvmlReturn_t DECLDIR nvmlDeviceGetHandleBySerial(const char *serial, nvmlDevice_t *device)
{
    SIM_ENTER(nvmlDeviceGetHandleBySerial);
    return sim_by_string(serial, device, 1);
}

nvmlReturn_t DECLDIR nvmlDeviceGetHandleByPciBusId_v2(const char *pciBusId, nvmlDevice_t *device)
{
    SIM_ENTER(nvmlDeviceGetHandleByPciBusId_v2);
    return sim_by_string(pciBusId, device, 2);
}

nvmlReturn_t DECLDIR nvmlDeviceGetHandleByPciBusId(const char *pciBusId, nvmlDevice_t *device)
{
    SIM_ENTER(nvmlDeviceGetHandleByPciBusId);
    return sim_by_string(pciBusId, device, 2);
}

/* ---------------------------------------------------------------- identity */

nvmlReturn_t DECLDIR nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
    SIM_ENTER_DEV(nvmlDeviceGetName, device, d);
    return sim_copy_str(name, length, d->name);
}

nvmlReturn_t DECLDIR nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length)
{
    SIM_ENTER_DEV(nvmlDeviceGetUUID, device, d);
    return sim_copy_str(uuid, length, d->uuid);
}

nvmlReturn_t DECLDIR nvmlDeviceGetSerial(nvmlDevice_t device, char *serial, unsigned int length)
{
    SIM_ENTER_DEV(nvmlDeviceGetSerial, device, d);
    SIM_WHOLE(d);
    return sim_copy_str(serial, length, sim_gpu_of(d)->serial);
}

nvmlReturn_t DECLDIR nvmlDeviceGetBoardPartNumber(nvmlDevice_t device, char *partNumber, unsigned int length)
{
    SIM_ENTER_DEV(nvmlDeviceGetBoardPartNumber, device, d);
    SIM_WHOLE(d);
    return sim_copy_str(partNumber, length, sim_gpu_of(d)->part_number);
}

nvmlReturn_t DECLDIR nvmlDeviceGetVbiosVersion(nvmlDevice_t device, char *version, unsigned int length)
{
    SIM_ENTER_DEV(nvmlDeviceGetVbiosVersion, device, d);
    SIM_WHOLE(d);
    return sim_copy_str(version, length, sim_gpu_of(d)->vbios);
}

nvmlReturn_t DECLDIR nvmlDeviceGetInforomImageVersion(nvmlDevice_t device, char *version, unsigned int length)
{
    SIM_ENTER_DEV(nvmlDeviceGetInforomImageVersion, device, d);
    SIM_WHOLE(d);
    return sim_copy_str(version, length, sim_gpu_of(d)->inforom_image);
}

nvmlReturn_t DECLDIR nvmlDeviceGetInforomVersion(nvmlDevice_t device, nvmlInforomObject_t object, char *version, unsigned int length)
{
    SIM_ENTER_DEV(nvmlDeviceGetInforomVersion, device, d);
    SIM_WHOLE(d);
    sim_gpu_t *g = sim_gpu_of(d);
    const char *v;
    switch (object) {
    case NVML_INFOROM_OEM: v = g->inforom_oem; break;
    case NVML_INFOROM_ECC: v = g->inforom_ecc; break;
    case NVML_INFOROM_POWER: v = g->inforom_pwr; break;
    default: return NVML_ERROR_INVALID_ARGUMENT;
    }
    if (!v[0]) return NVML_ERROR_NOT_SUPPORTED;
    return sim_copy_str(version, length, v);
}

nvmlReturn_t DECLDIR nvmlDeviceGetInforomConfigurationChecksum(nvmlDevice_t device, unsigned int *checksum)
{
    SIM_ENTER_DEV(nvmlDeviceGetInforomConfigurationChecksum, device, d);
    SIM_WHOLE(d);
    SIM_ARG(checksum);
    *checksum = (unsigned)(sim_gpu_of(d)->seed & 0xffffffffu);
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index)
{
    SIM_ENTER_DEV(nvmlDeviceGetIndex, device, d);
    SIM_ARG(index);
    /* nvml.h: on a MIG handle, the index nvmlDeviceGetMigDeviceHandleByIndex takes */
    *index = d->slot >= 0 ? (unsigned)d->slot : (unsigned)d->gpu;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned int *minorNumber)
{
    SIM_ENTER_DEV(nvmlDeviceGetMinorNumber, device, d);
    SIM_WHOLE(d);
    SIM_ARG(minorNumber);
    *minorNumber = (unsigned)sim_gpu_of(d)->minor;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetBrand(nvmlDevice_t device, nvmlBrandType_t *type)
{
    SIM_ENTER_DEV(nvmlDeviceGetBrand, device, d);
    SIM_ARG(type);
    *type = (nvmlBrandType_t)sim_gpu_of(d)->brand;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetArchitecture(nvmlDevice_t device, nvmlDeviceArchitecture_t *arch)
{
    SIM_ENTER_DEV(nvmlDeviceGetArchitecture, device, d);
    SIM_ARG(arch);
    *arch = (nvmlDeviceArchitecture_t)sim_gpu_of(d)->arch;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetCudaComputeCapability(nvmlDevice_t device, int *major, int *minor)
{
    SIM_ENTER_DEV(nvmlDeviceGetCudaComputeCapability, device, d);
    SIM_ARG(major);
    SIM_ARG(minor);
    *major = (int)sim_gpu_of(d)->cc_major;
    *minor = (int)sim_gpu_of(d)->cc_minor;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetBoardId(nvmlDevice_t device, unsigned int *boardId)
{
    SIM_ENTER_DEV(nvmlDeviceGetBoardId, device, d);
    SIM_WHOLE(d);
    SIM_ARG(boardId);
    *boardId = (unsigned)sim_gpu_of(d)->board_id;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetMultiGpuBoard(nvmlDevice_t device, unsigned int *multiGpuBool)
{
    SIM_ENTER_DEV(nvmlDeviceGetMultiGpuBoard, device, d);
    SIM_WHOLE(d);
    SIM_ARG(multiGpuBool);
    *multiGpuBool = (unsigned)sim_gpu_of(d)->multi_gpu_board;
    return NVML_SUCCESS;
}

static nvmlReturn_t sim_enable(nvmlEnableState_t *out, unsigned long long v)
{
    SIM_ARG(out);
    *out = v ? NVML_FEATURE_ENABLED : NVML_FEATURE_DISABLED;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetDisplayMode(nvmlDevice_t device, nvmlEnableState_t *display)
{
    SIM_ENTER_DEV(nvmlDeviceGetDisplayMode, device, d);
    SIM_WHOLE(d);
    return sim_enable(display, sim_gpu_of(d)->display);
}

nvmlReturn_t DECLDIR nvmlDeviceGetDisplayActive(nvmlDevice_t device, nvmlEnableState_t *isActive)
{
    SIM_ENTER_DEV(nvmlDeviceGetDisplayActive, device, d);
    SIM_WHOLE(d);
    return sim_enable(isActive, sim_gpu_of(d)->display);
}

nvmlReturn_t DECLDIR nvmlDeviceGetPersistenceMode(nvmlDevice_t device, nvmlEnableState_t *mode)
{
    SIM_ENTER_DEV(nvmlDeviceGetPersistenceMode, device, d);
    SIM_WHOLE(d);
    return sim_enable(mode, sim_gpu_of(d)->persistence);
}

nvmlReturn_t DECLDIR nvmlDeviceGetComputeMode(nvmlDevice_t device, nvmlComputeMode_t *mode)
{
    SIM_ENTER_DEV(nvmlDeviceGetComputeMode, device, d);
    SIM_ARG(mode);
    *mode = (nvmlComputeMode_t)sim_gpu_of(d)->compute_mode;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetVirtualizationMode(nvmlDevice_t device, nvmlGpuVirtualizationMode_t *pVirtualMode)
{
    SIM_ENTER_DEV(nvmlDeviceGetVirtualizationMode, device, d);
    SIM_WHOLE(d);
    SIM_ARG(pVirtualMode);
    *pVirtualMode = NVML_GPU_VIRTUALIZATION_MODE_NONE;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetNumaNodeId(nvmlDevice_t device, unsigned int *node)
{
    SIM_ENTER_DEV(nvmlDeviceGetNumaNodeId, device, d);
    SIM_WHOLE(d);
    SIM_ARG(node);
    *node = (unsigned)sim_gpu_of(d)->numa_node;
    return NVML_SUCCESS;
}

/* ---------------------------------------------------------------- PCI */

static void sim_fill_pci(const sim_gpu_t *g, nvmlPciInfo_t *p)
{
    memset(p, 0, sizeof *p);
    snprintf(p->busId, sizeof p->busId, "%.31s", g->bus_id);
    snprintf(p->busIdLegacy, sizeof p->busIdLegacy, NVML_DEVICE_PCI_BUS_ID_LEGACY_FMT,
             (unsigned)g->pci_domain & 0xffffu, (unsigned)g->pci_bus, (unsigned)g->pci_device);
    p->domain = (unsigned)g->pci_domain;
    p->bus = (unsigned)g->pci_bus;
    p->device = (unsigned)g->pci_device;
    p->pciDeviceId = (unsigned)g->pci_device_id;
    p->pciSubSystemId = (unsigned)g->pci_subsystem_id;
}

nvmlReturn_t DECLDIR nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci)
{
    SIM_ENTER_DEV(nvmlDeviceGetPciInfo_v3, device, d);
    SIM_WHOLE(d);
    SIM_ARG(pci);
    sim_fill_pci(sim_gpu_of(d), pci);
    return NVML_SUCCESS;
}

/* Write the 52-byte pre-_v3 layout (see sim_pci_legacy_t) into the caller's buffer. */
static void sim_put_pci_legacy(const nvmlPciInfo_t *p, void *out)
{
    sim_pci_legacy_t l;
    memset(&l, 0, sizeof l);
    memcpy(l.busId, p->busIdLegacy, sizeof l.busId);
    l.domain = p->domain;
    l.bus = p->bus;
    l.device = p->device;
    l.pciDeviceId = p->pciDeviceId;
    l.pciSubSystemId = p->pciSubSystemId;
    memcpy(out, &l, sizeof l);
}

nvmlReturn_t DECLDIR nvmlDeviceGetPciInfo_v2(nvmlDevice_t device, nvmlPciInfo_t *pci)
{
    SIM_ENTER_DEV(nvmlDeviceGetPciInfo_v2, device, d);
    SIM_WHOLE(d);
    SIM_ARG(pci);
    nvmlPciInfo_t p;
    sim_fill_pci(sim_gpu_of(d), &p);
    sim_put_pci_legacy(&p, pci);
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetPciInfo(nvmlDevice_t device, nvmlPciInfo_t *pci)
{
    SIM_ENTER_DEV(nvmlDeviceGetPciInfo, device, d);
    SIM_WHOLE(d);
    SIM_ARG(pci);
    nvmlPciInfo_t p;
    sim_fill_pci(sim_gpu_of(d), &p);
    sim_put_pci_legacy(&p, pci);
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetPciInfoExt(nvmlDevice_t device, nvmlPciInfoExt_t *pci)
{
    SIM_ENTER_DEV(nvmlDeviceGetPciInfoExt, device, d);
    SIM_WHOLE(d);
    SIM_CHECK_VERSION(pci, nvmlPciInfoExt_v1);
    const sim_gpu_t *g = sim_gpu_of(d);
    nvmlPciInfo_t p;
    sim_fill_pci(g, &p);
    memcpy(pci->busId, p.busId, sizeof pci->busId);
    pci->domain = p.domain;
    pci->bus = p.bus;
    pci->device = p.device;
    pci->pciDeviceId = p.pciDeviceId;
    pci->pciSubSystemId = p.pciSubSystemId;
    pci->baseClass = 0x03;
    pci->subClass = g->display ? 0x00 : 0x02;
    return NVML_SUCCESS;
}

#define SIM_UINT_GETTER(fn, expr)                                   \
    nvmlReturn_t DECLDIR fn(nvmlDevice_t device, unsigned int *out) \
    {                                                               \
        SIM_ENTER_DEV(fn, device, d);                               \
        SIM_WHOLE(d);                                               \
        SIM_ARG(out);                                               \
        const sim_gpu_t *g = sim_gpu_of(d);                         \
        *out = (unsigned)(expr);                                    \
        return NVML_SUCCESS;                                        \
    }

SIM_UINT_GETTER(nvmlDeviceGetCurrPcieLinkGeneration, g->pcie_gen)
SIM_UINT_GETTER(nvmlDeviceGetCurrPcieLinkWidth, g->pcie_width)
SIM_UINT_GETTER(nvmlDeviceGetMaxPcieLinkGeneration, g->pcie_max_gen)
SIM_UINT_GETTER(nvmlDeviceGetGpuMaxPcieLinkGeneration, g->pcie_max_gen)
SIM_UINT_GETTER(nvmlDeviceGetMaxPcieLinkWidth, g->pcie_max_width)
SIM_UINT_GETTER(nvmlDeviceGetPcieReplayCounter, g->pcie_replay)
SIM_UINT_GETTER(nvmlDeviceGetMemoryBusWidth, g->mem_bus_width)
SIM_UINT_GETTER(nvmlDeviceGetNumGpuCores, g->sm_count * (g->arch >= NVML_DEVICE_ARCH_AMPERE ? 128 : 64))

static unsigned sim_gen_speed(unsigned long long gen)
{
    static const unsigned mbps[] = {0, 2500, 5000, 8000, 16000, 32000, 64000};
    return gen < 7 ? mbps[gen] : 0;
}

SIM_UINT_GETTER(nvmlDeviceGetPcieSpeed, sim_gen_speed(g->pcie_gen))
SIM_UINT_GETTER(nvmlDeviceGetPcieLinkMaxSpeed, sim_gen_speed(g->pcie_max_gen))

nvmlReturn_t DECLDIR nvmlDeviceGetBusType(nvmlDevice_t device, nvmlBusType_t *type)
{
    SIM_ENTER_DEV(nvmlDeviceGetBusType, device, d);
    SIM_WHOLE(d);
    SIM_ARG(type);
    *type = NVML_BUS_TYPE_PCIE;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetPcieThroughput(nvmlDevice_t device, nvmlPcieUtilCounter_t counter, unsigned int *value)
{
    SIM_ENTER_DEV(nvmlDeviceGetPcieThroughput, device, d);
    SIM_WHOLE(d);
    SIM_ARG(value);
    if (counter != NVML_PCIE_UTIL_TX_BYTES && counter != NVML_PCIE_UTIL_RX_BYTES)
        return NVML_ERROR_INVALID_ARGUMENT;
    const sim_gpu_t *g = sim_gpu_of(d);
    double tau = sim_time();
    /* KB/s over a 20 ms window (the real call samples for 20 ms; we do not sleep) */
    int rx = counter == NVML_PCIE_UTIL_RX_BYTES;
    double b = (double)(sim_pcie_bytes(g, tau, rx) - sim_pcie_bytes(g, tau - 0.02, rx));
    *value = (unsigned)(b / 0.02 / 1024.0);
    return NVML_SUCCESS;
}

/* ---------------------------------------------------------------- clocks */

static nvmlReturn_t sim_clock_now(const sim_dev_t *d, nvmlClockType_t type, unsigned *clock)
{
    SIM_ARG(clock);
    sim_now_t n;
    sim_now(d, &n);
    switch (type) {
    case NVML_CLOCK_GRAPHICS:
    case NVML_CLOCK_SM: *clock = (unsigned)lround(n.sm_clock); break;
    case NVML_CLOCK_MEM: *clock = (unsigned)lround(n.mem_clock); break;
    case NVML_CLOCK_VIDEO: *clock = (unsigned)lround(n.video_clock); break;
    default: return NVML_ERROR_INVALID_ARGUMENT;
    }
    return NVML_SUCCESS;
}

static nvmlReturn_t sim_clock_max(const sim_gpu_t *g, nvmlClockType_t type, unsigned *clock)
{
    SIM_ARG(clock);
    switch (type) {
    case NVML_CLOCK_GRAPHICS:
    case NVML_CLOCK_SM: *clock = (unsigned)g->clock_sm_max; break;
    case NVML_CLOCK_MEM: *clock = (unsigned)g->clock_mem_max; break;
    case NVML_CLOCK_VIDEO: *clock = (unsigned)g->clock_video_max; break;
    default: return NVML_ERROR_INVALID_ARGUMENT;
    }
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetClockInfo(nvmlDevice_t device, nvmlClockType_t type, unsigned int *clock)
{
    SIM_ENTER_DEV(nvmlDeviceGetClockInfo, device, d);
    SIM_WHOLE(d);
    return sim_clock_now(d, type, clock);
}

nvmlReturn_t DECLDIR nvmlDeviceGetMaxClockInfo(nvmlDevice_t device, nvmlClockType_t type, unsigned int *clock)
{
    SIM_ENTER_DEV(nvmlDeviceGetMaxClockInfo, device, d);
    SIM_WHOLE(d);
    return sim_clock_max(sim_gpu_of(d), type, clock);
}

nvmlReturn_t DECLDIR nvmlDeviceGetMaxCustomerBoostClock(nvmlDevice_t device, nvmlClockType_t clockType, unsigned int *clockMHz)
{
    SIM_ENTER_DEV(nvmlDeviceGetMaxCustomerBoostClock, device, d);
    SIM_WHOLE(d);
    return sim_clock_max(sim_gpu_of(d), clockType, clockMHz);
}

nvmlReturn_t DECLDIR nvmlDeviceGetApplicationsClock(nvmlDevice_t device, nvmlClockType_t clockType, unsigned int *clockMHz)
{
    SIM_ENTER_DEV(nvmlDeviceGetApplicationsClock, device, d);
    SIM_WHOLE(d);
    return sim_clock_max(sim_gpu_of(d), clockType, clockMHz);
}

nvmlReturn_t DECLDIR nvmlDeviceGetDefaultApplicationsClock(nvmlDevice_t device, nvmlClockType_t clockType, unsigned int *clockMHz)
{
    SIM_ENTER_DEV(nvmlDeviceGetDefaultApplicationsClock, device, d);
    SIM_WHOLE(d);
    return sim_clock_max(sim_gpu_of(d), clockType, clockMHz);
}

nvmlReturn_t DECLDIR nvmlDeviceGetClock(nvmlDevice_t device, nvmlClockType_t clockType, nvmlClockId_t clockId, unsigned int *clockMHz)
{
    SIM_ENTER_DEV(nvmlDeviceGetClock, device, d);
    SIM_WHOLE(d);
    if (clockId == NVML_CLOCK_ID_CURRENT) return sim_clock_now(d, clockType, clockMHz);
    if (clockId <= NVML_CLOCK_ID_CUSTOMER_BOOST_MAX)
        return sim_clock_max(sim_gpu_of(d), clockType, clockMHz);
    return NVML_ERROR_INVALID_ARGUMENT;
}

static nvmlReturn_t sim_reasons(const sim_dev_t *d, unsigned long long *out)
{
    SIM_ARG(out);
    sim_now_t n;
    sim_now(d, &n);
    *out = n.reasons;
    return NVML_SUCCESS;
}

#define SIM_SUPPORTED_REASONS                                                              \
    (nvmlClocksEventReasonGpuIdle | nvmlClocksEventReasonApplicationsClocksSetting |       \
     nvmlClocksEventReasonSwPowerCap | nvmlClocksThrottleReasonHwSlowdown |                \
     nvmlClocksEventReasonSwThermalSlowdown | nvmlClocksThrottleReasonHwThermalSlowdown |  \
     nvmlClocksThrottleReasonHwPowerBrakeSlowdown | nvmlClocksEventReasonDisplayClockSetting)

nvmlReturn_t DECLDIR nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t device, unsigned long long *clocksEventReasons)
{
    SIM_ENTER_DEV(nvmlDeviceGetCurrentClocksEventReasons, device, d);
    SIM_WHOLE(d);
    return sim_reasons(d, clocksEventReasons);
}

nvmlReturn_t DECLDIR nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t device, unsigned long long *clocksThrottleReasons)
{
    SIM_ENTER_DEV(nvmlDeviceGetCurrentClocksThrottleReasons, device, d);
    SIM_WHOLE(d);
    return sim_reasons(d, clocksThrottleReasons);
}

nvmlReturn_t DECLDIR nvmlDeviceGetSupportedClocksEventReasons(nvmlDevice_t device, unsigned long long *supportedClocksEventReasons)
{
    SIM_ENTER_DEV(nvmlDeviceGetSupportedClocksEventReasons, device, d);
    SIM_WHOLE(d);
    SIM_ARG(supportedClocksEventReasons);
    *supportedClocksEventReasons = SIM_SUPPORTED_REASONS;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetSupportedClocksThrottleReasons(nvmlDevice_t device, unsigned long long *supportedClocksThrottleReasons)
{
    SIM_ENTER_DEV(nvmlDeviceGetSupportedClocksThrottleReasons, device, d);
    SIM_WHOLE(d);
    SIM_ARG(supportedClocksThrottleReasons);
    *supportedClocksThrottleReasons = SIM_SUPPORTED_REASONS;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetViolationStatus(nvmlDevice_t device, nvmlPerfPolicyType_t perfPolicyType, nvmlViolationTime_t *violTime)
{
    SIM_ENTER_DEV(nvmlDeviceGetViolationStatus, device, d);
    SIM_WHOLE(d);
    SIM_ARG(violTime);
    if ((int)perfPolicyType < 0 || perfPolicyType >= NVML_PERF_POLICY_COUNT)
        return NVML_ERROR_INVALID_ARGUMENT;
    violTime->referenceTime = (unsigned long long)sim_timestamp_us();
    violTime->violationTime = sim_violation_ns(sim_gpu_of(d), sim_time(), (int)perfPolicyType);
    return NVML_SUCCESS;
}

static nvmlReturn_t sim_pstate(const sim_dev_t *d, nvmlPstates_t *p)
{
    SIM_ARG(p);
    sim_now_t n;
    sim_now(d, &n);
    *p = n.util < 1.0 ? NVML_PSTATE_8 : NVML_PSTATE_0;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetPerformanceState(nvmlDevice_t device, nvmlPstates_t *pState)
{
    SIM_ENTER_DEV(nvmlDeviceGetPerformanceState, device, d);
    SIM_WHOLE(d);
    return sim_pstate(d, pState);
}

nvmlReturn_t DECLDIR nvmlDeviceGetPowerState(nvmlDevice_t device, nvmlPstates_t *pState)
{
    SIM_ENTER_DEV(nvmlDeviceGetPowerState, device, d);
    SIM_WHOLE(d);
    return sim_pstate(d, pState);
}

/* ---------------------------------------------------------------- fans and thermals */

nvmlReturn_t DECLDIR nvmlDeviceGetNumFans(nvmlDevice_t device, unsigned int *numFans)
{
    SIM_ENTER_DEV(nvmlDeviceGetNumFans, device, d);
    SIM_WHOLE(d);
    SIM_ARG(numFans);
    if (!sim_gpu_of(d)->fans) return NVML_ERROR_NOT_SUPPORTED;
    *numFans = (unsigned)sim_gpu_of(d)->fans;
    return NVML_SUCCESS;
}

static nvmlReturn_t sim_fan(const sim_dev_t *d, unsigned fan, unsigned *speed)
{
    SIM_ARG(speed);
    const sim_gpu_t *g = sim_gpu_of(d);
    if (!g->fans) return NVML_ERROR_NOT_SUPPORTED;
    if (fan >= g->fans) return NVML_ERROR_INVALID_ARGUMENT;
    sim_now_t n;
    sim_now(d, &n);
    double span = (double)g->temp_load - (double)g->temp_ambient;
    double f = span > 0 ? (n.temp - (double)g->temp_ambient) / span : 0;
    *speed = (unsigned)lround((double)g->fan_idle + ((double)g->fan_load - (double)g->fan_idle) * f);
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetFanSpeed(nvmlDevice_t device, unsigned int *speed)
{
    SIM_ENTER_DEV(nvmlDeviceGetFanSpeed, device, d);
    SIM_WHOLE(d);
    return sim_fan(d, 0, speed);
}

nvmlReturn_t DECLDIR nvmlDeviceGetFanSpeed_v2(nvmlDevice_t device, unsigned int fan, unsigned int *speed)
{
    SIM_ENTER_DEV(nvmlDeviceGetFanSpeed_v2, device, d);
    SIM_WHOLE(d);
    return sim_fan(d, fan, speed);
}

static nvmlReturn_t sim_temp(const sim_dev_t *d, int sensor, int *out)
{
    if (sensor != NVML_TEMPERATURE_GPU) return NVML_ERROR_INVALID_ARGUMENT;
    sim_now_t n;
    sim_now(d, &n);
    *out = (int)lround(n.temp);
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetTemperature(nvmlDevice_t device, nvmlTemperatureSensors_t sensorType, unsigned int *temp)
{
    SIM_ENTER_DEV(nvmlDeviceGetTemperature, device, d);
    SIM_WHOLE(d);
    SIM_ARG(temp);
    int t = 0;
    nvmlReturn_t r = sim_temp(d, (int)sensorType, &t);
    if (r == NVML_SUCCESS) *temp = (unsigned)t;
    return r;
}

nvmlReturn_t DECLDIR nvmlDeviceGetTemperatureV(nvmlDevice_t device, nvmlTemperature_t *temperature)
{
    SIM_ENTER_DEV(nvmlDeviceGetTemperatureV, device, d);
    SIM_WHOLE(d);
    SIM_CHECK_VERSION(temperature, nvmlTemperature_v1);
    return sim_temp(d, (int)temperature->sensorType, &temperature->temperature);
}

nvmlReturn_t DECLDIR nvmlDeviceGetTemperatureThreshold(nvmlDevice_t device, nvmlTemperatureThresholds_t thresholdType, unsigned int *temp)
{
    SIM_ENTER_DEV(nvmlDeviceGetTemperatureThreshold, device, d);
    SIM_WHOLE(d);
    SIM_ARG(temp);
    const sim_gpu_t *g = sim_gpu_of(d);
    switch (thresholdType) {
    case NVML_TEMPERATURE_THRESHOLD_SHUTDOWN: *temp = (unsigned)g->temp_shutdown; break;
    case NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: *temp = (unsigned)g->temp_slowdown; break;
    case NVML_TEMPERATURE_THRESHOLD_GPU_MAX: *temp = (unsigned)g->temp_gpu_max; break;
    case NVML_TEMPERATURE_THRESHOLD_MEM_MAX:
        if (!g->mem_temp) return NVML_ERROR_NOT_SUPPORTED;
        *temp = (unsigned)g->temp_mem_max;
        break;
    default: return NVML_ERROR_NOT_SUPPORTED;
    }
    return NVML_SUCCESS;
}

/* ---------------------------------------------------------------- power */

nvmlReturn_t DECLDIR nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power)
{
    SIM_ENTER_DEV(nvmlDeviceGetPowerUsage, device, d);
    SIM_WHOLE(d);
    SIM_ARG(power);
    sim_now_t n;
    sim_now(d, &n);
    *power = (unsigned)lround(n.power_mw);
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long *energy)
{
    SIM_ENTER_DEV(nvmlDeviceGetTotalEnergyConsumption, device, d);
    SIM_WHOLE(d);
    SIM_ARG(energy);
    sim_now_t n;
    sim_now(d, &n);
    *energy = (unsigned long long)n.energy_mj;
    return NVML_SUCCESS;
}

SIM_UINT_GETTER(nvmlDeviceGetPowerManagementLimit, g->power_default_mw)
SIM_UINT_GETTER(nvmlDeviceGetPowerManagementDefaultLimit, g->power_default_mw)
SIM_UINT_GETTER(nvmlDeviceGetEnforcedPowerLimit, g->power_default_mw)

nvmlReturn_t DECLDIR nvmlDeviceGetPowerManagementLimitConstraints(nvmlDevice_t device, unsigned int *minLimit, unsigned int *maxLimit)
{
    SIM_ENTER_DEV(nvmlDeviceGetPowerManagementLimitConstraints, device, d);
    SIM_WHOLE(d);
    SIM_ARG(minLimit);
    SIM_ARG(maxLimit);
    *minLimit = (unsigned)sim_gpu_of(d)->power_min_mw;
    *maxLimit = (unsigned)sim_gpu_of(d)->power_max_mw;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetPowerManagementMode(nvmlDevice_t device, nvmlEnableState_t *mode)
{
    SIM_ENTER_DEV(nvmlDeviceGetPowerManagementMode, device, d);
    SIM_WHOLE(d);
    return sim_enable(mode, 1);
}

/* ---------------------------------------------------------------- utilisation */

nvmlReturn_t DECLDIR nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization)
{
    SIM_ENTER_DEV(nvmlDeviceGetUtilizationRates, device, d);
    if (d->slot >= 0 || sim_mig_enabled(d->gpu)) return NVML_ERROR_NOT_SUPPORTED;
    SIM_ARG(utilization);
    sim_now_t n;
    sim_eval_util(d, sim_time(), &n);
    utilization->gpu = (unsigned)lround(n.util);
    utilization->memory = (unsigned)lround(n.mem_util);
    return NVML_SUCCESS;
}

static nvmlReturn_t sim_engine(const sim_dev_t *d, int which, unsigned *util, unsigned *period)
{
    if (d->slot >= 0 || sim_mig_enabled(d->gpu)) return NVML_ERROR_NOT_SUPPORTED;
    SIM_ARG(util);
    SIM_ARG(period);
    const sim_gpu_t *g = sim_gpu_of(d);
    if ((which == 0 && !g->encoder) || (which == 1 && !g->decoder)) return NVML_ERROR_NOT_SUPPORTED;
    sim_now_t n;
    sim_eval_util(d, sim_time(), &n);
    double v = which == 0 ? n.enc_util : (which == 1 ? n.dec_util : 0);
    *util = (unsigned)lround(v);
    *period = 167000;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetEncoderUtilization(nvmlDevice_t device, unsigned int *utilization, unsigned int *samplingPeriodUs)
{
    SIM_ENTER_DEV(nvmlDeviceGetEncoderUtilization, device, d);
    return sim_engine(d, 0, utilization, samplingPeriodUs);
}

nvmlReturn_t DECLDIR nvmlDeviceGetDecoderUtilization(nvmlDevice_t device, unsigned int *utilization, unsigned int *samplingPeriodUs)
{
    SIM_ENTER_DEV(nvmlDeviceGetDecoderUtilization, device, d);
    return sim_engine(d, 1, utilization, samplingPeriodUs);
}

nvmlReturn_t DECLDIR nvmlDeviceGetJpgUtilization(nvmlDevice_t device, unsigned int *utilization, unsigned int *samplingPeriodUs)
{
    SIM_ENTER_DEV(nvmlDeviceGetJpgUtilization, device, d);
    if (sim_gpu_of(d)->arch < NVML_DEVICE_ARCH_AMPERE) return NVML_ERROR_NOT_SUPPORTED;
    return sim_engine(d, 2, utilization, samplingPeriodUs);
}

nvmlReturn_t DECLDIR nvmlDeviceGetOfaUtilization(nvmlDevice_t device, unsigned int *utilization, unsigned int *samplingPeriodUs)
{
    SIM_ENTER_DEV(nvmlDeviceGetOfaUtilization, device, d);
    if (sim_gpu_of(d)->arch < NVML_DEVICE_ARCH_AMPERE) return NVML_ERROR_NOT_SUPPORTED;
    return sim_engine(d, 2, utilization, samplingPeriodUs);
}

/* ---------------------------------------------------------------- memory */

static void sim_mem(const sim_dev_t *d, unsigned long long *total, unsigned long long *reserved,
                    unsigned long long *used)
{
    const sim_gpu_t *g = sim_gpu_of(d);
    if (d->slot >= 0) {
        *total = (unsigned long long)d->mig.mem_mib << 20;
        *reserved = 0;
    } else {
        *total = g->mem_total_mib << 20;
        *reserved = g->mem_reserved_mib << 20;
    }
    *used = sim_mem_used(d, sim_time());
}

nvmlReturn_t DECLDIR nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
    SIM_ENTER_DEV(nvmlDeviceGetMemoryInfo, device, d);
    SIM_ARG(memory);
    unsigned long long total, reserved, used;
    sim_mem(d, &total, &reserved, &used);
    memory->total = total;
    memory->used = used + reserved;
    memory->free = total - reserved - used;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory)
{
    SIM_ENTER_DEV(nvmlDeviceGetMemoryInfo_v2, device, d);
    SIM_CHECK_VERSION(memory, nvmlMemory_v2);
    unsigned long long total, reserved, used;
    sim_mem(d, &total, &reserved, &used);
    memory->total = total;
    memory->reserved = reserved;
    memory->used = used;
    memory->free = total - reserved - used;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetBAR1MemoryInfo(nvmlDevice_t device, nvmlBAR1Memory_t *bar1Memory)
{
    SIM_ENTER_DEV(nvmlDeviceGetBAR1MemoryInfo, device, d);
    SIM_ARG(bar1Memory);
    const sim_gpu_t *g = sim_gpu_of(d);
    unsigned long long total = g->bar1_total_mib << 20;
    if (d->slot >= 0) total = total * d->mig.size / 8;
    unsigned long long used = (2ULL << 20) + (sim_mem_used(d, sim_time()) > 0 ? (32ULL << 20) : 0);
    if (used > total) used = total;
    bar1Memory->bar1Total = total;
    bar1Memory->bar1Used = used;
    bar1Memory->bar1Free = total - used;
    return NVML_SUCCESS;
}

/* ---------------------------------------------------------------- ECC, retired pages, rows */

nvmlReturn_t DECLDIR nvmlDeviceGetEccMode(nvmlDevice_t device, nvmlEnableState_t *current, nvmlEnableState_t *pending)
{
    SIM_ENTER_DEV(nvmlDeviceGetEccMode, device, d);
    SIM_WHOLE(d);
    SIM_ARG(current);
    SIM_ARG(pending);
    const sim_gpu_t *g = sim_gpu_of(d);
    if (!g->ecc_supported) return NVML_ERROR_NOT_SUPPORTED;
    *current = *pending = g->ecc_enabled ? NVML_FEATURE_ENABLED : NVML_FEATURE_DISABLED;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetTotalEccErrors(nvmlDevice_t device, nvmlMemoryErrorType_t errorType, nvmlEccCounterType_t counterType, unsigned long long *eccCounts)
{
    SIM_ENTER_DEV(nvmlDeviceGetTotalEccErrors, device, d);
    SIM_WHOLE(d);
    SIM_ARG(eccCounts);
    const sim_gpu_t *g = sim_gpu_of(d);
    if (!g->ecc_supported || !g->ecc_enabled) return NVML_ERROR_NOT_SUPPORTED;
    if (errorType >= NVML_MEMORY_ERROR_TYPE_COUNT || counterType >= NVML_ECC_COUNTER_TYPE_COUNT)
        return NVML_ERROR_INVALID_ARGUMENT;
    *eccCounts = sim_ecc(g, d->gpu, errorType == NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                         counterType == NVML_AGGREGATE_ECC);
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetMemoryErrorCounter(nvmlDevice_t device, nvmlMemoryErrorType_t errorType, nvmlEccCounterType_t counterType, nvmlMemoryLocation_t locationType, unsigned long long *count)
{
    SIM_ENTER_DEV(nvmlDeviceGetMemoryErrorCounter, device, d);
    SIM_WHOLE(d);
    SIM_ARG(count);
    const sim_gpu_t *g = sim_gpu_of(d);
    if (!g->ecc_supported || !g->ecc_enabled) return NVML_ERROR_NOT_SUPPORTED;
    if (errorType >= NVML_MEMORY_ERROR_TYPE_COUNT || counterType >= NVML_ECC_COUNTER_TYPE_COUNT ||
        locationType >= NVML_MEMORY_LOCATION_COUNT)
        return NVML_ERROR_INVALID_ARGUMENT;
    /* every simulated ECC error is in device memory */
    *count = locationType == NVML_MEMORY_LOCATION_DEVICE_MEMORY
                 ? sim_ecc(g, d->gpu, errorType == NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                           counterType == NVML_AGGREGATE_ECC)
                 : 0;
    return NVML_SUCCESS;
}

static nvmlReturn_t sim_retired(const sim_dev_t *d, nvmlPageRetirementCause_t cause, unsigned *count,
                                unsigned long long *addr, unsigned long long *ts)
{
    SIM_ARG(count);
    const sim_gpu_t *g = sim_gpu_of(d);
    if (!g->page_retirement) return NVML_ERROR_NOT_SUPPORTED;
    if (cause >= NVML_PAGE_RETIREMENT_CAUSE_COUNT) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned n = (unsigned)(cause == NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR ? g->retired_dbe : g->retired_sbe);
    if (addr == NULL || *count < n) {
        unsigned have = *count;
        *count = n;
        if (n == 0) return NVML_SUCCESS;
        if (addr == NULL || have < n) return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (unsigned i = 0; i < n; i++) {
        uint64_t h = sim_hash(g->seed, 5000 + (uint64_t)cause * 100 + i);
        addr[i] = (h % ((g->mem_total_mib << 20) >> 12));
        if (ts) ts[i] = (unsigned long long)(1690000000 + (h >> 40) % 10000000);
    }
    *count = n;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetRetiredPages(nvmlDevice_t device, nvmlPageRetirementCause_t cause, unsigned int *pageCount, unsigned long long *addresses)
{
    SIM_ENTER_DEV(nvmlDeviceGetRetiredPages, device, d);
    SIM_WHOLE(d);
    return sim_retired(d, cause, pageCount, addresses, NULL);
}

nvmlReturn_t DECLDIR nvmlDeviceGetRetiredPages_v2(nvmlDevice_t device, nvmlPageRetirementCause_t cause, unsigned int *pageCount, unsigned long long *addresses, unsigned long long *timestamps)
{
    SIM_ENTER_DEV(nvmlDeviceGetRetiredPages_v2, device, d);
    SIM_WHOLE(d);
    if (addresses != NULL && timestamps == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    return sim_retired(d, cause, pageCount, addresses, timestamps);
}

nvmlReturn_t DECLDIR nvmlDeviceGetRetiredPagesPendingStatus(nvmlDevice_t device, nvmlEnableState_t *isPending)
{
    SIM_ENTER_DEV(nvmlDeviceGetRetiredPagesPendingStatus, device, d);
    SIM_WHOLE(d);
    if (!sim_gpu_of(d)->page_retirement) return NVML_ERROR_NOT_SUPPORTED;
    return sim_enable(isPending, sim_gpu_of(d)->retired_pending);
}

nvmlReturn_t DECLDIR nvmlDeviceGetRemappedRows(nvmlDevice_t device, unsigned int *corrRows, unsigned int *uncRows, unsigned int *isPending, unsigned int *failureOccurred)
{
    SIM_ENTER_DEV(nvmlDeviceGetRemappedRows, device, d);
    SIM_WHOLE(d);
    SIM_ARG(corrRows);
    SIM_ARG(uncRows);
    SIM_ARG(isPending);
    SIM_ARG(failureOccurred);
    const sim_gpu_t *g = sim_gpu_of(d);
    if (!g->row_remap) return NVML_ERROR_NOT_SUPPORTED;
    *corrRows = (unsigned)g->remap_cor;
    *uncRows = (unsigned)g->remap_unc;
    *isPending = (unsigned)g->remap_pending;
    *failureOccurred = (unsigned)g->remap_failure;
    return NVML_SUCCESS;
}

/* ---------------------------------------------------------------- NVLink */

/* Queries about one existing link (state, remote end, counters): links the profile has. */
static nvmlReturn_t sim_link(const sim_dev_t *d, unsigned link)
{
    const sim_gpu_t *g = sim_gpu_of(d);
    if (d->slot >= 0 || g->nvlink_links == 0) return NVML_ERROR_NOT_SUPPORTED;
    if (link >= g->nvlink_links) return NVML_ERROR_INVALID_ARGUMENT;
    return NVML_SUCCESS;
}

/* Capability and version queries: answered for every index below NVML_NVLINK_MAX_LINKS, as
 * drivers do (NVML_NVLINK_CAP_VALID then says whether the link exists). */
static nvmlReturn_t sim_link_cap(const sim_dev_t *d, unsigned link)
{
    const sim_gpu_t *g = sim_gpu_of(d);
    if (d->slot >= 0 || g->nvlink_links == 0) return NVML_ERROR_NOT_SUPPORTED;
    if (link >= NVML_NVLINK_MAX_LINKS) return NVML_ERROR_INVALID_ARGUMENT;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetNvLinkState(nvmlDevice_t device, unsigned int link, nvmlEnableState_t *isActive)
{
    SIM_ENTER_DEV(nvmlDeviceGetNvLinkState, device, d);
    nvmlReturn_t r = sim_link(d, link);
    if (r != NVML_SUCCESS) return r;
    return sim_enable(isActive, 1);
}

nvmlReturn_t DECLDIR nvmlDeviceGetNvLinkVersion(nvmlDevice_t device, unsigned int link, unsigned int *version)
{
    SIM_ENTER_DEV(nvmlDeviceGetNvLinkVersion, device, d);
    nvmlReturn_t r = sim_link_cap(d, link);
    if (r != NVML_SUCCESS) return r;
    SIM_ARG(version);
    *version = (unsigned)sim_gpu_of(d)->nvlink_version;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetNvLinkCapability(nvmlDevice_t device, unsigned int link, nvmlNvLinkCapability_t capability, unsigned int *capResult)
{
    SIM_ENTER_DEV(nvmlDeviceGetNvLinkCapability, device, d);
    nvmlReturn_t r = sim_link_cap(d, link);
    if (r != NVML_SUCCESS) return r;
    SIM_ARG(capResult);
    if (capability >= NVML_NVLINK_CAP_COUNT) return NVML_ERROR_INVALID_ARGUMENT;
    int present = link < sim_gpu_of(d)->nvlink_links;
    *capResult = present && (capability == NVML_NVLINK_CAP_P2P_SUPPORTED ||
                             capability == NVML_NVLINK_CAP_P2P_ATOMICS ||
                             capability == NVML_NVLINK_CAP_SYSMEM_ACCESS ||
                             capability == NVML_NVLINK_CAP_VALID);
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetNvLinkErrorCounter(nvmlDevice_t device, unsigned int link, nvmlNvLinkErrorCounter_t counter, unsigned long long *counterValue)
{
    SIM_ENTER_DEV(nvmlDeviceGetNvLinkErrorCounter, device, d);
    nvmlReturn_t r = sim_link(d, link);
    if (r != NVML_SUCCESS) return r;
    SIM_ARG(counterValue);
    if (counter >= NVML_NVLINK_ERROR_COUNT) return NVML_ERROR_INVALID_ARGUMENT;
    /* a few CRC flit errors accumulate slowly on busy links */
    const sim_gpu_t *g = sim_gpu_of(d);
    *counterValue = counter == NVML_NVLINK_ERROR_DL_CRC_FLIT
                        ? (unsigned long long)(sim_wave_int(g, sim_time()) / 100.0 / 3600.0 *
                                               (double)(sim_hash(g->seed, 7000 + link) % 3))
                        : 0;
    return NVML_SUCCESS;
}

static nvmlReturn_t sim_remote_pci(const sim_dev_t *d, unsigned link, nvmlPciInfo_t *pci)
{
    nvmlReturn_t r = sim_link(d, link);
    if (r != NVML_SUCCESS) return r;
    SIM_ARG(pci);
    /* links lead to NVSwitches on the SXM profiles */
    memset(pci, 0, sizeof *pci);
    unsigned sw = link % 4;
    pci->domain = 0;
    pci->bus = 0xc0 + sw;
    pci->pciDeviceId = 0x22a310de;
    snprintf(pci->busId, sizeof pci->busId, "00000000:%02X:00.0", pci->bus);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "0000:%02X:00.0", pci->bus);
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetNvLinkRemotePciInfo_v2(nvmlDevice_t device, unsigned int link, nvmlPciInfo_t *pci)
{
    SIM_ENTER_DEV(nvmlDeviceGetNvLinkRemotePciInfo_v2, device, d);
    return sim_remote_pci(d, link, pci);
}

nvmlReturn_t DECLDIR nvmlDeviceGetNvLinkRemotePciInfo(nvmlDevice_t device, unsigned int link, nvmlPciInfo_t *pci)
{
    SIM_ENTER_DEV(nvmlDeviceGetNvLinkRemotePciInfo, device, d);
    SIM_ARG(pci);
    nvmlPciInfo_t p;
    nvmlReturn_t r = sim_remote_pci(d, link, &p);
    if (r == NVML_SUCCESS) sim_put_pci_legacy(&p, pci);
    return r;
}

nvmlReturn_t DECLDIR nvmlDeviceGetNvLinkRemoteDeviceType(nvmlDevice_t device, unsigned int link, nvmlIntNvLinkDeviceType_t *pNvLinkDeviceType)
{
    SIM_ENTER_DEV(nvmlDeviceGetNvLinkRemoteDeviceType, device, d);
    nvmlReturn_t r = sim_link(d, link);
    if (r != NVML_SUCCESS) return r;
    SIM_ARG(pNvLinkDeviceType);
    *pNvLinkDeviceType = NVML_NVLINK_DEVICE_TYPE_SWITCH;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetP2PStatus(nvmlDevice_t device1, nvmlDevice_t device2, nvmlGpuP2PCapsIndex_t p2pIndex, nvmlGpuP2PStatus_t *p2pStatus)
{
    SIM_ENTER_DEV(nvmlDeviceGetP2PStatus, device1, d1);
    sim_dev_t *d2 = sim_dev_of(device2);
    if (d2 == NULL || !d2->active) return NVML_ERROR_INVALID_ARGUMENT;
    if (sim_faults()->lost[d2->gpu]) return NVML_ERROR_GPU_IS_LOST;
    SIM_ARG(p2pStatus);
    if (p2pIndex > NVML_P2P_CAPS_INDEX_UNKNOWN) return NVML_ERROR_INVALID_ARGUMENT;
    if (p2pIndex == NVML_P2P_CAPS_INDEX_UNKNOWN) { /* a valid query with an unknown answer */
        *p2pStatus = NVML_P2P_STATUS_UNKNOWN;
        return NVML_SUCCESS;
    }
    const sim_gpu_t *a = sim_gpu_of(d1), *b = sim_gpu_of(d2);
    int ok;
    if (p2pIndex == NVML_P2P_CAPS_INDEX_NVLINK) ok = a->nvlink_links && b->nvlink_links;
    else if (p2pIndex == NVML_P2P_CAPS_INDEX_PROP) ok = 0;
    else ok = a->brand != NVML_BRAND_GEFORCE;
    *p2pStatus = ok ? NVML_P2P_STATUS_OK : NVML_P2P_STATUS_NOT_SUPPORTED;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetTopologyCommonAncestor(nvmlDevice_t device1, nvmlDevice_t device2, nvmlGpuTopologyLevel_t *pathInfo)
{
    SIM_ENTER_DEV(nvmlDeviceGetTopologyCommonAncestor, device1, d1);
    sim_dev_t *d2 = sim_dev_of(device2);
    if (d2 == NULL || !d2->active) return NVML_ERROR_INVALID_ARGUMENT;
    SIM_ARG(pathInfo);
    if (d1->gpu == d2->gpu) *pathInfo = NVML_TOPOLOGY_INTERNAL;
    else *pathInfo = (d1->gpu / 4 == d2->gpu / 4) ? NVML_TOPOLOGY_HOSTBRIDGE : NVML_TOPOLOGY_SYSTEM;
    return NVML_SUCCESS;
}

static nvmlReturn_t sim_affinity(const sim_dev_t *d, unsigned size, unsigned long *set)
{
    if (size == 0 || set == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    memset(set, 0, size * sizeof *set);
    const sim_gpu_t *g = sim_gpu_of(d);
    unsigned cpus = (unsigned)(g->cpu_affinity_cpus ? g->cpu_affinity_cpus : 32);
    unsigned first = (unsigned)g->numa_node * cpus;
    for (unsigned c = first; c < first + cpus && c / (8 * sizeof(unsigned long)) < size; c++)
        set[c / (8 * sizeof(unsigned long))] |= 1UL << (c % (8 * sizeof(unsigned long)));
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetCpuAffinity(nvmlDevice_t device, unsigned int cpuSetSize, unsigned long *cpuSet)
{
    SIM_ENTER_DEV(nvmlDeviceGetCpuAffinity, device, d);
    SIM_WHOLE(d);
    return sim_affinity(d, cpuSetSize, cpuSet);
}

nvmlReturn_t DECLDIR nvmlDeviceGetCpuAffinityWithinScope(nvmlDevice_t device, unsigned int cpuSetSize, unsigned long *cpuSet, nvmlAffinityScope_t scope)
{
    SIM_ENTER_DEV(nvmlDeviceGetCpuAffinityWithinScope, device, d);
    SIM_WHOLE(d);
    (void)scope;
    return sim_affinity(d, cpuSetSize, cpuSet);
}

nvmlReturn_t DECLDIR nvmlDeviceGetMemoryAffinity(nvmlDevice_t device, unsigned int nodeSetSize, unsigned long *nodeSet, nvmlAffinityScope_t scope)
{
    SIM_ENTER_DEV(nvmlDeviceGetMemoryAffinity, device, d);
    SIM_WHOLE(d);
    if (nodeSetSize == 0 || nodeSet == NULL || scope > NVML_AFFINITY_SCOPE_SOCKET)
        return NVML_ERROR_INVALID_ARGUMENT;
    memset(nodeSet, 0, nodeSetSize * sizeof *nodeSet);
    unsigned node = (unsigned)sim_gpu_of(d)->numa_node, bits = 8 * sizeof(unsigned long);
    if (node / bits < nodeSetSize) nodeSet[node / bits] |= 1UL << (node % bits);
    return NVML_SUCCESS;
}

/* ---------------------------------------------------------------- accounting, ECC default */

/* Accounting is off unless root enables it; the driver keeps 4000 records (nvidia-smi -q:
 * "Accounting Mode: Disabled", "Accounting Mode Buffer Size: 4000"). */
nvmlReturn_t DECLDIR nvmlDeviceGetAccountingMode(nvmlDevice_t device, nvmlEnableState_t *mode)
{
    SIM_ENTER_DEV(nvmlDeviceGetAccountingMode, device, d);
    (void)d;
    return sim_enable(mode, 0);
}

nvmlReturn_t DECLDIR nvmlDeviceGetAccountingBufferSize(nvmlDevice_t device, unsigned int *bufferSize)
{
    SIM_ENTER_DEV(nvmlDeviceGetAccountingBufferSize, device, d);
    (void)d;
    SIM_ARG(bufferSize);
    *bufferSize = 4000;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetDefaultEccMode(nvmlDevice_t device, nvmlEnableState_t *defaultMode)
{
    SIM_ENTER_DEV(nvmlDeviceGetDefaultEccMode, device, d);
    SIM_WHOLE(d);
    SIM_ARG(defaultMode);
    const sim_gpu_t *g = sim_gpu_of(d);
    if (!g->ecc_supported) return NVML_ERROR_NOT_SUPPORTED;
    /* the factory default: on for data-center boards, off for GeForce */
    *defaultMode = g->brand == NVML_BRAND_GEFORCE ? NVML_FEATURE_DISABLED : NVML_FEATURE_ENABLED;
    return NVML_SUCCESS;
}

/* ---------------------------------------------------------------- supported clocks */

/* Memory clocks, highest first: the peak, then the idle clock where it differs (HBM parts
 * run one memory clock). */
static unsigned sim_mem_clocks(const sim_gpu_t *g, unsigned out[2])
{
    unsigned n = 0;
    out[n++] = (unsigned)g->clock_mem_max;
    if (g->clock_mem_idle && g->clock_mem_idle != g->clock_mem_max) out[n++] = (unsigned)g->clock_mem_idle;
    return n;
}

static nvmlReturn_t sim_put_clocks(unsigned *count, unsigned *clocks, const unsigned *v, unsigned n)
{
    SIM_ARG(count);
    if (clocks == NULL || *count < n) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    memcpy(clocks, v, n * sizeof *v);
    *count = n;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetSupportedMemoryClocks(nvmlDevice_t device, unsigned int *count, unsigned int *clocksMHz)
{
    SIM_ENTER_DEV(nvmlDeviceGetSupportedMemoryClocks, device, d);
    SIM_WHOLE(d);
    unsigned v[2];
    unsigned n = sim_mem_clocks(sim_gpu_of(d), v);
    return sim_put_clocks(count, clocksMHz, v, n);
}

/* Graphics clocks for a memory clock: the peak down to the idle clock in 15 MHz steps at the
 * peak memory clock (as nvidia-smi -q -d SUPPORTED_CLOCKS lists them), the idle clock alone at
 * a lower memory clock. */
nvmlReturn_t DECLDIR nvmlDeviceGetSupportedGraphicsClocks(nvmlDevice_t device, unsigned int memoryClockMHz, unsigned int *count, unsigned int *clocksMHz)
{
    SIM_ENTER_DEV(nvmlDeviceGetSupportedGraphicsClocks, device, d);
    SIM_WHOLE(d);
    const sim_gpu_t *g = sim_gpu_of(d);
    unsigned mem[2], v[512], n = 0;
    unsigned nm = sim_mem_clocks(g, mem);
    if (memoryClockMHz == mem[0]) {
        for (long long c = (long long)g->clock_sm_max; c >= (long long)g->clock_sm_idle && n < 512; c -= 15)
            v[n++] = (unsigned)c;
    } else if (nm > 1 && memoryClockMHz == mem[1]) {
        v[n++] = (unsigned)g->clock_sm_idle;
    } else {
        return NVML_ERROR_NOT_FOUND;
    }
    return sim_put_clocks(count, clocksMHz, v, n);
}

/* ---------------------------------------------------------------- row remapper histogram */

nvmlReturn_t DECLDIR nvmlDeviceGetRowRemapperHistogram(nvmlDevice_t device, nvmlRowRemapperHistogramValues_t *values)
{
    SIM_ENTER_DEV(nvmlDeviceGetRowRemapperHistogram, device, d);
    SIM_WHOLE(d);
    SIM_ARG(values);
    const sim_gpu_t *g = sim_gpu_of(d);
    if (!g->row_remap) return NVML_ERROR_NOT_SUPPORTED;
    /* every bank keeps all its spare rows unless rows were remapped; each remapped row takes
     * one spare from a bank, moving it from "max" to "high" availability */
    unsigned banks = (unsigned)g->remap_banks;
    unsigned used = (unsigned)(g->remap_cor + g->remap_unc);
    if (used > banks) used = banks;
    memset(values, 0, sizeof *values);
    values->max = banks - used;
    values->high = used;
    return NVML_SUCCESS;
}

/* ---------------------------------------------------------------- GSP firmware, module id */

nvmlReturn_t DECLDIR nvmlDeviceGetGspFirmwareVersion(nvmlDevice_t device, char *version)
{
    SIM_ENTER_DEV(nvmlDeviceGetGspFirmwareVersion, device, d);
    SIM_WHOLE(d);
    SIM_ARG(version);
    if (!sim_gpu_of(d)->gsp) return NVML_ERROR_NOT_SUPPORTED;
    /* the GSP firmware ships with the driver and carries its version */
    snprintf(version, NVML_GSP_FIRMWARE_VERSION_BUF_SIZE, "%.63s", sim.driver_version);
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetGspFirmwareMode(nvmlDevice_t device, unsigned int *isEnabled, unsigned int *defaultMode)
{
    SIM_ENTER_DEV(nvmlDeviceGetGspFirmwareMode, device, d);
    SIM_WHOLE(d);
    SIM_ARG(isEnabled);
    SIM_ARG(defaultMode);
    unsigned on = sim_gpu_of(d)->gsp ? 1u : 0u;
    *isEnabled = on;
    *defaultMode = on;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetModuleId(nvmlDevice_t device, unsigned int *moduleId)
{
    SIM_ENTER_DEV(nvmlDeviceGetModuleId, device, d);
    SIM_WHOLE(d);
    SIM_ARG(moduleId);
    *moduleId = (unsigned)sim_gpu_of(d)->module_id; /* 0 for products without a baseboard */
    return NVML_SUCCESS;
}
