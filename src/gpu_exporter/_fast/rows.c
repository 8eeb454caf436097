/*
 * gpu-exporter fast path: the floating-point part of the per-workload rows of one GPU.
 *
 * A plain C library (no Python headers, no CPython API), loaded with ctypes by
 * gpu_exporter/fastpath.py, which holds the pure-Python version of the same function
 * (gpu_exporter/fastpath.py: PythonRows; a test checks both give bit-identical results).
 *
 * One call per GPU and cycle, after gx_sample_sums (samples.c) gave the per-row sums: it
 * turns them into the rows' values (the rules of gpu_exporter/workloads/attribution.py):
 *
 * - busy: each row's SM utilisation averaged over the read's window (sum x scale; when some
 *   process's average would pass 1, each process's is capped at 1, then summed per row);
 * - utilisation (sm, mem, enc, dec): each row's newest-period percent / 100, reconciled with
 *   the device's value: the remainder goes to the `rest` (unattributed) row, or, when the rows
 *   add up to more than the device, every row is scaled by device / sum;
 * - memory: each row's bytes reconciled the same way with the device's used memory;
 * - energy: the interval's joules split by busy share (scaled to 1 when the shares pass it),
 *   the idle rest by the memory the rows hold (unattributed when none holds any), added to
 *   the row counters.
 *
 * Every sum is a plain left-to-right double sum (the Python version does the same; the
 * library is built with -ffp-contract=off so that no multiply-add is fused): both agree to
 * the bit. Bounds: nothing past n_rows / n_slots is read or written; a row number out of range
 * is refused (-1) before anything is written.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include <nvml.h>

#include "rows.h"

#define GX_ROWS_ABI 3
#define GX_SLOT_WORDS 9  /* samples.c's slot layout: the SM sum is word 0 */
#define GX_FAMILIES 5    /* samples.c's row sums: busy, then sm, mem, enc, dec */
/* samples.c's totals: the words gx_cycle reads */
enum { GX_T_USED, GX_T_UNKNOWN, GX_T_STALE, GX_T_NEWEST, GX_T_OLDEST, GX_T_GAP, GX_T_PERIOD };

/* out: n_rows doubles each, in this order (energy: the counters after the call) */
enum { GX_OUT_BUSY, GX_OUT_SM, GX_OUT_MEM, GX_OUT_ENC, GX_OUT_DEC, GX_OUT_MEMORY,
       GX_OUT_ENERGY, GX_OUT_FAMILIES };


int gx_rows_abi(void) __attribute__((visibility("default")));
int gx_rows(const uint64_t *sums, const uint64_t *slots, const uint32_t *slot_rows,
            size_t n_slots, size_t n_rows, size_t rest, double scale, const double *device,
            const double *memory, double *out, double *energy)
    __attribute__((visibility("default")));
int gx_cycle(const struct gx_map *map) __attribute__((visibility("default")));
/* samples.c */
int gx_sample_sums(const nvmlProcessUtilizationSample_t *samples, size_t count,
                   uint64_t last_seen, uint64_t period_hint, const uint32_t *pids,
                   const uint32_t *slot_rows, size_t n_slots, size_t n_rows, uint64_t *slots,
                   uint64_t *rows, uint64_t *totals);

/* The version of the calls and layouts above (fastpath.py refuses another): with the size
 * of struct gx_map in its last three digits. */
int gx_rows_abi(void)
{
    return ((GX_ROWS_ABI * 100 + GX_DEVICE_WORDS * 10 + GX_OUT_FAMILIES) * 1000)
        + (int)sizeof(struct gx_map);
}

/*
 * out[0..n) reconciled with `device` (>= 0 taken; the caller skips NaN): `total` is the
 * plain sum of out. The remainder is added to out[rest]; when the rows add up to more than
 * the device, every row is scaled by device / total first.
 */
static void reconcile(double *out, size_t n, size_t rest, double device, double total)
{
    if (device < 0.0)
        device = 0.0;
    if (total > device && total > 0.0) {
        double factor = device / total;
        total = 0.0;
        for (size_t r = 0; r < n; r++) {
            out[r] = out[r] * factor;
            total += out[r];
        }
    }
    double rest_value = device - total;
    out[rest] += rest_value > 0.0 ? rest_value : 0.0;
}

/*
 * Returns 0, or -1 when an argument is out of range (nothing written then).
 *
 * sums: GX_FAMILIES x n_rows (samples.c's row sums: SM sums, then the newest period's
 * percent); slots / slot_rows / n_slots: samples.c's slots (GX_SLOT_WORDS words each) and
 * their rows, read only when some slot's SM sum x scale passes 1; device: GX_DEVICE_WORDS;
 * memory: n_rows (the bytes each row's processes hold); out: GX_OUT_FAMILIES x n_rows (a
 * utilisation family whose device value is NaN is left 0; the last family: the energy
 * counters after the call); energy: n_rows counters, the interval's share added (untouched
 * when the joules are NaN).
 */
int gx_rows(const uint64_t *sums, const uint64_t *slots, const uint32_t *slot_rows,
            size_t n_slots, size_t n_rows, size_t rest, double scale, const double *device,
            const double *memory, double *out, double *energy)
{
    if (n_rows == 0 || rest >= n_rows || sums == NULL || device == NULL || memory == NULL
        || out == NULL || energy == NULL || n_rows > SIZE_MAX / GX_OUT_FAMILIES
        || n_rows > SIZE_MAX / GX_FAMILIES || (n_slots != 0 && (slots == NULL
                                                               || slot_rows == NULL)))
        return -1;
    int capped = 0;
    for (size_t s = 0; s < n_slots; s++) {
        if (slot_rows[s] >= n_rows)
            return -1;
        if ((double)slots[s * GX_SLOT_WORDS] * scale > 1.0)
            capped = 1;
    }

    double *busy = &out[GX_OUT_BUSY * n_rows];
    if (!capped) {
        for (size_t r = 0; r < n_rows; r++)
            busy[r] = (double)sums[r] * scale;
    } else { /* an average is at most 1: each process's capped, then summed per row */
        for (size_t r = 0; r < n_rows; r++)
            busy[r] = 0.0;
        for (size_t s = 0; s < n_slots; s++) {
            double value = (double)slots[s * GX_SLOT_WORDS] * scale;
            busy[slot_rows[s]] += value < 1.0 ? value : 1.0;
        }
    }

    for (size_t f = 0; f < 4; f++) {
        double *part = &out[(GX_OUT_SM + f) * n_rows];
        const uint64_t *percent = &sums[(1 + f) * n_rows];
        double device_value = device[GX_DEV_SM + f];
        if (isnan(device_value)) {
            for (size_t r = 0; r < n_rows; r++)
                part[r] = 0.0;
            continue;
        }
        double total = 0.0;
        for (size_t r = 0; r < n_rows; r++) {
            part[r] = (double)percent[r] / 100.0;
            total += part[r];
        }
        reconcile(part, n_rows, rest, device_value / 100.0, total);
    }

    double *held = &out[GX_OUT_MEMORY * n_rows];
    double held_sum = 0.0;
    for (size_t r = 0; r < n_rows; r++) {
        held[r] = memory[r];
        held_sum += held[r];
    }
    double device_memory = device[GX_DEV_MEMORY];
    reconcile(held, n_rows, rest, isnan(device_memory) ? held_sum : device_memory, held_sum);

    double *after = &out[GX_OUT_ENERGY * n_rows];
    double joules = device[GX_DEV_JOULES];
    if (isnan(joules)) {
        for (size_t r = 0; r < n_rows; r++)
            after[r] = energy[r];
        return 0;
    }
    if (joules < 0.0)
        joules = 0.0;
    double busy_total = 0.0;
    for (size_t r = 0; r < n_rows; r++)
        busy_total += busy[r] > 0.0 ? busy[r] : 0.0;
    double factor = busy_total > 1.0 ? 1.0 / busy_total : 1.0;
    double busy_used = 0.0;
    for (size_t r = 0; r < n_rows; r++) {
        double share = busy[r] > 0.0 ? busy[r] : 0.0;
        if (busy_total > 1.0)
            share = share * factor;
        busy_used += share;
    }
    double idle_part = 1.0 - busy_used;
    double idle = joules * (idle_part > 0.0 ? idle_part : 0.0);
    double memory_total = 0.0;
    for (size_t r = 0; r < n_rows; r++)
        if (memory[r] > 0.0)
            memory_total += memory[r];
    for (size_t r = 0; r < n_rows; r++) {
        double share = busy[r] > 0.0 ? busy[r] : 0.0;
        if (busy_total > 1.0)
            share = share * factor;
        double value = joules * share;
        if (memory_total > 0.0) {
            if (memory[r] > 0.0)
                value = value + idle * (memory[r] / memory_total);
        } else if (r == rest) {
            value = value + idle;
        }
        energy[r] = energy[r] + value;
        after[r] = energy[r];
    }
    return 0;
}

/*
 * One whole GPU's cycle in one call (its read in the map's last fields): gx_sample_sums
 * over the map, then, when every sample
 * newer than last_seen belongs to the map and there is one, gx_rows with the factor from a
 * process's SM sum (percent) to its average over the read's window (attribution.py's
 * window_scale): 1 / 100 when no process has two samples (one sample per process, as nvml.h
 * describes: held over the window), else period / window / 100, the window running from
 * last_seen (on the first read, last_seen 0: from one period before the oldest sample) to the
 * newest sample, at least one period long.
 *
 * Returns 0 (sums and rows written), 1 (samples of a PID the map lacks: only the sums and
 * totals written, the energy counters untouched), 2 (no sample newer than last_seen: the
 * same), -1 (an argument out of range, as gx_sample_sums and gx_rows).
 */
int gx_cycle(const struct gx_map *map)
{
    if (map == NULL || map->n_slots > SIZE_MAX || map->n_rows > SIZE_MAX
        || map->rest >= map->n_rows || map->count > SIZE_MAX)
        return -1;
    uint64_t last_seen = map->last_seen;
    if (gx_sample_sums(map->samples, (size_t)map->count, last_seen, map->period_hint,
                       map->pids, map->slot_rows, (size_t)map->n_slots, (size_t)map->n_rows,
                       map->slots, map->sums, map->totals) != 0)
        return -1;
    const uint64_t *totals = map->totals;
    if (totals[GX_T_UNKNOWN] != 0)
        return 1;
    if (totals[GX_T_USED] == 0)
        return 2;
    double scale = 0.01; /* no process with two samples: each one held over the window */
    if (totals[GX_T_GAP] != 0) {
        /* the samples counted are newer than last_seen: newest > last_seen, >= oldest */
        uint64_t period = totals[GX_T_PERIOD];
        uint64_t window = last_seen != 0 ? totals[GX_T_NEWEST] - last_seen
                                         : totals[GX_T_NEWEST] - totals[GX_T_OLDEST] + period;
        if (window < period)
            window = period;
        scale = (double)period / (double)window / 100.0;
    }
    return gx_rows(map->sums, map->slots, map->slot_rows, (size_t)map->n_slots,
                   (size_t)map->n_rows, (size_t)map->rest, scale, map->device, map->memory,
                   map->out, map->energy);
}
