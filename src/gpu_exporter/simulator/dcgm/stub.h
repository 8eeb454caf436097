/*
 * Stub libdcgm.so.4: our own declarations of the part of DCGM's client API that the exporter
 * calls, written from DCGM's public headers (NVIDIA/DCGM 72fa3fe, DCGM 4.6.0). Every constant
 * and layout cites the header line it comes from; _Static_asserts pin the sizes that DCGM's
 * version words encode (MAKE_DCGM_VERSION = sizeof | version << 24, dcgm_structs.h:37).
 *
 * The stub behaves like a host engine reached over a real socket: it loads the process's
 * libnvidia-ml.so.1 (in tests the simulated one) to enumerate GPUs and MIG instances and to
 * derive profiling values, and reads its behaviour control file from $GPU_SIM_DCGM_CONFIG.
 */
#ifndef DCGM_STUB_H
#define DCGM_STUB_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>

#include "nvml.h"

#define DCGM_API __attribute__((visibility("default")))

/* dcgmReturn_t (dcgm_structs.h:344-416) */
typedef enum {
    DCGM_ST_OK = 0,
    DCGM_ST_BADPARAM = -1,
    DCGM_ST_GENERIC_ERROR = -3,
    DCGM_ST_MEMORY = -4,
    DCGM_ST_NOT_CONFIGURED = -5,
    DCGM_ST_NOT_SUPPORTED = -6,
    DCGM_ST_INIT_ERROR = -7,
    DCGM_ST_NVML_ERROR = -8,
    DCGM_ST_UNINITIALIZED = -10,
    DCGM_ST_VER_MISMATCH = -12,
    DCGM_ST_UNKNOWN_FIELD = -13,
    DCGM_ST_NO_DATA = -14,
    DCGM_ST_NOT_WATCHED = -16,
    DCGM_ST_NO_PERMISSION = -17,
    DCGM_ST_GPU_IS_LOST = -18,
    DCGM_ST_CONNECTION_NOT_VALID = -21,
    DCGM_ST_MAX_LIMIT = -24,
    DCGM_ST_DUPLICATE_KEY = -26,
    DCGM_ST_REQUIRES_ROOT = -29,
    DCGM_ST_MODULE_NOT_LOADED = -33,
    DCGM_ST_IN_USE = -34,
    DCGM_ST_GROUP_IS_EMPTY = -35,
    DCGM_ST_PROFILING_NOT_SUPPORTED = -36,
    DCGM_ST_PROFILING_LIBRARY_ERROR = -37,
    DCGM_ST_PROFILING_MULTI_PASS = -38,
    DCGM_ST_INSTANCE_NOT_FOUND = -45,
    DCGM_ST_COMPUTE_INSTANCE_NOT_FOUND = -46,
    DCGM_ST_PAUSED = -54,
} dcgmReturn_t;

typedef uintptr_t dcgmHandle_t;   /* dcgm_structs.h:512 */
typedef uintptr_t dcgmGpuGrp_t;   /* dcgm_structs.h:513 */
typedef uintptr_t dcgmFieldGrp_t; /* dcgm_structs.h:514 */

/* dcgmGroupType_t (dcgm_structs.h:438-446); only the empty group is implemented */
#define DCGM_GROUP_EMPTY 1

/* dcgm_field_entity_group_t (dcgm_fields.h:261-274) */
#define DCGM_FE_NONE 0
#define DCGM_FE_GPU 1
#define DCGM_FE_GPU_I 4
#define DCGM_FE_GPU_CI 5
typedef unsigned int dcgm_field_entity_group_t; /* an enum: int-sized */
typedef unsigned int dcgm_field_eid_t;          /* dcgm_fields.h:280 */

/* field types (dcgm_fields.h:36-56) */
#define DCGM_FT_DOUBLE 'd'
#define DCGM_FT_INT64 'i'
#define DCGM_FT_STRING 's'

/* field ids (dcgm_fields.h) */
#define DCGM_FI_DEV_UUID 54                 /* :3613 (alias of DCGM_FI_DEV_GPU_UUID) */
#define DCGM_FI_PROF_GR_ENGINE_ACTIVE 1001  /* :2538 (4.6.0 name: ..._UTIL_RATIO) */
#define DCGM_FI_PROF_SM_ACTIVE 1002         /* :2544 */
#define DCGM_FI_PROF_SM_OCCUPANCY 1003      /* :2551 */
#define DCGM_FI_PROF_PIPE_TENSOR_ACTIVE 1004 /* :2557 */
#define DCGM_FI_PROF_DRAM_ACTIVE 1005       /* :2563 */
#define DCGM_FI_PROF_PIPE_FP64_ACTIVE 1006  /* :2568 */
#define DCGM_FI_PROF_PIPE_FP32_ACTIVE 1007  /* :2573 */
#define DCGM_FI_PROF_PIPE_FP16_ACTIVE 1008  /* :2578 */
#define DCGM_FI_PROF_PCIE_TX_BYTES 1009     /* :2586 */
#define DCGM_FI_PROF_PCIE_RX_BYTES 1010     /* :2594 */
#define DCGM_FI_PROF_NVLINK_TX_BYTES 1011   /* :2600 */
#define DCGM_FI_PROF_NVLINK_RX_BYTES 1012   /* :2606 */
#define DCGM_FI_PROF_FIRST 1001
#define DCGM_FI_PROF_LAST_SIMULATED 1012
#define DCGM_FI_PROF_LAST 1099              /* the profiling block, :2538-2760 */
#define DCGM_FI_MAX_FIELDS 1534             /* :3521 = DCGM_FI_PROF_NVLINK_RX_BYTES_PER_LINK + 1 */

/* blank sentinels (dcgm_structs.h:54-130) */
#define DCGM_INT64_BLANK 0x7ffffffffffffff0LL
#define DCGM_FP64_BLANK 140737488355328.0
#define DCGM_STR_BLANK "<<<NULL>>>"
#define DCGM_STR_NOT_FOUND "<<<NOT_FOUND>>>"
#define DCGM_STR_NOT_SUPPORTED "<<<NOT_SUPPORTED>>>"
#define DCGM_STR_NOT_PERMISSIONED "<<<NOT_PERM>>>"
/* kinds: BLANK, then +1 NOT_FOUND, +2 NOT_SUPPORTED, +3 NOT_PERMISSIONED */
#define STUB_BLANK 0
#define STUB_NOT_FOUND 1
#define STUB_NOT_SUPPORTED 2
#define STUB_NOT_PERMISSIONED 3

/* limits (dcgm_structs.h) */
#define DCGM_MAX_NUM_DEVICES 32                 /* :163 */
#define DCGM_MAX_STR_LENGTH 256                 /* :238 */
#define DCGM_MAX_NUM_GROUPS 64                  /* :253 */
#define DCGM_HE_PORT_NUMBER 5555                /* :289 */
#define DCGM_GROUP_MAX_ENTITIES_V2 1024         /* :462 */
#define DCGM_MAX_INSTANCES_PER_GPU 8            /* :784 */
#define DCGM_MAX_TOTAL_INSTANCES_PER_GPU 14     /* :790 */
#define DCGM_MAX_HIERARCHY_INFO (DCGM_MAX_NUM_DEVICES * DCGM_MAX_TOTAL_INSTANCES_PER_GPU) /* :791 */
#define DCGM_MAX_NUM_FIELD_GROUPS 64            /* :868 */
#define DCGM_MAX_FIELD_IDS_PER_FIELD_GROUP 128  /* :873 */
#define DCGM_MAX_BLOB_LENGTH 4096               /* :2141 */
#define DCGM_PROF_MAX_NUM_GROUPS_V2 10          /* :4201 */
#define DCGM_PROF_MAX_FIELD_IDS_PER_GROUP_V2 64 /* :4206 */

#define STUB_VERSION(type, ver) ((unsigned int)(sizeof(type) | ((unsigned long)(ver) << 24U)))

/* dcgmConnectV2Params_v2 (dcgm_structs.h:584-594) */
typedef struct {
    unsigned int version;
    unsigned int persistAfterDisconnect;
    unsigned int timeoutMs;
    unsigned int addressIsUnixSocket;
} dcgmConnectV2Params_v2;
#define dcgmConnectV2Params_version2 STUB_VERSION(dcgmConnectV2Params_v2, 2) /* :604 */

/* dcgmGroupEntityPair_t (dcgm_structs.h:670-674) */
typedef struct {
    dcgm_field_entity_group_t entityGroupId;
    dcgm_field_eid_t entityId;
} dcgmGroupEntityPair_t;

/* dcgmMigEntityInfo_t, dcgmMigHierarchyInfo_v2, dcgmMigHierarchy_v2 (dcgm_structs.h:764-804) */
typedef struct {
    char gpuUuid[128];
    unsigned int nvmlGpuIndex;
    unsigned int nvmlInstanceId;        /* -1 for GPU entities */
    unsigned int nvmlComputeInstanceId; /* -1 for GPU instance and GPU entities */
    unsigned int nvmlMigProfileId;
    unsigned int nvmlProfileSlices;
} dcgmMigEntityInfo_t;

typedef struct {
    dcgmGroupEntityPair_t entity;
    dcgmGroupEntityPair_t parent;
    dcgmMigEntityInfo_t info;
} dcgmMigHierarchyInfo_v2;

typedef struct {
    unsigned int version;
    unsigned int count;
    dcgmMigHierarchyInfo_v2 entityList[DCGM_MAX_HIERARCHY_INFO];
} dcgmMigHierarchy_v2;
#define dcgmMigHierarchy_version2 STUB_VERSION(dcgmMigHierarchy_v2, 2) /* :805 */

/* dcgmFieldValue_v2 (dcgm_structs.h:2171-2190) */
typedef struct {
    unsigned int version;
    dcgm_field_entity_group_t entityGroupId;
    dcgm_field_eid_t entityId;
    unsigned short fieldId;
    unsigned short fieldType;
    int status;
    unsigned int unused;
    int64_t ts;
    union {
        int64_t i64;
        double dbl;
        char str[DCGM_MAX_STR_LENGTH];
        char blob[DCGM_MAX_BLOB_LENGTH];
    } value;
} dcgmFieldValue_v2;
#define dcgmFieldValue_version2 STUB_VERSION(dcgmFieldValue_v2, 2) /* :2195 */

/* dcgmProfMetricGroupInfo_v2, dcgmProfGetMetricGroups_v3 (dcgm_structs.h:4211-4243) */
typedef struct {
    unsigned short majorId;
    unsigned short minorId;
    unsigned int numFieldIds;
    unsigned short fieldIds[DCGM_PROF_MAX_FIELD_IDS_PER_GROUP_V2];
} dcgmProfMetricGroupInfo_v2;

typedef struct {
    unsigned int version;
    unsigned int unused;
    unsigned int gpuId;
    unsigned int numMetricGroups;
    dcgmProfMetricGroupInfo_v2 metricGroups[DCGM_PROF_MAX_NUM_GROUPS_V2];
} dcgmProfGetMetricGroups_v3;
#define dcgmProfGetMetricGroups_version3 STUB_VERSION(dcgmProfGetMetricGroups_v3, 3) /* :4248 */

_Static_assert(sizeof(dcgmConnectV2Params_v2) == 16, "dcgmConnectV2Params_v2 is 16 bytes");
_Static_assert(dcgmConnectV2Params_version2 == 0x02000010, "dcgmConnectV2Params_version2");
_Static_assert(sizeof(dcgmFieldValue_v2) == 4128, "dcgmFieldValue_v2 is 4128 bytes");
_Static_assert(offsetof(dcgmFieldValue_v2, ts) == 24, "ts is 8-byte aligned after unused");
_Static_assert(dcgmFieldValue_version2 == 0x02001020, "dcgmFieldValue_version2");
_Static_assert(sizeof(dcgmMigHierarchyInfo_v2) == 164, "dcgmMigHierarchyInfo_v2 is 164 bytes");
_Static_assert(dcgmMigHierarchy_version2 == 0x02011F08, "dcgmMigHierarchy_version2");
_Static_assert(sizeof(dcgmProfMetricGroupInfo_v2) == 136, "dcgmProfMetricGroupInfo_v2 is 136 bytes");
_Static_assert(dcgmProfGetMetricGroups_version3 == 0x03000560, "dcgmProfGetMetricGroups_version3");

/* ------------------------------------------------------------------ internal */

#define STUB_MAX_GPUS DCGM_MAX_NUM_DEVICES
#define STUB_MAX_MIG 8 /* GPU instances per GPU, and compute instances per GPU */

/* One compute instance as the engine enumerated it from NVML. */
typedef struct {
    unsigned eid;       /* DCGM entity id */
    unsigned nvml_ci;   /* NVML id within its GPU instance */
    unsigned profile, slices;
    nvmlDevice_t mig;   /* its MIG device (NULL: not found) */
} stub_ci_t;

/* One GPU instance and its compute instances. */
typedef struct {
    unsigned eid;       /* DCGM entity id */
    unsigned nvml_gi;
    unsigned profile, slices;
    unsigned nci;
    stub_ci_t ci[STUB_MAX_MIG];
    nvmlDevice_t mig;   /* a MIG device of this GPU instance (NULL: none) */
} stub_inst_t;

typedef struct {
    nvmlDevice_t dev;
    char uuid[96];
    unsigned arch, brand;
    int nvlink;          /* 1: has NVLink */
    int mig_on;
    unsigned max_mig;    /* nvmlDeviceGetMaxMigDeviceCount (slices of the whole GPU) */
    unsigned ninst;
    stub_inst_t inst[STUB_MAX_MIG];
} stub_gpu_t;

/* The behaviour control file ($GPU_SIM_DCGM_CONFIG), parsed. */
#define STUB_GPU_ALL (-1)
#define STUB_MAX_RULES 128
#define STUB_MAX_GROUPS_CFG 64
typedef struct {
    int kind;   /* 0 blank (code = blank kind), 1 status (code = DCGM return code) */
    int field;  /* -1 = every field */
    int eg;     /* entity group, -1 = every entity */
    unsigned eid;
    int code;
} stub_rule_t;

typedef struct {
    int gpu;    /* STUB_GPU_ALL or a GPU id */
    unsigned short major, minor;
    unsigned nfields;
    unsigned short fields[DCGM_PROF_MAX_FIELD_IDS_PER_GROUP_V2];
} stub_cfg_group_t;

typedef struct {
    int module_not_loaded;
    int paused;
    unsigned mux;                         /* passes one major group may be multiplexed into */
    unsigned char prof_unsupported[STUB_MAX_GPUS];
    unsigned char library_error[STUB_MAX_GPUS];
    int nrules;
    stub_rule_t rules[STUB_MAX_RULES];
    int ngroups;
    stub_cfg_group_t groups[STUB_MAX_GROUPS_CFG];
} stub_cfg_t;

/* control.c */
void stub_cfg_defaults(stub_cfg_t *c);
int stub_cfg_parse(const char *text, stub_cfg_t *c, char *err, size_t errlen);
const stub_cfg_t *stub_cfg(void); /* current file, re-read when it changed */

/* engine.c: the NVML side (callers hold the stub's lock) */
int stub_nvml_open(void);
void stub_nvml_close(void);
unsigned stub_topology(stub_gpu_t *gpus, unsigned max);
int stub_entity_exists(const stub_gpu_t *gpus, unsigned ngpu, unsigned eg, unsigned eid,
                       unsigned *gpu, int *inst, int *ci);

/* The value of one field of one entity, sampled now. */
typedef struct {
    unsigned short type;
    int status;
    int64_t ts;
    int64_t i64;
    double dbl;
    char str[DCGM_MAX_STR_LENGTH];
} stub_sample_t;

typedef struct {
    unsigned long long tx_kib, rx_kib; /* NVLink counters at the last sample */
    long long at_us;
    int have;
} stub_link_base_t;

void stub_sample(const stub_gpu_t *gpus, unsigned ngpu, unsigned eg, unsigned eid, unsigned field,
                 stub_link_base_t *links, stub_sample_t *out);
void stub_blank(stub_sample_t *s, int kind);
unsigned short stub_field_type(unsigned field);
int64_t stub_now_us(void);
unsigned stub_default_groups(const stub_gpu_t *g, dcgmProfMetricGroupInfo_v2 *out, int *unsupported);

#endif
