/*
 * Simulated NVML: shared internal declarations.
 *
 * The library reads a resolved configuration written by gpu_exporter.simulator into
 * $GPU_SIM_DIR/config at nvmlInit, re-reads $GPU_SIM_DIR/faults whenever it changes
 * (checked at most every 100 ms), counts calls per function in the mmap'd file
 * $GPU_SIM_DIR/calls.bin and derives every dynamic value from the simulated time.
 */
#ifndef SIM_H
#define SIM_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nvml.h"
#include "sim_fn_gen.h"

#define SIM_MAX_GPUS 64
#define SIM_MAX_MIG 7 /* = nvmlDeviceGetMaxMigDeviceCount (seven slices, one GI each) */
/* Device slots per GPU: the whole GPU, then two banks of MIG devices. A MIG reconfiguration
 * writes the bank not in use and then switches, so a call still reading the previous layout
 * (it passed the "active" check before the switch) reads unchanged memory. */
#define SIM_DEV_STRIDE (1 + 2 * SIM_MAX_MIG)
#define SIM_MAX_GIP 12
#define SIM_STR 96
#define SIM_FIELD_MAX 512
#define SIM_FN_WORDS ((FN__COUNT + 63) / 64)
#define SIM_FIELD_WORDS (SIM_FIELD_MAX / 64)
#define SIM_MAX_LINKS 18
#define SIM_MAX_PROCS 8
/* Scripted processes (FaultInjector.add_process): records, live and ended, in a state dir;
 * live ones per GPU; entries one process list can return; process-utilisation buffer depth. */
#define SIM_MAX_SPROCS 1024
#define SIM_MAX_GPU_SPROCS 64
#define SIM_LIST_MAX (SIM_MAX_GPU_SPROCS + 8)
#define SIM_PSAMPLE_DEPTH 120
#define SIM_PSAMPLE_PERIOD_US 166666LL
#define SIM_WAVES 4

/* One GPU instance profile (nvidia-smi mig -lgip row). */
typedef struct {
    char name[32];
    unsigned cnst, id, slices, count, mem_mib, sm, ce, dec, enc, jpg, ofa;
    unsigned mem_slices, starts; /* placement size (of 8 memory slices), bitmask of starts */
} sim_gip_t;

/* One MIG device (one GPU instance with one compute instance spanning it). */
typedef struct {
    char profile[32];
    unsigned gip_const, gip_id, gi, ci, start, size, mem_mib, sm, ce, dec, enc, jpg, ofa;
} sim_mig_t;

/* Per-GPU configuration keys: S = string, U = unsigned integer, D = double. */
#define SIM_GPU_FIELDS(S, U, D)                                                                \
    S(name) S(uuid) S(serial) S(part_number) S(vbios) S(inforom_image) S(inforom_oem)         \
    S(inforom_ecc) S(inforom_pwr) S(bus_id)                                                    \
    U(brand) U(arch) U(cc_major) U(cc_minor) U(pci_device_id) U(pci_subsystem_id)              \
    U(pci_domain) U(pci_bus) U(pci_device) U(minor) U(board_id) U(multi_gpu_board)             \
    U(mem_total_mib) U(mem_reserved_mib) U(bar1_total_mib) U(mem_bus_width)                    \
    U(power_default_mw) U(power_min_mw) U(power_max_mw) U(power_idle_mw) U(power_peak_mw)      \
    U(power_average_field)                                                                     \
    U(clock_sm_max) U(clock_mem_max) U(clock_video_max) U(clock_sm_idle) U(clock_mem_idle)     \
    U(clock_sm_base) U(clock_video_idle)                                                       \
    U(temp_ambient) U(temp_load) U(temp_slowdown) U(temp_shutdown) U(temp_gpu_max)             \
    U(temp_mem_max) U(mem_temp) U(mem_temp_offset)                                             \
    U(sm_count) U(pcie_gen) U(pcie_width) U(pcie_max_gen) U(pcie_max_width)                   \
    U(pcie_peak_mbps) U(pcie_replay)                                                           \
    U(nvlink_links) U(nvlink_version) U(nvlink_link_mbps)                                      \
    U(ecc_supported) U(ecc_enabled) U(page_retirement) U(row_remap) U(retired_sbe)             \
    U(retired_dbe) U(retired_pending) U(remap_cor) U(remap_unc) U(remap_pending)               \
    U(remap_failure) U(ecc_sbe_agg) U(ecc_dbe_agg) U(ecc_sbe_vol) U(ecc_dbe_vol)               \
    U(gpm) U(mig_capable) U(mig_enabled) U(fans) U(fan_idle) U(fan_load) U(encoder)            \
    U(decoder) U(display) U(procs) U(mps) U(graphics_procs) U(persistence) U(compute_mode)     \
    U(numa_node) U(cpu_affinity_cpus) U(module_id) U(gsp) U(remap_banks)                      \
    D(util_mean) D(util_amp) D(util_period)

#define SIM_DECL_S(n) char n[SIM_STR];
#define SIM_DECL_U(n) unsigned long long n;
#define SIM_DECL_D(n) double n;

/* One sinusoid of a workload wave. */
typedef struct {
    double amp, omega, phase;
    double lag_amp, lag_phase; /* after the first-order thermal lag (precomputed) */
} sim_sine_t;

typedef struct sim_gpu {
    SIM_GPU_FIELDS(SIM_DECL_S, SIM_DECL_U, SIM_DECL_D)
    uint64_t unsup_fn[SIM_FN_WORDS];       /* NOT_SUPPORTED by the profile */
    uint64_t unsup_field[SIM_FIELD_WORDS]; /* NOT_SUPPORTED field ids by the profile */
    unsigned ngip;
    sim_gip_t gip[SIM_MAX_GIP];
    unsigned nmig; /* MIG devices from the profile (the faults file may override) */
    sim_mig_t mig[SIM_MAX_MIG];
    /* derived at init */
    uint64_t seed;
    sim_sine_t wave[SIM_WAVES];
    double link_tx[SIM_MAX_LINKS], link_rx[SIM_MAX_LINKS];
} sim_gpu_t;

/*
 * Layouts that the unversioned (legacy) entry points imply. The current nvml.h declares them
 * with today's structs, but a caller of the old symbol passes the struct of its own era, so
 * the library writes only this much:
 * - nvmlDeviceGetPciInfo / _v2, nvmlDeviceGetNvLinkRemotePciInfo: nvmlPciInfo_t before _v3
 *   (busId[16] in the legacy "%04X:%02X:%02X.0" format, five uints, four reserved uints:
 *   52 bytes; the first 36 bytes coincide with today's busIdLegacy .. pciSubSystemId);
 * - nvmlEventSetWait: nvmlEventData_t before _v2 added gpuInstanceId/computeInstanceId;
 * - nvmlDeviceGetAttributes: nvmlDeviceAttributes_t before _v2 added the slice counts and
 *   memorySizeMB (six uints);
 * - nvmlComputeInstanceGetInfo: nvmlComputeInstanceInfo_t before _v2 added the placement.
 */
typedef struct {
    char busId[NVML_DEVICE_PCI_BUS_ID_BUFFER_V2_SIZE];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    unsigned int reserved[4];
} sim_pci_legacy_t;
#define SIM_PCI_LEGACY_SIZE 52
#define SIM_EVENT_DATA_V1_SIZE offsetof(nvmlEventData_t, gpuInstanceId)
#define SIM_ATTRIBUTES_V1_SIZE offsetof(nvmlDeviceAttributes_t, gpuInstanceSliceCount)
#define SIM_CI_INFO_V1_SIZE offsetof(nvmlComputeInstanceInfo_t, placement)
_Static_assert(sizeof(sim_pci_legacy_t) == SIM_PCI_LEGACY_SIZE, "legacy nvmlPciInfo_t is 52 bytes");
_Static_assert(offsetof(sim_pci_legacy_t, pciSubSystemId) == offsetof(nvmlPciInfo_t, pciSubSystemId),
               "legacy and current nvmlPciInfo_t share their first fields");
_Static_assert(SIM_EVENT_DATA_V1_SIZE == 24, "nvmlEventData_t v1 is 24 bytes");
_Static_assert(SIM_ATTRIBUTES_V1_SIZE == 24, "nvmlDeviceAttributes_t v1 is 24 bytes");
_Static_assert(SIM_CI_INFO_V1_SIZE == 24, "nvmlComputeInstanceInfo_t v1 is 24 bytes");

/* A device handle: the whole GPU or one MIG device. */
typedef struct sim_dev {
    int gpu;  /* index of the physical GPU */
    int slot; /* -1 for the whole GPU, else the MIG device index */
    int active;
    sim_mig_t mig;
    char name[SIM_STR];
    char uuid[SIM_STR];
    double share; /* MIG: fraction of the parent's activity */
} sim_dev_t;

/* GPU instance and compute instance handles point at these. */
typedef struct nvmlGpuInstance_st {
    sim_dev_t *mig;
} sim_gi_handle_t;
typedef struct nvmlComputeInstance_st {
    sim_dev_t *mig;
} sim_ci_handle_t;

/* Immutable snapshot of the injected faults (replaced as a whole on every reload). */
typedef struct {
    int dev; /* -1 = every device */
    int fn;  /* FN_* or -1 = every function */
    double seconds;
    int hang;
} sim_delay_t;

typedef struct {
    int dev;
    unsigned code, gi, ci;
    unsigned long long seq;
} sim_xid_t;

/* An injected return code for a function or a field-value entry. */
typedef struct {
    int dev;   /* -1 = every device */
    int fn;    /* FN_* or -1 when this is a field error */
    int field; /* field id or -1 */
    unsigned code;
} sim_error_t;

/* One scripted process: on GPU gpu (GPU instance gi, -1 = none), running from start_us until
 * end_us (0 = still running), wall-clock microseconds. */
typedef struct {
    int gpu, gi;
    unsigned pid, kind; /* 0 compute, 1 graphics, 2 MPS client */
    unsigned long long mem;
    unsigned sm, mu, enc, dec;
    long long start_us, end_us;
} sim_sproc_t;

/* Utilisation integral of a scripted track after each start/end event. */
typedef struct {
    long long t;
    double integral; /* percent * microseconds since the GPU became scripted */
    double level;    /* utilisation from t on */
} sim_tev_t;

/* A scripted GPU (gi -1) or GPU instance: its events and the levels of its running processes. */
typedef struct {
    int gpu, gi;
    int off, n;
    double sm, mu, enc, dec;
} sim_track_t;

#define SIM_MAX_TRACKS (SIM_MAX_GPUS * (1 + SIM_MAX_MIG))
#define SIM_MAX_TEV (4 * SIM_MAX_SPROCS)

#define SIM_MAX_ERRORS 64
#define SIM_MAX_DELAYS 64
#define SIM_MAX_XIDS 256
typedef struct {
    unsigned char lost[SIM_MAX_GPUS];
    uint64_t unsup_fn[SIM_MAX_GPUS + 1][SIM_FN_WORDS];
    uint64_t unsup_field[SIM_MAX_GPUS + 1][SIM_FIELD_WORDS];
    unsigned long long ecc_sbe[SIM_MAX_GPUS], ecc_dbe[SIM_MAX_GPUS];
    int ndelay;
    sim_delay_t delay[SIM_MAX_DELAYS];
    int nerror;
    sim_error_t error[SIM_MAX_ERRORS];
    int nxid;
    sim_xid_t xid[SIM_MAX_XIDS];
    int mig_set[SIM_MAX_GPUS]; /* 1 = MIG layout overridden below */
    unsigned nmig[SIM_MAX_GPUS];
    sim_mig_t mig[SIM_MAX_GPUS][SIM_MAX_MIG];
    long long script_t0[SIM_MAX_GPUS]; /* 0: seeded processes; else when scripting began */
    int nsproc;
    sim_sproc_t sproc[SIM_MAX_SPROCS];
    /* the records of GPU g: sproc[gproc[j]] for gproc_off[g] <= j < gproc_off[g + 1], in file
     * order (built with the tracks: a process call walks its GPU's records, not every one) */
    short gproc_off[SIM_MAX_GPUS + 1];
    short gproc[SIM_MAX_SPROCS];
    int ntrack;
    sim_track_t track[SIM_MAX_TRACKS];
    int ntev;
    sim_tev_t tev[SIM_MAX_TEV];
} sim_faults_t;

typedef struct {
    int initialized; /* nvmlInit reference count */
    char dir[4096];
    char driver_version[SIM_STR];
    char nvml_version[SIM_STR];
    unsigned long long cuda_version;
    unsigned long long seed;
    double frozen; /* < 0: time runs */
    double uptime; /* seconds the simulated driver had been loaded at nvmlInit */
    double t_init; /* CLOCK_MONOTONIC at the first nvmlInit */
    unsigned ngpu;
    sim_gpu_t gpu[SIM_MAX_GPUS];
    sim_dev_t dev[SIM_MAX_GPUS * SIM_DEV_STRIDE];
    sim_gi_handle_t gi_h[SIM_MAX_GPUS * SIM_DEV_STRIDE];
    sim_ci_handle_t ci_h[SIM_MAX_GPUS * SIM_DEV_STRIDE];
    const sim_faults_t *faults;
    pthread_mutex_t lock;
} sim_state_t;

extern sim_state_t sim;

/* Dynamic values of one device at one instant. */
typedef struct {
    double tau;       /* simulated seconds since driver load */
    double util;      /* 0..100 */
    double util_int;  /* integral of util over [0, tau] (percent * s) */
    double power_mw;
    double energy_mj;
    double temp, mem_temp;
    double sm_clock, mem_clock, video_clock;
    double mem_util, enc_util, dec_util;
    unsigned long long reasons;
} sim_now_t;

/* core.c */
void sim_count(int fn);
void sim_tick(void);
extern int sim_faults_watched; /* events.c's watcher reloads the faults file (core.c) */
void sim_delay(int fn, int dev);
double sim_time(void);
long long sim_timestamp_us(void);
const sim_faults_t *sim_faults(void);
nvmlReturn_t sim_stub(int fn, nvmlDevice_t device);
nvmlReturn_t sim_enter(int fn);
nvmlReturn_t sim_enter_dev(int fn, nvmlDevice_t h, sim_dev_t **out);
int sim_fn_lookup(const char *name);
sim_dev_t *sim_dev_of(nvmlDevice_t h);
nvmlDevice_t sim_handle(sim_dev_t *d);
sim_gpu_t *sim_gpu_of(const sim_dev_t *d);
int sim_field_unsupported(const sim_dev_t *d, unsigned field);
nvmlReturn_t sim_field_error(const sim_dev_t *d, unsigned field);
sim_dev_t *sim_whole(int gpu);
sim_dev_t *sim_mig_slot(int gpu, unsigned j);
int sim_mig_enabled(int gpu);
unsigned sim_mig_n(int gpu);
uint64_t sim_hash(uint64_t a, uint64_t b);
void sim_apply_mig(int gpu, unsigned n, const sim_mig_t *mig);
int sim_parse_mig(const char *s, sim_mig_t *m);
nvmlReturn_t sim_copy_str(char *dst, unsigned len, const char *src);

/* dyn.c */
void sim_eval(const sim_dev_t *d, double tau, sim_now_t *out);
void sim_eval_util(const sim_dev_t *d, double tau, sim_now_t *out);
double sim_wave(const sim_gpu_t *g, double tau);
double sim_wave_int(const sim_gpu_t *g, double tau);
unsigned long long sim_pcie_bytes(const sim_gpu_t *g, double tau, int rx);
unsigned long long sim_nvlink_kib(const sim_gpu_t *g, double tau, int link, int rx, int raw);
unsigned long long sim_violation_ns(const sim_gpu_t *g, double tau, int policy);
unsigned long long sim_ecc(const sim_gpu_t *g, int gpu, int dbe, int aggregate);

/* processes (procs.c) */
typedef struct {
    unsigned pid;
    unsigned long long mem;
    unsigned gi, ci;
    double sm_share;
    int graphics, mps;
} sim_proc_t;
unsigned sim_procs(const sim_dev_t *d, double tau, sim_proc_t *out, unsigned max);
unsigned long long sim_mem_used(const sim_dev_t *d, double tau);
void sim_build_tracks(sim_faults_t *fl);
int sim_script_util(const sim_dev_t *d, double tau, int whole, double *u, double *ui, double *mu,
                    double *enc, double *dec);

/* events.c */
void sim_events_route(void);
void sim_events_mig_changed(int gpu);

#define SIM_ENTER(fn)                                 \
    do {                                              \
        nvmlReturn_t _r = sim_enter(FN_##fn);         \
        if (_r != NVML_SUCCESS) return _r;            \
    } while (0)

#define SIM_ENTER_DEV(fn, h, d)                           \
    sim_dev_t *d;                                         \
    do {                                                  \
        nvmlReturn_t _r = sim_enter_dev(FN_##fn, (h), &d); \
        if (_r != NVML_SUCCESS) return _r;                \
    } while (0)

#define SIM_CHECK_VERSION(ptr, expected)                                   \
    do {                                                                   \
        if ((ptr) == NULL) return NVML_ERROR_INVALID_ARGUMENT;             \
        if ((ptr)->version != (expected)) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH; \
    } while (0)

#endif
