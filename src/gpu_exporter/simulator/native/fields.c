/*
 * Simulated NVML: nvmlDeviceGetFieldValues (per-entry status, value type and timestamp).
 */
#include "sim.h"

#include <limits.h>

#define V_U NVML_VALUE_TYPE_UNSIGNED_INT
#define V_ULL NVML_VALUE_TYPE_UNSIGNED_LONG_LONG

static void set_u(nvmlFieldValue_t *v, unsigned long long x)
{
    v->valueType = V_U;
    v->value.uiVal = (unsigned)x;
}

static void set_ull(nvmlFieldValue_t *v, unsigned long long x)
{
    v->valueType = V_ULL;
    v->value.ullVal = x;
}

static unsigned long long sim_link_sum(const sim_gpu_t *g, double tau, unsigned scope, int rx, int raw)
{
    if (scope != UINT_MAX) return sim_nvlink_kib(g, tau, (int)scope, rx, raw);
    unsigned long long s = 0;
    for (unsigned l = 0; l < g->nvlink_links; l++) s += sim_nvlink_kib(g, tau, (int)l, rx, raw);
    return s;
}

/* Fill one entry; return its nvmlReturn. */
static nvmlReturn_t sim_field(const sim_dev_t *d, const sim_now_t *n, nvmlFieldValue_t *v)
{
    const sim_gpu_t *g = sim_gpu_of(d);
    unsigned id = v->fieldId;
    if (d->slot >= 0 || sim_field_unsupported(d, id)) return NVML_ERROR_NOT_SUPPORTED;
    nvmlReturn_t injected = sim_field_error(d, id);
    if (injected != NVML_SUCCESS) return injected;
    int ecc = g->ecc_supported && g->ecc_enabled;
    int links = g->nvlink_links > 0;
    unsigned scope = v->scopeId;
    if (links && scope != UINT_MAX && scope >= g->nvlink_links &&
        (id == NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX || id == NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX ||
         id == NVML_FI_DEV_NVLINK_THROUGHPUT_RAW_TX || id == NVML_FI_DEV_NVLINK_THROUGHPUT_RAW_RX ||
         id == NVML_FI_DEV_NVLINK_GET_STATE || id == NVML_FI_DEV_NVLINK_GET_VERSION ||
         id == NVML_FI_DEV_NVLINK_GET_SPEED))
        return NVML_ERROR_INVALID_ARGUMENT;
    switch (id) {
    case NVML_FI_DEV_ECC_CURRENT:
    case NVML_FI_DEV_ECC_PENDING:
        if (!g->ecc_supported) return NVML_ERROR_NOT_SUPPORTED;
        set_u(v, g->ecc_enabled);
        return NVML_SUCCESS;
    case NVML_FI_DEV_ECC_SBE_VOL_TOTAL:
    case NVML_FI_DEV_ECC_DBE_VOL_TOTAL:
    case NVML_FI_DEV_ECC_SBE_AGG_TOTAL:
    case NVML_FI_DEV_ECC_DBE_AGG_TOTAL:
    case NVML_FI_DEV_ECC_SBE_VOL_DEV:
    case NVML_FI_DEV_ECC_DBE_VOL_DEV:
    case NVML_FI_DEV_ECC_SBE_AGG_DEV:
    case NVML_FI_DEV_ECC_DBE_AGG_DEV: {
        if (!ecc) return NVML_ERROR_NOT_SUPPORTED;
        int dbe = id == NVML_FI_DEV_ECC_DBE_VOL_TOTAL || id == NVML_FI_DEV_ECC_DBE_AGG_TOTAL ||
                  id == NVML_FI_DEV_ECC_DBE_VOL_DEV || id == NVML_FI_DEV_ECC_DBE_AGG_DEV;
        int agg = id == NVML_FI_DEV_ECC_SBE_AGG_TOTAL || id == NVML_FI_DEV_ECC_DBE_AGG_TOTAL ||
                  id == NVML_FI_DEV_ECC_SBE_AGG_DEV || id == NVML_FI_DEV_ECC_DBE_AGG_DEV;
        set_ull(v, sim_ecc(g, d->gpu, dbe, agg));
        return NVML_SUCCESS;
    }
    case NVML_FI_DEV_ECC_SBE_VOL_L1: case NVML_FI_DEV_ECC_DBE_VOL_L1:
    case NVML_FI_DEV_ECC_SBE_VOL_L2: case NVML_FI_DEV_ECC_DBE_VOL_L2:
    case NVML_FI_DEV_ECC_SBE_VOL_REG: case NVML_FI_DEV_ECC_DBE_VOL_REG:
    case NVML_FI_DEV_ECC_SBE_VOL_TEX: case NVML_FI_DEV_ECC_DBE_VOL_TEX:
    case NVML_FI_DEV_ECC_SBE_AGG_L1: case NVML_FI_DEV_ECC_DBE_AGG_L1:
    case NVML_FI_DEV_ECC_SBE_AGG_L2: case NVML_FI_DEV_ECC_DBE_AGG_L2:
    case NVML_FI_DEV_ECC_SBE_AGG_REG: case NVML_FI_DEV_ECC_DBE_AGG_REG:
    case NVML_FI_DEV_ECC_SBE_AGG_TEX: case NVML_FI_DEV_ECC_DBE_AGG_TEX:
        if (!ecc) return NVML_ERROR_NOT_SUPPORTED;
        set_ull(v, 0);
        return NVML_SUCCESS;
    case NVML_FI_DEV_RETIRED_SBE:
    case NVML_FI_DEV_RETIRED_DBE:
    case NVML_FI_DEV_RETIRED_PENDING:
    case NVML_FI_DEV_RETIRED_PENDING_SBE:
    case NVML_FI_DEV_RETIRED_PENDING_DBE:
        if (!g->page_retirement) return NVML_ERROR_NOT_SUPPORTED;
        set_ull(v, id == NVML_FI_DEV_RETIRED_SBE   ? g->retired_sbe
                   : id == NVML_FI_DEV_RETIRED_DBE ? g->retired_dbe
                   : id == NVML_FI_DEV_RETIRED_PENDING ? g->retired_pending
                                                       : 0);
        return NVML_SUCCESS;
    case NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL:
    case NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL:
    case NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL:
    case NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL:
    case NVML_FI_DEV_NVLINK_ECC_DATA_ERROR_COUNT_TOTAL:
        if (!links) return NVML_ERROR_NOT_SUPPORTED;
        set_ull(v, id == NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL
                       ? (unsigned long long)(n->util_int / 100.0 / 3600.0)
                       : 0);
        return NVML_SUCCESS;
    case NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX:
    case NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX:
    case NVML_FI_DEV_NVLINK_THROUGHPUT_RAW_TX:
    case NVML_FI_DEV_NVLINK_THROUGHPUT_RAW_RX:
        if (!links) return NVML_ERROR_NOT_SUPPORTED;
        set_ull(v, sim_link_sum(g, n->tau, scope,
                                id == NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX ||
                                    id == NVML_FI_DEV_NVLINK_THROUGHPUT_RAW_RX,
                                id >= NVML_FI_DEV_NVLINK_THROUGHPUT_RAW_TX));
        return NVML_SUCCESS;
    case NVML_FI_DEV_NVLINK_LINK_COUNT:
        if (!links) return NVML_ERROR_NOT_SUPPORTED;
        set_u(v, g->nvlink_links);
        return NVML_SUCCESS;
    case NVML_FI_DEV_NVLINK_SPEED_MBPS_COMMON:
    case NVML_FI_DEV_NVLINK_GET_SPEED:
        if (!links) return NVML_ERROR_NOT_SUPPORTED;
        set_u(v, g->nvlink_link_mbps);
        return NVML_SUCCESS;
    case NVML_FI_DEV_NVLINK_GET_STATE:
        if (!links) return NVML_ERROR_NOT_SUPPORTED;
        set_u(v, 1);
        return NVML_SUCCESS;
    case NVML_FI_DEV_NVLINK_GET_VERSION:
        if (!links) return NVML_ERROR_NOT_SUPPORTED;
        set_u(v, g->nvlink_version);
        return NVML_SUCCESS;
    case NVML_FI_DEV_PERF_POLICY_POWER:
    case NVML_FI_DEV_PERF_POLICY_THERMAL:
    case NVML_FI_DEV_PERF_POLICY_SYNC_BOOST:
    case NVML_FI_DEV_PERF_POLICY_BOARD_LIMIT:
    case NVML_FI_DEV_PERF_POLICY_LOW_UTILIZATION:
    case NVML_FI_DEV_PERF_POLICY_RELIABILITY:
        set_ull(v, sim_violation_ns(g, n->tau, (int)(id - NVML_FI_DEV_PERF_POLICY_POWER)));
        return NVML_SUCCESS;
    case NVML_FI_DEV_PERF_POLICY_TOTAL_APP_CLOCKS:
        set_ull(v, sim_violation_ns(g, n->tau, NVML_PERF_POLICY_TOTAL_APP_CLOCKS));
        return NVML_SUCCESS;
    case NVML_FI_DEV_PERF_POLICY_TOTAL_BASE_CLOCKS:
        set_ull(v, sim_violation_ns(g, n->tau, NVML_PERF_POLICY_TOTAL_BASE_CLOCKS));
        return NVML_SUCCESS;
    case NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_THERM_SLOWDOWN:
        set_ull(v, sim_violation_ns(g, n->tau, NVML_PERF_POLICY_THERMAL));
        return NVML_SUCCESS;
    case NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_THERM_SLOWDOWN:
    case NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_POWER_BRAKE_SLOWDOWN:
        set_ull(v, 0);
        return NVML_SUCCESS;
    case NVML_FI_DEV_MEMORY_TEMP:
        if (!g->mem_temp) return NVML_ERROR_NOT_SUPPORTED;
        set_u(v, (unsigned long long)lround(n->mem_temp));
        return NVML_SUCCESS;
    case NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION:
        set_ull(v, (unsigned long long)n->energy_mj);
        return NVML_SUCCESS;
    case NVML_FI_DEV_PCIE_REPLAY_COUNTER:
        set_ull(v, g->pcie_replay);
        return NVML_SUCCESS;
    case NVML_FI_DEV_PCIE_REPLAY_ROLLOVER_COUNTER:
        set_ull(v, 0);
        return NVML_SUCCESS;
    case NVML_FI_DEV_REMAPPED_COR:
    case NVML_FI_DEV_REMAPPED_UNC:
    case NVML_FI_DEV_REMAPPED_PENDING:
    case NVML_FI_DEV_REMAPPED_FAILURE:
        if (!g->row_remap) return NVML_ERROR_NOT_SUPPORTED;
        set_u(v, id == NVML_FI_DEV_REMAPPED_COR   ? g->remap_cor
                 : id == NVML_FI_DEV_REMAPPED_UNC ? g->remap_unc
                 : id == NVML_FI_DEV_REMAPPED_PENDING ? g->remap_pending
                                                      : g->remap_failure);
        return NVML_SUCCESS;
    case NVML_FI_DEV_POWER_AVERAGE:
    case NVML_FI_DEV_POWER_INSTANT:
        if (scope != 0) return NVML_ERROR_NOT_SUPPORTED; /* GPU scope only */
        if (id == NVML_FI_DEV_POWER_AVERAGE && !g->power_average_field) return NVML_ERROR_NOT_SUPPORTED;
        set_u(v, (unsigned long long)lround(n->power_mw));
        return NVML_SUCCESS;
    case NVML_FI_DEV_POWER_MIN_LIMIT:
        set_u(v, g->power_min_mw);
        return NVML_SUCCESS;
    case NVML_FI_DEV_POWER_MAX_LIMIT:
        set_u(v, g->power_max_mw);
        return NVML_SUCCESS;
    case NVML_FI_DEV_POWER_DEFAULT_LIMIT:
    case NVML_FI_DEV_POWER_CURRENT_LIMIT:
    case NVML_FI_DEV_POWER_REQUESTED_LIMIT:
        set_u(v, g->power_default_mw);
        return NVML_SUCCESS;
    case NVML_FI_DEV_TEMPERATURE_SHUTDOWN_TLIMIT:
        set_u(v, g->temp_shutdown);
        return NVML_SUCCESS;
    case NVML_FI_DEV_TEMPERATURE_SLOWDOWN_TLIMIT:
        set_u(v, g->temp_slowdown);
        return NVML_SUCCESS;
    case NVML_FI_DEV_TEMPERATURE_MEM_MAX_TLIMIT:
        if (!g->mem_temp) return NVML_ERROR_NOT_SUPPORTED;
        set_u(v, g->temp_mem_max);
        return NVML_SUCCESS;
    case NVML_FI_DEV_TEMPERATURE_GPU_MAX_TLIMIT:
        set_u(v, g->temp_gpu_max);
        return NVML_SUCCESS;
    case NVML_FI_DEV_PCIE_COUNT_TX_BYTES:
    case NVML_FI_DEV_PCIE_COUNT_RX_BYTES:
        if (g->arch < NVML_DEVICE_ARCH_HOPPER) return NVML_ERROR_NOT_SUPPORTED;
        set_ull(v, sim_pcie_bytes(g, n->tau, id == NVML_FI_DEV_PCIE_COUNT_RX_BYTES));
        return NVML_SUCCESS;
    default:
        return NVML_ERROR_NOT_SUPPORTED;
    }
}

nvmlReturn_t DECLDIR nvmlDeviceGetFieldValues(nvmlDevice_t device, int valuesCount, nvmlFieldValue_t *values)
{
    SIM_ENTER_DEV(nvmlDeviceGetFieldValues, device, d);
    if (values == NULL || valuesCount <= 0) return NVML_ERROR_INVALID_ARGUMENT;
    sim_now_t n;
    sim_eval(d, sim_time(), &n);
    long long ts = sim_timestamp_us();
    for (int i = 0; i < valuesCount; i++) {
        nvmlFieldValue_t *v = &values[i];
        v->timestamp = ts;
        v->latencyUsec = 0;
        v->valueType = V_ULL;
        memset(&v->value, 0, sizeof v->value);
        v->nvmlReturn = sim_field(d, &n, v);
    }
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceClearFieldValues(nvmlDevice_t device, int valuesCount, nvmlFieldValue_t *values)
{
    SIM_ENTER_DEV(nvmlDeviceClearFieldValues, device, d);
    (void)d;
    if (values == NULL || valuesCount <= 0) return NVML_ERROR_INVALID_ARGUMENT;
    for (int i = 0; i < valuesCount; i++) values[i].nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
    return NVML_SUCCESS;
}
