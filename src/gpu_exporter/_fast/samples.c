/*
 * gpu-exporter fast path: per-row sums of NVML process-utilisation samples.
 *
 * A plain C library (no Python headers, no CPython API), loaded with ctypes by
 * gpu_exporter/fastpath.py, which also holds the pure-Python version of the same function
 * (used when this library is not built; a test checks both give the same results).
 *
 * One call per GPU and cycle: given the nvmlProcessUtilizationSample_t entries NVML wrote,
 * the read's lastSeenTimeStamp, the GPU's sample period so far and a PID -> row mapping, it
 * writes per process (slot) and per row the sums the workload collector needs. Only integer
 * arithmetic: the caller does the floating-point part, so both versions agree exactly.
 *
 * Bounds: no entry at or past `count` is read, no slot or row array is written past its
 * length; a mapping whose row numbers are out of range or whose PIDs are not strictly
 * ascending is refused (-1) before anything is read.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <nvml.h>

#define GX_ABI 1
#define GX_DEFAULT_PERIOD_US 166667ULL /* NVML's shortest process-sample period (1/6 s) */

/* per slot (process of the mapping), GX_SLOT_WORDS words */
enum {
    GX_SLOT_BUSY,   /* smUtil summed over its samples */
    GX_SLOT_COUNT,  /* samples counted */
    GX_SLOT_STAMP,  /* timestamp of its newest sample (the later one on a tie) */
    GX_SLOT_SM,     /* that sample's smUtil, memUtil, encUtil, decUtil, each capped at 100 */
    GX_SLOT_MEM,
    GX_SLOT_ENC,
    GX_SLOT_DEC,
    GX_SLOT_PREV,   /* timestamp of its previous sample in buffer order (for the gap) */
    GX_SLOT_NEXT,   /* the slot that followed it in the buffer last time (a lookup guess) */
    GX_SLOT_WORDS
};

/* the totals, GX_TOTAL_WORDS words */
enum {
    GX_USED,     /* samples counted (newer than lastSeenTimeStamp, PID in the mapping) */
    GX_UNKNOWN,  /* samples newer than lastSeenTimeStamp whose PID is not in the mapping */
    GX_STALE,    /* samples at or under lastSeenTimeStamp (not counted) */
    GX_NEWEST,   /* newest and oldest timestamp of the samples newer than lastSeenTimeStamp */
    GX_OLDEST,
    GX_GAP,      /* smallest rise between two samples of one process, in buffer order (0: none) */
    GX_PERIOD,   /* the sample period: the smaller of GX_GAP and period_hint, known ones only */
    GX_MAX_BUSY, /* the largest GX_SLOT_BUSY */
    GX_TOTAL_WORDS
};

#define GX_FAMILIES 5 /* rows: busy, then the newest period's sm, mem, enc, dec */

int gx_abi(void) __attribute__((visibility("default")));
int gx_sample_sums(const nvmlProcessUtilizationSample_t *samples, size_t count,
                   uint64_t last_seen, uint64_t period_hint, const uint32_t *pids,
                   const uint32_t *slot_rows, size_t n_slots, size_t n_rows, uint64_t *slots,
                   uint64_t *rows, uint64_t *totals) __attribute__((visibility("default")));

/* The version of the call and word layouts above (fastpath.py refuses another). */
int gx_abi(void)
{
    return GX_ABI * 10000 + GX_SLOT_WORDS * 100 + GX_TOTAL_WORDS;
}

static uint64_t cap100(unsigned int value)
{
    return value > 100 ? 100 : value;
}

/* The slot of `pid` (pids strictly ascending), or n when it is not there. */
static size_t find_slot(const uint32_t *pids, size_t n, uint32_t pid)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pids[mid] < pid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && pids[lo] == pid ? lo : n;
}

/*
 * Returns 0, or -1 when an argument is out of range (nothing written then but the zeroed
 * outputs, when they are there).
 *
 * slots: n_slots x GX_SLOT_WORDS; rows: GX_FAMILIES x n_rows, family by family (the busy
 * sums of every row, then the sm sums, ...): a row's newest-period sums count the slots
 * whose newest sample lies within one period of GX_NEWEST; totals: GX_TOTAL_WORDS.
 */
int gx_sample_sums(const nvmlProcessUtilizationSample_t *samples, size_t count,
                   uint64_t last_seen, uint64_t period_hint, const uint32_t *pids,
                   const uint32_t *slot_rows, size_t n_slots, size_t n_rows, uint64_t *slots,
                   uint64_t *rows, uint64_t *totals)
{
    if (totals == NULL)
        return -1;
    memset(totals, 0, GX_TOTAL_WORDS * sizeof *totals);
    if ((n_slots != 0 && (slots == NULL || pids == NULL || slot_rows == NULL))
        || (n_rows != 0 && rows == NULL) || n_slots > SIZE_MAX / GX_SLOT_WORDS
        || n_rows > SIZE_MAX / GX_FAMILIES)
        return -1;
    if (n_slots != 0)
        memset(slots, 0, n_slots * GX_SLOT_WORDS * sizeof *slots);
    if (n_rows != 0)
        memset(rows, 0, n_rows * GX_FAMILIES * sizeof *rows);
    /* count <= UINT32_MAX: no sum of 32-bit values can overflow 64 bits */
    if ((count != 0 && samples == NULL) || count > UINT32_MAX)
        return -1;
    for (size_t s = 0; s < n_slots; s++) {
        if (slot_rows[s] >= n_rows || (s > 0 && pids[s] <= pids[s - 1]))
            return -1;
        slots[s * GX_SLOT_WORDS + GX_SLOT_NEXT] = n_slots;
    }

    uint64_t used = 0, unknown = 0, stale = 0, newest = 0, oldest = UINT64_MAX, gap = 0;
    size_t guess = 0, prev = n_slots; /* prev: the slot of the last sample counted */
    for (size_t i = 0; i < count; i++) {
        const nvmlProcessUtilizationSample_t *sample = &samples[i];
        uint64_t ts = sample->timeStamp;
        if (ts <= last_seen) {
            stale++;
            continue;
        }
        newest = ts > newest ? ts : newest;
        oldest = ts < oldest ? ts : oldest;
        size_t slot = guess;
        if (slot >= n_slots || pids[slot] != sample->pid) {
            slot = find_slot(pids, n_slots, sample->pid);
            if (slot >= n_slots) {
                unknown++;
                guess = n_slots;
                continue;
            }
            if (prev < n_slots) /* learn the order: next time, this slot follows prev */
                slots[prev * GX_SLOT_WORDS + GX_SLOT_NEXT] = slot;
        }
        prev = slot;
        uint64_t *own = &slots[slot * GX_SLOT_WORDS];
        guess = (size_t)own[GX_SLOT_NEXT];
        own[GX_SLOT_BUSY] += sample->smUtil;
        if (own[GX_SLOT_COUNT] != 0) {
            uint64_t before = own[GX_SLOT_PREV];
            if (ts > before && (gap == 0 || ts - before < gap))
                gap = ts - before;
            if (ts >= own[GX_SLOT_STAMP]) {
                own[GX_SLOT_STAMP] = ts;
                own[GX_SLOT_SM] = i; /* the sample's index until the loop ends */
            }
        } else {
            own[GX_SLOT_STAMP] = ts;
            own[GX_SLOT_SM] = i;
        }
        own[GX_SLOT_PREV] = ts;
        own[GX_SLOT_COUNT]++;
        used++;
    }
    if (used + unknown == 0)
        oldest = 0;

    uint64_t period = gap;
    if (period_hint != 0 && (period == 0 || period_hint < period))
        period = period_hint;
    if (period == 0)
        period = GX_DEFAULT_PERIOD_US;
    uint64_t max_busy = 0;
    for (size_t s = 0; s < n_slots; s++) {
        uint64_t *own = &slots[s * GX_SLOT_WORDS];
        size_t row = slot_rows[s];
        if (own[GX_SLOT_COUNT] != 0) { /* its newest sample's values, each capped at 100 */
            const nvmlProcessUtilizationSample_t *newest_sample = &samples[own[GX_SLOT_SM]];
            own[GX_SLOT_SM] = cap100(newest_sample->smUtil);
            own[GX_SLOT_MEM] = cap100(newest_sample->memUtil);
            own[GX_SLOT_ENC] = cap100(newest_sample->encUtil);
            own[GX_SLOT_DEC] = cap100(newest_sample->decUtil);
        }
        rows[row] += own[GX_SLOT_BUSY];
        if (own[GX_SLOT_BUSY] > max_busy)
            max_busy = own[GX_SLOT_BUSY];
        /* its newest sample within the newest period: stamp > newest - period */
        if (own[GX_SLOT_COUNT] != 0 && (newest < period || own[GX_SLOT_STAMP] > newest - period)) {
            for (size_t f = 1; f < GX_FAMILIES; f++)
                rows[f * n_rows + row] += own[GX_SLOT_SM + f - 1];
        }
    }
    totals[GX_USED] = used;
    totals[GX_UNKNOWN] = unknown;
    totals[GX_STALE] = stale;
    totals[GX_NEWEST] = newest;
    totals[GX_OLDEST] = oldest;
    totals[GX_GAP] = gap;
    totals[GX_PERIOD] = period;
    totals[GX_MAX_BUSY] = max_busy;
    return 0;
}
