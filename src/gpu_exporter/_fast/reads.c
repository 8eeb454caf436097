/*
 * gpu-exporter fast path: one GPU's per-cycle NVML reads in one call.
 *
 * A plain C library (no Python headers, no CPython API), loaded with ctypes by
 * gpu_exporter/fastread.py, which builds the plan: per GPU, the list of NVML calls its
 * collectors make each cycle (the entry points' addresses come from the exporter's NVML module,
 * which owns the library: nothing here opens or looks up a symbol), with the device handle, an
 * argument, and where each call's values go. gr_read runs the whole list, writes every call's
 * answer code and values into flat arrays, and lists the values whose number or code differ
 * from what the same slot held after the previous call: the caller decodes only those.
 *
 * Values are doubles (every integer NVML gives here below 2**53 is exact; a batched field
 * value is decoded by its own valueType, with the r545 quirk of an integer typed DOUBLE), NaN
 * where there is no value (a failed call or entry, an unknown value type). Each value also
 * gets the answer code it came with: its call's, or for a field value its entry's own.
 *
 * Bounds: a plan whose value slots or time buckets fall outside the caller's arrays is
 * refused (-1) before any call is made.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <nvml.h>

#define GR_ABI 1

/* the shapes of call a step can make */
enum {
    GR_UINT = 1,          /* fn(device, unsigned int *): one value */
    GR_UINT_ARG = 2,      /* fn(device, arg, unsigned int *): one value */
    GR_ULL = 3,           /* fn(device, unsigned long long *): one value */
    GR_UINT_PAIR = 4,     /* fn(device, unsigned int *, unsigned int *): two values */
    GR_UTILIZATION = 5,   /* fn(device, nvmlUtilization_t *): gpu, memory */
    GR_MEMORY = 6,        /* fn(device, nvmlMemory_t *): total, free, used */
    GR_MEMORY_V2 = 7,     /* fn(device, nvmlMemory_v2_t *): total, free, used, reserved */
    GR_TEMPERATURE_V = 8, /* fn(device, nvmlTemperature_t *), sensor arg: one value */
    GR_BAR1 = 9,          /* fn(device, nvmlBAR1Memory_t *): total, free, used */
    GR_FIELDS = 10,       /* fn(device, arg, nvmlFieldValue_t *): one value per entry */
    GR_GPM = 11,          /* a GPM sample, then the metrics over it and the one before: */
                          /* one value (the sample's answer), then one per metric */
};

#define GR_NOT_RUN (-1) /* the answer of a call not made (an earlier one failed) */
#define GR_CODE_CHANGED 0x80000000u /* in a dirty index: the value's answer code changed */

/* GR_GPM: the two sample buffers of one GPU or MIG instance and the request (the caller's,
 * kept between calls: which buffer is the newer one, and whether it holds a sample). */
typedef struct {
    void *samples[2];               /* nvmlGpmSample_t */
    void *metrics_fn;               /* nvmlGpmMetricsGet */
    nvmlGpmMetricsGet_t *request;   /* version, numMetrics and the metric ids set */
    uint32_t current;               /* the buffer the next sample goes into (0 or 1) */
    uint32_t primed;                /* the other buffer holds the previous sample */
    uint32_t mig;                   /* nvmlGpmMigSampleGet(device, arg, sample) */
    uint32_t n_metrics;
} gr_gpm;

typedef struct {
    void *fn;          /* the entry point */
    void *device;      /* nvmlDevice_t */
    void *entries;     /* GR_FIELDS: nvmlFieldValue_t[arg], fieldId and scopeId set */
    uint32_t shape;
    uint32_t arg;      /* the clock type, sensor, or number of field entries */
    uint32_t first;    /* index of its first value */
    uint32_t bucket;   /* the time bucket its call's duration is added to */
} gr_step;

typedef struct {
    const gr_step *steps;
    uint32_t n_steps;
    uint32_t n_values;
    uint32_t n_buckets;
    int32_t *codes;        /* per step: the call's answer */
    double *values;        /* per value (kept between calls: compared with the next) */
    int32_t *value_codes;  /* per value: the answer it came with */
    int64_t *stamps;       /* per value: a field entry's timestamp (us), else 0 */
    double *buckets;       /* seconds per bucket, set (not added to) by each call */
    uint32_t *dirty;       /* out: indices of the values that changed, n_values at most, each
                              with GR_CODE_CHANGED set when its answer code did */
    volatile uint32_t *at; /* out: the step under way (n_steps once done), for a hung call */
} gr_read;

int gr_abi(void) __attribute__((visibility("default")));
int gr_read_device(const gr_read *r) __attribute__((visibility("default")));

int gr_abi(void) { return GR_ABI; }

static uint32_t n_values_of(const gr_step *s) {
    switch (s->shape) {
    case GR_UINT_PAIR:
    case GR_UTILIZATION:
        return 2;
    case GR_MEMORY:
    case GR_BAR1:
        return 3;
    case GR_MEMORY_V2:
        return 4;
    case GR_FIELDS:
        return s->arg;
    case GR_GPM:
        return 1 + ((const gr_gpm *)s->entries)->n_metrics;
    default:
        return 1;
    }
}

/* nvmlValue_t by its type; NaN: no value. A DOUBLE that is NaN or denormal-tiny is an
 * integer in uiVal (r545). */
static double decode(const nvmlFieldValue_t *e) {
    switch (e->valueType) {
    case NVML_VALUE_TYPE_DOUBLE: {
        double d = e->value.dVal;
        if (d != d || (d != 0.0 && fabs(d) < 1e-300))
            return (double)e->value.uiVal;
        return d;
    }
    case NVML_VALUE_TYPE_UNSIGNED_INT:
        return (double)e->value.uiVal;
    case NVML_VALUE_TYPE_UNSIGNED_LONG:
        return (double)e->value.ulVal;
    case NVML_VALUE_TYPE_UNSIGNED_LONG_LONG:
        return (double)e->value.ullVal;
    case NVML_VALUE_TYPE_SIGNED_LONG_LONG:
        return (double)e->value.sllVal;
    case NVML_VALUE_TYPE_SIGNED_INT:
        return (double)e->value.siVal;
    case NVML_VALUE_TYPE_UNSIGNED_SHORT:
        return (double)e->value.usVal;
    default:
        return NAN;
    }
}

typedef nvmlReturn_t (*uint_fn)(nvmlDevice_t, unsigned int *);
typedef nvmlReturn_t (*uint_arg_fn)(nvmlDevice_t, unsigned int, unsigned int *);
typedef nvmlReturn_t (*ull_fn)(nvmlDevice_t, unsigned long long *);
typedef nvmlReturn_t (*pair_fn)(nvmlDevice_t, unsigned int *, unsigned int *);
typedef nvmlReturn_t (*util_fn)(nvmlDevice_t, nvmlUtilization_t *);
typedef nvmlReturn_t (*mem_fn)(nvmlDevice_t, nvmlMemory_t *);
typedef nvmlReturn_t (*mem2_fn)(nvmlDevice_t, nvmlMemory_v2_t *);
typedef nvmlReturn_t (*temp_fn)(nvmlDevice_t, nvmlTemperature_t *);
typedef nvmlReturn_t (*bar1_fn)(nvmlDevice_t, nvmlBAR1Memory_t *);
typedef nvmlReturn_t (*fields_fn)(nvmlDevice_t, int, nvmlFieldValue_t *);
typedef nvmlReturn_t (*gpm_sample_fn)(nvmlDevice_t, nvmlGpmSample_t);
typedef nvmlReturn_t (*gpm_mig_sample_fn)(nvmlDevice_t, unsigned int, nvmlGpmSample_t);
typedef nvmlReturn_t (*gpm_metrics_fn)(nvmlGpmMetricsGet_t *);

/* GR_GPM: as the profiling collector does it. The sample goes into the current buffer; when
 * the other one holds the previous sample, the metrics over the two follow (each with its own
 * answer). Unless one of the calls failed, the buffers then swap. The step's answer is the
 * sample's when that failed, else the metrics call's. */
static nvmlReturn_t gpm(const gr_step *s, double *out, int32_t *codes) {
    gr_gpm *g = (gr_gpm *)s->entries;
    nvmlGpmSample_t sample = (nvmlGpmSample_t)g->samples[g->current];
    nvmlReturn_t rc = g->mig
        ? ((gpm_mig_sample_fn)s->fn)((nvmlDevice_t)s->device, s->arg, sample)
        : ((gpm_sample_fn)s->fn)((nvmlDevice_t)s->device, sample);
    out[0] = 0.0;
    codes[0] = (int32_t)rc;
    for (uint32_t i = 0; i < g->n_metrics; i++) {
        out[1 + i] = NAN;
        codes[1 + i] = GR_NOT_RUN;
    }
    if (rc != NVML_SUCCESS)
        return rc;
    if (g->primed) {
        nvmlGpmMetricsGet_t *req = g->request;
        req->sample1 = (nvmlGpmSample_t)g->samples[g->current ^ 1];
        req->sample2 = sample;
        rc = ((gpm_metrics_fn)g->metrics_fn)(req);
        for (uint32_t i = 0; i < g->n_metrics; i++) {
            if (rc == NVML_SUCCESS) {
                codes[1 + i] = (int32_t)req->metrics[i].nvmlReturn;
                if (req->metrics[i].nvmlReturn == NVML_SUCCESS)
                    out[1 + i] = req->metrics[i].value;
            } else {
                codes[1 + i] = (int32_t)rc;
            }
        }
        if (rc != NVML_SUCCESS && rc != NVML_ERROR_NOT_SUPPORTED)
            return rc;
    }
    g->current ^= 1;
    g->primed = 1;
    return rc;
}

/* One call: its answer; its values (NaN for none) into out[0..], stamps into stamp[0..]. */
static int call(const gr_step *s, double *out, int32_t *codes, int64_t *stamp) {
    nvmlDevice_t dev = (nvmlDevice_t)s->device;
    nvmlReturn_t rc;
    switch (s->shape) {
    case GR_UINT: {
        unsigned int v = 0;
        rc = ((uint_fn)s->fn)(dev, &v);
        out[0] = (double)v;
        break;
    }
    case GR_UINT_ARG: {
        unsigned int v = 0;
        rc = ((uint_arg_fn)s->fn)(dev, s->arg, &v);
        out[0] = (double)v;
        break;
    }
    case GR_ULL: {
        unsigned long long v = 0;
        rc = ((ull_fn)s->fn)(dev, &v);
        out[0] = (double)v;
        break;
    }
    case GR_UINT_PAIR: {
        unsigned int a = 0, b = 0;
        rc = ((pair_fn)s->fn)(dev, &a, &b);
        out[0] = (double)a;
        out[1] = (double)b;
        break;
    }
    case GR_UTILIZATION: {
        nvmlUtilization_t u = {0, 0};
        rc = ((util_fn)s->fn)(dev, &u);
        out[0] = (double)u.gpu;
        out[1] = (double)u.memory;
        break;
    }
    case GR_MEMORY: {
        nvmlMemory_t m;
        memset(&m, 0, sizeof m);
        rc = ((mem_fn)s->fn)(dev, &m);
        out[0] = (double)m.total;
        out[1] = (double)m.free;
        out[2] = (double)m.used;
        break;
    }
    case GR_MEMORY_V2: {
        nvmlMemory_v2_t m;
        memset(&m, 0, sizeof m);
        m.version = nvmlMemory_v2;
        rc = ((mem2_fn)s->fn)(dev, &m);
        out[0] = (double)m.total;
        out[1] = (double)m.free;
        out[2] = (double)m.used;
        out[3] = (double)m.reserved;
        break;
    }
    case GR_TEMPERATURE_V: {
        nvmlTemperature_t t;
        memset(&t, 0, sizeof t);
        t.version = nvmlTemperature_v1;
        t.sensorType = (nvmlTemperatureSensors_t)s->arg;
        rc = ((temp_fn)s->fn)(dev, &t);
        out[0] = (double)t.temperature;
        break;
    }
    case GR_BAR1: {
        nvmlBAR1Memory_t b;
        memset(&b, 0, sizeof b);
        rc = ((bar1_fn)s->fn)(dev, &b);
        out[0] = (double)b.bar1Total;
        out[1] = (double)b.bar1Free;
        out[2] = (double)b.bar1Used;
        break;
    }
    case GR_FIELDS: {
        nvmlFieldValue_t *e = (nvmlFieldValue_t *)s->entries;
        rc = ((fields_fn)s->fn)(dev, (int)s->arg, e);
        for (uint32_t i = 0; i < s->arg; i++) {
            if (rc == NVML_SUCCESS) {
                codes[i] = (int32_t)e[i].nvmlReturn;
                out[i] = e[i].nvmlReturn == NVML_SUCCESS ? decode(&e[i]) : NAN;
                stamp[i] = e[i].timestamp;
            } else {  /* the whole call failed: every entry says so */
                codes[i] = (int32_t)rc;
                out[i] = NAN;
                stamp[i] = 0;
            }
        }
        return (int)rc;
    }
    case GR_GPM:
        rc = gpm(s, out, codes);
        for (uint32_t i = 0; i < n_values_of(s); i++)
            stamp[i] = 0;
        return (int)rc;
    default:
        return -1;
    }
    uint32_t n = n_values_of(s);
    for (uint32_t i = 0; i < n; i++) {
        codes[i] = (int32_t)rc;
        if (rc != NVML_SUCCESS)
            out[i] = NAN;
        stamp[i] = 0;
    }
    return (int)rc;
}

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Room for the largest step's values (a field batch has at most this many entries). */
#define GR_MAX_STEP_VALUES 4096

int gr_read_device(const gr_read *r) {
    for (uint32_t k = 0; k < r->n_steps; k++) {
        const gr_step *s = &r->steps[k];
        uint32_t n;
        if (s->shape == GR_GPM && (s->entries == NULL
                                   || ((const gr_gpm *)s->entries)->n_metrics
                                          > NVML_GPM_METRIC_MAX))
            return -1;
        n = n_values_of(s);
        if (s->shape < GR_UINT || s->shape > GR_GPM || n > GR_MAX_STEP_VALUES
            || r->n_values >= GR_CODE_CHANGED
            || s->first > r->n_values || n > r->n_values - s->first
            || s->bucket >= r->n_buckets || (s->shape == GR_FIELDS && s->entries == NULL))
            return -1;
    }
    if (r->at == NULL)
        return -1;
    for (uint32_t b = 0; b < r->n_buckets; b++)
        r->buckets[b] = 0.0;
    double fresh[GR_MAX_STEP_VALUES];
    int32_t fresh_codes[GR_MAX_STEP_VALUES];
    int n_dirty = 0;
    /* after a failed call, the collector's later calls are not made (its Python read stops
     * there too), and after GPU_IS_LOST none at all */
    uint32_t failed_bucket = UINT32_MAX;
    int lost = 0;
    double t0 = seconds();
    for (uint32_t k = 0; k < r->n_steps; k++) {
        const gr_step *s = &r->steps[k];
        uint32_t n = n_values_of(s);
        *r->at = k;
        if (lost || s->bucket == failed_bucket) {
            r->codes[k] = GR_NOT_RUN;
            for (uint32_t i = 0; i < n; i++) {
                fresh[i] = NAN;
                fresh_codes[i] = GR_NOT_RUN;
                r->stamps[s->first + i] = 0;
            }
        } else {
            int rc = call(s, fresh, fresh_codes, &r->stamps[s->first]);
            r->codes[k] = rc;
            if (rc != NVML_SUCCESS && rc != NVML_ERROR_NOT_SUPPORTED) {
                failed_bucket = s->bucket;
                lost = rc == NVML_ERROR_GPU_IS_LOST;
            }
        }
        double t1 = seconds();
        r->buckets[s->bucket] += t1 - t0;
        t0 = t1;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t at = s->first + i;
            if (memcmp(&r->values[at], &fresh[i], sizeof(double)) != 0
                || r->value_codes[at] != fresh_codes[i]) {
                uint32_t code_changed = r->value_codes[at] != fresh_codes[i] ? GR_CODE_CHANGED : 0;
                r->values[at] = fresh[i];
                r->value_codes[at] = fresh_codes[i];
                if (n_dirty < (int)r->n_values)  /* steps never share a value */
                    r->dirty[n_dirty++] = at | code_changed;
            }
        }
    }
    *r->at = r->n_steps;
    return n_dirty;
}
