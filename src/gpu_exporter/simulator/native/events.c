/*
 * Simulated NVML: event sets and nvmlEventSetWait.
 *
 * Injected XIDs (and ECC error increments) become events when the faults file is re-read.
 * An event is queued on every set registered for its GPU and type (a set registered on a
 * MIG device only sees events of that GPU instance); an XID nobody has registered for yet
 * waits until somebody does, and each XID is delivered once per process. nvmlEventSetWait
 * returns at once when an event is queued, else blocks until one arrives or the timeout
 * passes and returns NVML_ERROR_TIMEOUT. While it blocks, a faults reload by any NVML call of
 * the process wakes it at once, and so does a new faults file: one watcher thread per process
 * blocks in inotify on the simulator's directory and reloads when `faults` is replaced (while
 * it watches, the NVML calls no longer look at the file themselves: sim_faults_watched). So an
 * idle waiter sleeps for its whole timeout, as in a driver's sleep in the kernel (where
 * inotify is not available it checks the file's stat once a second instead; a set registered
 * for clock events polls them every 100 ms).
 * A set registered for clock events gets one whenever the simulated clock event reasons
 * of the GPU change (checked on each wake-up), with the new reasons as event data. A set
 * registered for nvmlEventMigConfigChange gets one when the GPU's MIG layout changes. A wait
 * on a set that has a lost GPU registered returns GPU_IS_LOST (queued events stay queued; the
 * set must be rebuilt without that GPU), as nvml.h documents for a GPU off the bus.
 */
#include "sim.h"

#include <errno.h>
#include <stdint.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

int sim_mig_enabled(int gpu);
void sim_check_faults(void);

#define SIM_EV_MAGIC 0x45564E54u
#define SIM_EV_QUEUE 256
#define SIM_EV_REGS 64
#define SIM_MAX_SETS 64

typedef struct {
    int gpu, slot; /* slot -1: whole GPU */
    unsigned long long mask;
    unsigned long long reasons; /* last clock event reasons seen (nvmlEventTypeClock) */
} sim_reg_t;

typedef struct {
    int gpu;
    unsigned long long type, data;
    unsigned gi, ci;
} sim_event_t;

struct nvmlEventSet_st {
    unsigned magic;
    int nreg;
    sim_reg_t reg[SIM_EV_REGS];
    unsigned head, len;
    sim_event_t q[SIM_EV_QUEUE];
};

static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ev_cond;
static pthread_once_t ev_once = PTHREAD_ONCE_INIT;
static struct nvmlEventSet_st *ev_sets[SIM_MAX_SETS];
static unsigned long long ev_routed_seq;
static sim_event_t ev_pending[SIM_EV_QUEUE];
static unsigned ev_npending;
static unsigned long long ev_ecc_seen[SIM_MAX_GPUS][2];

static void ev_init(void)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&ev_cond, &a);
    pthread_condattr_destroy(&a);
}

/* ---------------------------------------------------------------- the faults-file watcher */

static pthread_mutex_t ev_watch_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t ev_watch_once = PTHREAD_ONCE_INIT;
static int ev_watch_fd = -1, ev_watch_wd = -1; /* guarded by ev_watch_lock */
static char ev_watch_dir[sizeof sim.dir];

/* Blocks on the inotify descriptor; reloads the faults (which routes and broadcasts the new
 * events) whenever `faults` in the watched directory is written, replaced or removed. */
static void *ev_watcher(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return NULL;
        int ours = 0;
        for (ssize_t at = 0; at + (ssize_t)sizeof(struct inotify_event) <= n;) {
            const struct inotify_event *e = (const struct inotify_event *)(buf + at);
            if (e->len > 0 && strcmp(e->name, "faults") == 0) ours = 1;
            if (e->mask & IN_IGNORED) { /* the directory went away: watch anew next wait */
                pthread_mutex_lock(&ev_watch_lock);
                if (e->wd == ev_watch_wd) {
                    ev_watch_wd = -1;
                    ev_watch_dir[0] = '\0';
                    __atomic_store_n(&sim_faults_watched, 0, __ATOMIC_RELEASE); /* poll again */
                }
                pthread_mutex_unlock(&ev_watch_lock);
            }
            at += (ssize_t)(sizeof *e + e->len);
        }
        if (ours) sim_check_faults();
    }
}

/* A forked child has no watcher thread: it starts its own on its first wait. */
static void ev_watch_child(void)
{
    pthread_mutex_init(&ev_watch_lock, NULL);
    if (ev_watch_fd >= 0) close(ev_watch_fd);
    ev_watch_fd = ev_watch_wd = -1;
    ev_watch_dir[0] = '\0';
    __atomic_store_n(&sim_faults_watched, 0, __ATOMIC_RELEASE);
}

static void ev_watch_register_fork(void)
{
    pthread_atfork(NULL, NULL, ev_watch_child);
}

/* Watch the simulator's current directory. Returns 0 when it is not watched (the waiter then
 * looks at the file itself once a second), 1 when it is, 2 when the watch was just set up
 * (a change made before it would be missed: the caller checks the file once). */
static int ev_watch_ready(void)
{
    char dir[sizeof sim.dir];
    pthread_once(&ev_watch_once, ev_watch_register_fork);
    pthread_mutex_lock(&sim.lock);
    memcpy(dir, sim.dir, sizeof dir);
    pthread_mutex_unlock(&sim.lock);
    dir[sizeof dir - 1] = '\0';
    int ready = 1;
    pthread_mutex_lock(&ev_watch_lock);
    if (ev_watch_fd < 0) {
        int fd = inotify_init1(IN_CLOEXEC);
        if (fd >= 0) {
            pthread_attr_t a;
            pthread_t t;
            pthread_attr_init(&a);
            pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
            if (pthread_create(&t, &a, ev_watcher, (void *)(intptr_t)fd) == 0)
                ev_watch_fd = fd;
            else
                close(fd);
            pthread_attr_destroy(&a);
        }
    }
    if (ev_watch_fd >= 0 && strcmp(dir, ev_watch_dir) != 0) {
        if (ev_watch_wd >= 0) inotify_rm_watch(ev_watch_fd, ev_watch_wd);
        ev_watch_wd = dir[0] ? inotify_add_watch(ev_watch_fd, dir,
                                                 IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE)
                             : -1;
        memcpy(ev_watch_dir, ev_watch_wd >= 0 ? dir : "", ev_watch_wd >= 0 ? sizeof dir : 1);
        ready = 2;
    }
    if (ev_watch_wd < 0) ready = 0;
    /* watched: the calls stop looking at the file (a change made before the watch was set
     * up is read by the caller's check, ready 2) */
    __atomic_store_n(&sim_faults_watched, ready != 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&ev_watch_lock);
    return ready;
}

static int ev_valid(const struct nvmlEventSet_st *s)
{
    for (int i = 0; i < SIM_MAX_SETS; i++)
        if (ev_sets[i] == s && s != NULL) return s->magic == SIM_EV_MAGIC;
    return 0;
}

static int ev_matches(const sim_reg_t *r, const sim_event_t *e)
{
    if (r->gpu != e->gpu || !(r->mask & e->type)) return 0;
    if (r->slot < 0) return 1;
    const sim_dev_t *m = sim_mig_slot(r->gpu, (unsigned)r->slot);
    return m->active && m->mig.gi == e->gi;
}

/* Queue ev_pending on matching sets; keep undelivered XIDs pending. Caller holds ev_lock. */
static void ev_deliver_locked(void)
{
    unsigned keep = 0;
    for (unsigned i = 0; i < ev_npending; i++) {
        sim_event_t *e = &ev_pending[i];
        int delivered = 0;
        for (int s = 0; s < SIM_MAX_SETS; s++) {
            struct nvmlEventSet_st *set = ev_sets[s];
            if (!set) continue;
            for (int r = 0; r < set->nreg; r++) {
                if (!ev_matches(&set->reg[r], e)) continue;
                if (set->len < SIM_EV_QUEUE) {
                    set->q[(set->head + set->len) % SIM_EV_QUEUE] = *e;
                    set->len++;
                }
                delivered = 1;
                break;
            }
        }
        if (!delivered && e->type == nvmlEventTypeXidCriticalError) ev_pending[keep++] = *e;
    }
    ev_npending = keep;
    pthread_cond_broadcast(&ev_cond);
}

static void ev_add_pending(const sim_event_t *e)
{
    if (ev_npending == SIM_EV_QUEUE) {
        memmove(ev_pending, ev_pending + 1, sizeof ev_pending[0] * (SIM_EV_QUEUE - 1));
        ev_npending--;
    }
    ev_pending[ev_npending++] = *e;
}

/* A GPU's MIG layout changed (faults reload, sim.lock held): queue nvmlEventMigConfigChange
 * for the sets registered for it; sim_events_route delivers it right after. */
void sim_events_mig_changed(int gpu)
{
    pthread_once(&ev_once, ev_init);
    sim_event_t e = {gpu, nvmlEventMigConfigChange, 0, 0xFFFFFFFFu, 0xFFFFFFFFu};
    pthread_mutex_lock(&ev_lock);
    ev_add_pending(&e);
    pthread_mutex_unlock(&ev_lock);
}

/* Called after every faults reload (sim.lock held). */
void sim_events_route(void)
{
    pthread_once(&ev_once, ev_init);
    const sim_faults_t *fl = sim_faults();
    pthread_mutex_lock(&ev_lock);
    unsigned long long max_seq = ev_routed_seq;
    for (int i = 0; i < fl->nxid; i++) {
        const sim_xid_t *x = &fl->xid[i];
        if (x->seq <= ev_routed_seq) continue;
        sim_event_t e = {x->dev, nvmlEventTypeXidCriticalError, x->code, x->gi, x->ci};
        ev_add_pending(&e);
        if (x->seq > max_seq) max_seq = x->seq;
    }
    ev_routed_seq = max_seq;
    for (unsigned g = 0; g < sim.ngpu; g++) {
        for (int k = 0; k < 2; k++) {
            unsigned long long now = k ? fl->ecc_dbe[g] : fl->ecc_sbe[g];
            if (now > ev_ecc_seen[g][k]) {
                sim_event_t e = {(int)g, k ? nvmlEventTypeDoubleBitEccError : nvmlEventTypeSingleBitEccError,
                                 now - ev_ecc_seen[g][k], 0xFFFFFFFFu, 0xFFFFFFFFu};
                ev_add_pending(&e);
            }
            ev_ecc_seen[g][k] = now;
        }
    }
    ev_deliver_locked();
    pthread_mutex_unlock(&ev_lock);
}

static unsigned long long sim_supported_events(const sim_dev_t *d)
{
    const sim_gpu_t *g = sim_gpu_of(d);
    unsigned long long m = nvmlEventTypeXidCriticalError;
    if (d->slot >= 0) return m;
    m |= nvmlEventTypePState | nvmlEventTypeClock;
    if (g->ecc_supported && g->ecc_enabled)
        m |= nvmlEventTypeSingleBitEccError | nvmlEventTypeDoubleBitEccError;
    if (g->mig_capable) m |= nvmlEventMigConfigChange;
    return m;
}

nvmlReturn_t DECLDIR nvmlDeviceGetSupportedEventTypes(nvmlDevice_t device, unsigned long long *eventTypes)
{
    SIM_ENTER_DEV(nvmlDeviceGetSupportedEventTypes, device, d);
    if (eventTypes == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    *eventTypes = sim_supported_events(d);
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlEventSetCreate(nvmlEventSet_t *set)
{
    SIM_ENTER(nvmlEventSetCreate);
    if (set == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    pthread_once(&ev_once, ev_init);
    struct nvmlEventSet_st *s = calloc(1, sizeof *s);
    if (!s) return NVML_ERROR_MEMORY;
    s->magic = SIM_EV_MAGIC;
    pthread_mutex_lock(&ev_lock);
    int slot = -1;
    for (int i = 0; i < SIM_MAX_SETS && slot < 0; i++)
        if (!ev_sets[i]) slot = i;
    if (slot < 0) {
        pthread_mutex_unlock(&ev_lock);
        free(s);
        return NVML_ERROR_INSUFFICIENT_RESOURCES;
    }
    ev_sets[slot] = s;
    pthread_mutex_unlock(&ev_lock);
    *set = s;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceRegisterEvents(nvmlDevice_t device, unsigned long long eventTypes, nvmlEventSet_t set)
{
    SIM_ENTER_DEV(nvmlDeviceRegisterEvents, device, d);
    if (eventTypes & ~sim_supported_events(d)) return NVML_ERROR_NOT_SUPPORTED;
    pthread_mutex_lock(&ev_lock);
    if (!ev_valid(set)) {
        pthread_mutex_unlock(&ev_lock);
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    int r = 0;
    for (; r < set->nreg; r++)
        if (set->reg[r].gpu == d->gpu && set->reg[r].slot == d->slot) break;
    if (r == set->nreg) {
        if (set->nreg == SIM_EV_REGS) {
            pthread_mutex_unlock(&ev_lock);
            return NVML_ERROR_INSUFFICIENT_RESOURCES;
        }
        set->nreg++;
        set->reg[r].gpu = d->gpu;
        set->reg[r].slot = d->slot;
        set->reg[r].mask = 0;
    }
    set->reg[r].mask |= eventTypes;
    if (eventTypes & nvmlEventTypeClock) {
        sim_now_t n;
        sim_eval(d, sim_time(), &n);
        set->reg[r].reasons = n.reasons;
    }
    ev_deliver_locked();
    pthread_mutex_unlock(&ev_lock);
    return NVML_SUCCESS;
}

static double ev_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Queue a clock event when a registered GPU's clock event reasons changed. Holds ev_lock. */
static void ev_poll_clocks_locked(struct nvmlEventSet_st *set)
{
    double tau = sim_time();
    for (int r = 0; r < set->nreg; r++) {
        sim_reg_t *reg = &set->reg[r];
        if (!(reg->mask & nvmlEventTypeClock) || reg->slot >= 0) continue;
        if (sim_faults()->lost[reg->gpu]) continue;
        sim_now_t n;
        sim_eval(sim_whole(reg->gpu), tau, &n);
        if (n.reasons == reg->reasons) continue;
        reg->reasons = n.reasons;
        if (set->len < SIM_EV_QUEUE) {
            sim_event_t e = {reg->gpu, nvmlEventTypeClock, n.reasons, 0xFFFFFFFFu, 0xFFFFFFFFu};
            set->q[(set->head + set->len) % SIM_EV_QUEUE] = e;
            set->len++;
        }
    }
}

/* True when a GPU registered in the set is lost. Holds ev_lock. */
static int ev_lost_locked(const struct nvmlEventSet_st *set)
{
    const sim_faults_t *fl = sim_faults();
    for (int r = 0; r < set->nreg; r++)
        if (fl->lost[set->reg[r].gpu]) return 1;
    return 0;
}

/* True when the set has a registration for clock events (polled while waiting). */
static int ev_wants_clocks_locked(const struct nvmlEventSet_st *set)
{
    for (int r = 0; r < set->nreg; r++)
        if ((set->reg[r].mask & nvmlEventTypeClock) && set->reg[r].slot < 0) return 1;
    return 0;
}

static nvmlReturn_t sim_wait(nvmlEventSet_t set, nvmlEventData_t *data, unsigned timeoutms)
{
    if (data == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    double deadline = ev_now() + timeoutms / 1000.0;
    int watched = ev_watch_ready();
    if (watched == 2) sim_check_faults();
    for (;;) {
        sim_tick();
        pthread_mutex_lock(&ev_lock);
        if (!ev_valid(set)) {
            pthread_mutex_unlock(&ev_lock);
            return NVML_ERROR_INVALID_ARGUMENT;
        }
        if (ev_lost_locked(set)) { /* a registered GPU fell off the bus: the set is unusable */
            pthread_mutex_unlock(&ev_lock);
            return NVML_ERROR_GPU_IS_LOST;
        }
        ev_poll_clocks_locked(set);
        if (set->len > 0) {
            sim_event_t e = set->q[set->head];
            set->head = (set->head + 1) % SIM_EV_QUEUE;
            set->len--;
            pthread_mutex_unlock(&ev_lock);
            data->device = sim_handle(sim_whole(e.gpu));
            data->eventType = e.type;
            data->eventData = e.data;
            data->gpuInstanceId = e.gi;
            data->computeInstanceId = e.ci;
            return NVML_SUCCESS;
        }
        double left = deadline - ev_now();
        if (left <= 0) {
            pthread_mutex_unlock(&ev_lock);
            return NVML_ERROR_TIMEOUT;
        }
        /* Sleep as a driver does: until an event is queued (ev_cond: every faults reload in
         * this process routes and broadcasts, the watcher's too), or the timeout. Without
         * the watcher, this thread looks at the faults file itself once a second (a stat;
         * parsed only when it changed); a set registered for clock events polls them every
         * 100 ms. */
        double step = ev_wants_clocks_locked(set) ? 0.1 : watched ? left : 1.0;
        double slice = left < step ? left : step;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long long ns = (long long)ts.tv_nsec + (long long)(slice * 1e9);
        ts.tv_sec += (time_t)(ns / 1000000000LL);
        ts.tv_nsec = (long)(ns % 1000000000LL);
        pthread_cond_timedwait(&ev_cond, &ev_lock, &ts);
        pthread_mutex_unlock(&ev_lock);
    }
}

nvmlReturn_t DECLDIR nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms)
{
    SIM_ENTER(nvmlEventSetWait_v2);
    return sim_wait(set, data, timeoutms);
}

nvmlReturn_t DECLDIR nvmlEventSetWait(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms)
{
    SIM_ENTER(nvmlEventSetWait);
    if (data == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlEventData_t e;
    nvmlReturn_t r = sim_wait(set, &e, timeoutms);
    if (r == NVML_SUCCESS) memcpy(data, &e, SIM_EVENT_DATA_V1_SIZE); /* pre-_v2 layout */
    return r;
}

nvmlReturn_t DECLDIR nvmlEventSetFree(nvmlEventSet_t set)
{
    SIM_ENTER(nvmlEventSetFree);
    pthread_mutex_lock(&ev_lock);
    if (!ev_valid(set)) {
        pthread_mutex_unlock(&ev_lock);
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    for (int i = 0; i < SIM_MAX_SETS; i++)
        if (ev_sets[i] == set) ev_sets[i] = NULL;
    set->magic = 0;
    pthread_mutex_unlock(&ev_lock);
    free(set);
    return NVML_SUCCESS;
}
