/*
 * gpu-exporter fast path: the row map of rows.c, shared with procs.c (which fills a read's
 * fields of it and calls gx_cycle). Layout mirrored by gpu_exporter/fastpath.py (_Map).
 */
#ifndef GX_ROWS_H
#define GX_ROWS_H

#include <stdint.h>

#include <nvml.h>

/* device: the device's values, NaN where unknown */
enum { GX_DEV_SM, GX_DEV_MEM, GX_DEV_ENC, GX_DEV_DEC, GX_DEV_MEMORY, GX_DEV_JOULES,
       GX_DEVICE_WORDS };

/*
 * One GPU's row map and one read of it: what gx_sample_sums and gx_rows take, kept by
 * fastpath.py per map; the read's fields (from samples on) are written before each call.
 */
struct gx_map {
    const uint32_t *pids;      /* n_slots, strictly ascending */
    const uint32_t *slot_rows; /* n_slots */
    uint64_t *slots;           /* n_slots x GX_SLOT_WORDS */
    uint64_t *sums;            /* GX_FAMILIES x n_rows */
    uint64_t *totals;          /* samples.c's totals */
    const double *memory;      /* n_rows */
    double *out;               /* GX_OUT_FAMILIES x n_rows */
    double *energy;            /* n_rows */
    uint64_t n_slots;
    uint64_t n_rows;
    uint64_t rest;
    const nvmlProcessUtilizationSample_t *samples; /* count of them, as NVML wrote them */
    uint64_t count;
    uint64_t last_seen;        /* the read's lastSeenTimeStamp */
    uint64_t period_hint;      /* the GPU's sample period so far (0: none) */
    double device[GX_DEVICE_WORDS];
};

int gx_cycle(const struct gx_map *map) __attribute__((visibility("default")));

#endif
