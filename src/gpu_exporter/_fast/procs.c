/*
 * gpu-exporter fast path: one GPU's per-process NVML reads and its rows, in one call.
 *
 * A plain C library (no Python headers, no CPython API), loaded with ctypes by
 * gpu_exporter/fastpath.py. It never loads NVML itself: gpu_exporter/nvml.py owns the
 * library and hands over the addresses of the entry points that answered its last read
 * (Nvml.entry_address) with the buffers it reads into (nvml.ProcessReader); any answer
 * here other than the expected one is handed back to nvml.py, which carries on from it
 * with its own protocol (a buffer grown and asked again, the _v2 fallbacks, NOT_SUPPORTED,
 * the counted errors), so what is read is the same either way.
 *
 * One call per GPU and cycle (gx_read): the three process lists (MPS clients, compute,
 * graphics: nvmlProcessInfo_t, the _v3 layout), the used memory (nvmlMemory_v2_t), the
 * process-utilisation samples newer than lastSeenTimeStamp, into the caller's buffers, and
 * the encoder and decoder utilisation where the caller asks for them; then, when the three
 * lists are what they were at the last read (the caller's rows were made from them) and a
 * row map is given, gx_cycle (rows.c) over the samples just read.
 *
 * Bounds: no list or sample past the caller's buffer is read (a count NVML answers past
 * it is cut to it); the comparison copies are the caller's, as long as the buffers.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <nvml.h>

#include "rows.h"

#define GX_READ_ABI 1
#define GX_LISTS 3

/* the calls of one read, in their order (struct gx_reader's `failed`) */
enum { GX_CALL_MPS, GX_CALL_COMPUTE, GX_CALL_GRAPHICS, GX_CALL_MEMORY, GX_CALL_SAMPLES,
       GX_CALL_ENCODER, GX_CALL_DECODER, GX_CALL_NONE };

/* gx_read's answers beyond gx_cycle's (0 rows, 1 a PID the map lacks, 2 no newer sample) */
#define GX_READ_CHANGED 3 /* read; the lists differ from the last read's (or no map): no rows */
#define GX_READ_FAILED 4  /* the call `failed` answered `code`: the read stops there */
#define GX_READ_NO_SAMPLES 5 /* read, the same lists, no sample newer: the map untouched */

typedef nvmlReturn_t (*gx_list_fn)(nvmlDevice_t, unsigned int *, nvmlProcessInfo_t *);
typedef nvmlReturn_t (*gx_memory_fn)(nvmlDevice_t, nvmlMemory_v2_t *);
typedef nvmlReturn_t (*gx_samples_fn)(nvmlDevice_t, nvmlProcessUtilizationSample_t *,
                                      unsigned int *, unsigned long long);
typedef nvmlReturn_t (*gx_coder_fn)(nvmlDevice_t, unsigned int *, unsigned int *);

/* One GPU's reads: entry points and buffers (nvml.py's), and the comparison copies. */
struct gx_reader {
    nvmlDevice_t handle;
    gx_list_fn list_fn[GX_LISTS];           /* MPS clients, compute, graphics */
    nvmlProcessInfo_t *list[GX_LISTS];      /* list_entries each */
    unsigned int *list_count[GX_LISTS];     /* the count in/out arguments */
    uint64_t list_entries[GX_LISTS];
    nvmlProcessInfo_t *last[GX_LISTS];      /* the last answers (list_entries each) */
    uint64_t last_count[GX_LISTS];
    uint64_t last_valid;                    /* set by the caller: it holds last[]'s lists */
    gx_memory_fn memory_fn;
    nvmlMemory_v2_t *memory;                /* its version set by the caller */
    gx_samples_fn samples_fn;               /* NULL: no samples read (nor rows made) */
    nvmlProcessUtilizationSample_t *samples;
    unsigned int *sample_count;
    uint64_t sample_entries;
    uint64_t sample_slack;                  /* entries a complete answer leaves free */
    gx_coder_fn coder_fn[2];                /* encoder, decoder utilisation; NULL: not read */
    uint64_t coder_value[2];                /* out: their utilisation (percent) */
    uint64_t coder_code[2];                 /* out: SUCCESS or NOT_SUPPORTED (another answer
                                               stops the read) */
    uint64_t last_seen;                     /* the read's lastSeenTimeStamp */
    uint64_t failed;                        /* out: GX_CALL_* of the call that stopped it */
    uint64_t code;                          /* out: that call's answer */
};


int gx_read_abi(void) __attribute__((visibility("default")));
int gx_read(struct gx_reader *reader, struct gx_map *map) __attribute__((visibility("default")));

/* The version of the call and the struct's layout (fastpath.py refuses another). */
int gx_read_abi(void)
{
    return GX_READ_ABI * 10000 + (int)sizeof(struct gx_reader);
}

static int stop(struct gx_reader *reader, uint64_t call, nvmlReturn_t code)
{
    reader->failed = call;
    reader->code = (uint64_t)code;
    return GX_READ_FAILED;
}

/*
 * Returns 0, 1 or 2 (gx_cycle's answer: the rows made, or not and why), GX_READ_CHANGED,
 * GX_READ_FAILED, GX_READ_NO_SAMPLES, or -1 (an argument out of range: nothing read).
 *
 * The lists' counts are left in the caller's count arguments (cut to the buffers), the
 * samples' too (0 when NVML has none newer: NOT_FOUND); the used memory in the caller's
 * struct; the encoder's and decoder's answers in coder_code and coder_value (and, as the
 * device's values for the rows, in the map: NaN when NOT_SUPPORTED). A sample answer that leaves fewer than sample_slack entries free stops the read
 * as a failed call would (with code SUCCESS: a driver may have cut it short).
 */
int gx_read(struct gx_reader *reader, struct gx_map *map)
{
    if (reader == NULL || reader->memory_fn == NULL || reader->memory == NULL)
        return -1;
    for (int k = 0; k < GX_LISTS; k++)
        if (reader->list_fn[k] == NULL || reader->list[k] == NULL
            || reader->list_count[k] == NULL || reader->last[k] == NULL
            || reader->list_entries[k] > UINT32_MAX)
            return -1;
    if (reader->samples_fn != NULL
        && (reader->samples == NULL || reader->sample_count == NULL
            || reader->sample_entries > UINT32_MAX || reader->sample_slack > UINT32_MAX))
        return -1;
    reader->failed = GX_CALL_NONE;
    reader->code = NVML_SUCCESS;

    int same = reader->last_valid != 0;
    for (int k = 0; k < GX_LISTS; k++) {
        unsigned int *count = reader->list_count[k];
        *count = (unsigned int)reader->list_entries[k];
        nvmlReturn_t code = reader->list_fn[k](reader->handle, count, reader->list[k]);
        if (code != NVML_SUCCESS)
            return stop(reader, (uint64_t)k, code);
        if (*count > reader->list_entries[k])
            *count = (unsigned int)reader->list_entries[k];
        size_t bytes = (size_t)*count * sizeof(nvmlProcessInfo_t);
        if (*count != reader->last_count[k] || memcmp(reader->list[k], reader->last[k], bytes)) {
            same = 0;
            memcpy(reader->last[k], reader->list[k], bytes);
            reader->last_count[k] = *count;
        }
    }
    nvmlReturn_t code = reader->memory_fn(reader->handle, reader->memory);
    if (code != NVML_SUCCESS)
        return stop(reader, GX_CALL_MEMORY, code);
    if (reader->samples_fn == NULL)
        return GX_READ_CHANGED;

    unsigned int *count = reader->sample_count;
    *count = (unsigned int)reader->sample_entries;
    code = reader->samples_fn(reader->handle, reader->samples, count, reader->last_seen);
    if (code == NVML_ERROR_NOT_FOUND) { /* nothing newer than last_seen */
        *count = 0;
    } else if (code != NVML_SUCCESS || *count + reader->sample_slack > reader->sample_entries) {
        return stop(reader, GX_CALL_SAMPLES, code);
    }
    for (int k = 0; k < 2; k++) {
        reader->coder_code[k] = NVML_ERROR_NOT_SUPPORTED;
        reader->coder_value[k] = 0;
        if (reader->coder_fn[k] == NULL)
            continue;
        unsigned int value = 0, period = 0;
        code = reader->coder_fn[k](reader->handle, &value, &period);
        if (code != NVML_SUCCESS && code != NVML_ERROR_NOT_SUPPORTED)
            return stop(reader, (uint64_t)(GX_CALL_ENCODER + k), code);
        reader->coder_code[k] = (uint64_t)code;
        reader->coder_value[k] = value;
    }
    if (!same || map == NULL)
        return GX_READ_CHANGED;
    if (*count == 0) /* the map keeps the last read's values (the newest period's) */
        return GX_READ_NO_SAMPLES;

    map->samples = reader->samples;
    map->count = *count;
    map->last_seen = reader->last_seen;
    map->device[GX_DEV_MEMORY] = (double)reader->memory->used;
    for (int k = 0; k < 2; k++)
        if (reader->coder_fn[k] != NULL)
            map->device[GX_DEV_ENC + k] = reader->coder_code[k] == NVML_SUCCESS
                ? (double)reader->coder_value[k] : NAN;
    return gx_cycle(map);
}
