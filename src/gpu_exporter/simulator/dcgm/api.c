/*
 * Stub libdcgm.so.4: the client API subset the exporter calls (dcgm_agent.h), with the
 * behaviour DCGM documents for it. The "host engine" lives in this process: connections are
 * real sockets (TCP or unix) to whatever listens at the address; groups, field groups and
 * watches are kept here; values are sampled from NVML (engine.c) when a watch is due (the
 * engine's own update loop, as in DCGM's auto mode) or on dcgmUpdateAllFields, and shaped by
 * the control file (control.c). Everything is serialised by one lock; only the socket connect
 * runs outside it.
 */
#include "stub.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define STUB_MAX_CONN 32
#define STUB_MAX_WATCH 256
#define STUB_DEFAULT_TIMEOUT_MS 5000 /* timeoutMs 0 (testing/python3/DcgmHandle.py:29-50) */

typedef struct {
    int used, dead, persist, fd;
    unsigned serial;
} stub_conn_t;

typedef struct {
    int used, conn;
    dcgmGpuGrp_t id;
    unsigned n;
    dcgmGroupEntityPair_t e[DCGM_GROUP_MAX_ENTITIES_V2];
} stub_group_t;

typedef struct {
    int used, conn;
    dcgmFieldGrp_t id;
    char name[DCGM_MAX_STR_LENGTH];
    unsigned n;
    unsigned short f[DCGM_MAX_FIELD_IDS_PER_FIELD_GROUP];
} stub_fgroup_t;

typedef struct {
    int used, conn;
    dcgmGpuGrp_t group;
    dcgmFieldGrp_t fgroup;
    long long freq_us;
    int64_t since_us;
    unsigned nent, nf;
    dcgmGroupEntityPair_t *ent;
    unsigned short f[DCGM_MAX_FIELD_IDS_PER_FIELD_GROUP];
} stub_watch_t;

typedef struct {
    unsigned eg, eid, field;
    int have;
    stub_sample_t s;
} stub_cache_t;

static pthread_mutex_t stub_lock = PTHREAD_MUTEX_INITIALIZER;
static int stub_inited;
static unsigned stub_serial = 1;
static stub_conn_t conns[STUB_MAX_CONN];
static stub_group_t groups[DCGM_MAX_NUM_GROUPS];
static stub_fgroup_t fgroups[DCGM_MAX_NUM_FIELD_GROUPS];
static stub_watch_t watches[STUB_MAX_WATCH];
static dcgmGpuGrp_t next_group_id = 2; /* 0 and 1 are DCGM's default groups */
static dcgmFieldGrp_t next_fgroup_id = 1;
static stub_cache_t *cache;
static size_t ncache, capcache;
static stub_gpu_t gpus[STUB_MAX_GPUS];
static unsigned ngpu;
static stub_link_base_t links[STUB_MAX_GPUS];

static void refresh_topology(void)
{
    ngpu = stub_topology(gpus, STUB_MAX_GPUS);
}

static int is_prof(unsigned field)
{
    return field >= DCGM_FI_PROF_FIRST && field <= DCGM_FI_PROF_LAST;
}

/* ------------------------------------------------------------------ connections */

/* Whether the watches of owner c count: a live connection's, or the engine's own (-1: kept
 * after a persistAfterDisconnect connection went away). */
static int owner_live(int c)
{
    return c < 0 || !conns[c].dead;
}

/* A connection that persists its state hands it to the engine when it goes away. */
static void keep_conn_state(int c)
{
    for (int i = 0; i < STUB_MAX_WATCH; i++)
        if (watches[i].used && watches[i].conn == c) watches[i].conn = -1;
    for (int i = 0; i < DCGM_MAX_NUM_GROUPS; i++)
        if (groups[i].used && groups[i].conn == c) groups[i].conn = -1;
    for (int i = 0; i < DCGM_MAX_NUM_FIELD_GROUPS; i++)
        if (fgroups[i].used && fgroups[i].conn == c) fgroups[i].conn = -1;
}

static void drop_conn_state(int c)
{
    for (int i = 0; i < STUB_MAX_WATCH; i++) {
        if (watches[i].used && watches[i].conn == c) {
            free(watches[i].ent);
            memset(&watches[i], 0, sizeof watches[i]);
        }
    }
    for (int i = 0; i < DCGM_MAX_NUM_GROUPS; i++)
        if (groups[i].used && groups[i].conn == c) groups[i].used = 0;
    for (int i = 0; i < DCGM_MAX_NUM_FIELD_GROUPS; i++)
        if (fgroups[i].used && fgroups[i].conn == c) fgroups[i].used = 0;
}

/* A peer that closed (or reset) the connection: every call on the handle fails from then on;
 * the engine side forgets the connection's watches unless persistAfterDisconnect was set. */
static int conn_alive(int c)
{
    stub_conn_t *k = &conns[c];
    if (k->dead) return 0;
    char b;
    ssize_t r = recv(k->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r > 0 || (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))) return 1;
    k->dead = 1;
    if (k->persist) keep_conn_state(c);
    else drop_conn_state(c);
    return 0;
}

/* Enter an API call on handle h (lock held on success). */
static dcgmReturn_t enter(dcgmHandle_t h, int *conn)
{
    pthread_mutex_lock(&stub_lock);
    if (!stub_inited) {
        pthread_mutex_unlock(&stub_lock);
        return DCGM_ST_UNINITIALIZED;
    }
    uintptr_t slot = (h & 0xff);
    if (slot == 0 || slot > STUB_MAX_CONN || !conns[slot - 1].used ||
        conns[slot - 1].serial != (unsigned)(h >> 8)) {
        pthread_mutex_unlock(&stub_lock);
        return DCGM_ST_BADPARAM;
    }
    if (!conn_alive((int)slot - 1)) {
        pthread_mutex_unlock(&stub_lock);
        return DCGM_ST_CONNECTION_NOT_VALID;
    }
    *conn = (int)slot - 1;
    return DCGM_ST_OK;
}

static dcgmReturn_t leave(dcgmReturn_t r)
{
    pthread_mutex_unlock(&stub_lock);
    return r;
}

static int connect_wait(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms)
{
    if (connect(fd, sa, len) == 0) return 1;
    if (errno != EINPROGRESS && errno != EAGAIN) return 0;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int r;
    do r = poll(&p, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    if (r <= 0) return 0;
    int err = 0;
    socklen_t el = sizeof err;
    return getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0;
}

/* "host", "host:port", "[v6]", "[v6]:port", or a bare IPv6 address (several colons). */
static dcgmReturn_t split_address(const char *addr, char *host, size_t hlen, char *port, size_t plen)
{
    const char *p = NULL;
    size_t n;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (end == NULL) return DCGM_ST_BADPARAM;
        n = (size_t)(end - addr - 1);
        if (n == 0 || n >= hlen) return DCGM_ST_BADPARAM;
        memcpy(host, addr + 1, n);
        host[n] = 0;
        if (end[1] == ':') p = end + 2;
        else if (end[1] != 0) return DCGM_ST_BADPARAM;
    } else {
        const char *colon = strchr(addr, ':');
        if (colon && strchr(colon + 1, ':') == NULL) p = colon + 1;
        n = p ? (size_t)(colon - addr) : strlen(addr);
        if (n == 0 || n >= hlen) return DCGM_ST_BADPARAM;
        memcpy(host, addr, n);
        host[n] = 0;
    }
    if (p == NULL) {
        snprintf(port, plen, "%d", DCGM_HE_PORT_NUMBER);
        return DCGM_ST_OK;
    }
    char *end;
    long v = strtol(p, &end, 10);
    if (*p == 0 || *end || v < 1 || v > 65535) return DCGM_ST_BADPARAM;
    snprintf(port, plen, "%ld", v);
    return DCGM_ST_OK;
}

static dcgmReturn_t open_socket(const char *addr, int is_unix, int timeout_ms, int *out)
{
    if (is_unix) {
        struct sockaddr_un sa;
        memset(&sa, 0, sizeof sa);
        sa.sun_family = AF_UNIX;
        size_t n = strlen(addr);
        if (n == 0 || n >= sizeof sa.sun_path) return DCGM_ST_BADPARAM;
        memcpy(sa.sun_path, addr, n);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) return DCGM_ST_INIT_ERROR;
        if (!connect_wait(fd, (struct sockaddr *)&sa, sizeof sa, timeout_ms)) {
            close(fd);
            return DCGM_ST_CONNECTION_NOT_VALID;
        }
        *out = fd;
        return DCGM_ST_OK;
    }
    char host[256], port[16];
    dcgmReturn_t r = split_address(addr, host, sizeof host, port, sizeof port);
    if (r != DCGM_ST_OK) return r;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0) return DCGM_ST_CONNECTION_NOT_VALID;
    r = DCGM_ST_CONNECTION_NOT_VALID;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) continue;
        if (connect_wait(fd, a->ai_addr, a->ai_addrlen, timeout_ms)) {
            *out = fd;
            r = DCGM_ST_OK;
            break;
        }
        close(fd);
    }
    freeaddrinfo(res);
    return r;
}

/* ------------------------------------------------------------------ lifecycle */

DCGM_API dcgmReturn_t dcgmInit(void)
{
    pthread_mutex_lock(&stub_lock);
    if (!stub_inited) {
        stub_nvml_open();
        refresh_topology();
        memset(links, 0, sizeof links);
        stub_inited = 1;
    }
    return leave(DCGM_ST_OK);
}

DCGM_API dcgmReturn_t dcgmShutdown(void)
{
    pthread_mutex_lock(&stub_lock);
    if (stub_inited) {
        for (int c = 0; c < STUB_MAX_CONN; c++) {
            if (!conns[c].used) continue;
            close(conns[c].fd);
            drop_conn_state(c);
            memset(&conns[c], 0, sizeof conns[c]);
        }
        drop_conn_state(-1); /* what persisted connections left behind */
        free(cache);
        cache = NULL;
        ncache = capcache = 0;
        stub_nvml_close();
        ngpu = 0;
        stub_inited = 0;
    }
    return leave(DCGM_ST_OK);
}

DCGM_API dcgmReturn_t dcgmConnect_v2(const char *ipAddress, dcgmConnectV2Params_v2 *connectParams,
                                     dcgmHandle_t *pDcgmHandle)
{
    if (ipAddress == NULL || connectParams == NULL || pDcgmHandle == NULL) return DCGM_ST_BADPARAM;
    if (connectParams->version != dcgmConnectV2Params_version2) return DCGM_ST_VER_MISMATCH;
    pthread_mutex_lock(&stub_lock);
    int inited = stub_inited;
    pthread_mutex_unlock(&stub_lock);
    if (!inited) return DCGM_ST_UNINITIALIZED;
    int timeout = connectParams->timeoutMs ? (int)connectParams->timeoutMs : STUB_DEFAULT_TIMEOUT_MS;
    if (timeout < 0) timeout = STUB_DEFAULT_TIMEOUT_MS;
    int fd = -1;
    dcgmReturn_t r = open_socket(ipAddress, connectParams->addressIsUnixSocket != 0, timeout, &fd);
    if (r != DCGM_ST_OK) return r;
    pthread_mutex_lock(&stub_lock);
    if (!stub_inited) {
        close(fd);
        return leave(DCGM_ST_UNINITIALIZED);
    }
    int c = -1;
    for (int i = 0; i < STUB_MAX_CONN && c < 0; i++)
        if (!conns[i].used) c = i;
    if (c < 0) {
        close(fd);
        return leave(DCGM_ST_MAX_LIMIT);
    }
    stub_serial = (stub_serial + 1) & 0xffffff;
    if (stub_serial == 0) stub_serial = 1;
    conns[c] = (stub_conn_t){.used = 1, .fd = fd, .serial = stub_serial,
                             .persist = connectParams->persistAfterDisconnect != 0};
    refresh_topology();
    *pDcgmHandle = ((dcgmHandle_t)stub_serial << 8) | (dcgmHandle_t)(c + 1);
    return leave(DCGM_ST_OK);
}

DCGM_API dcgmReturn_t dcgmDisconnect(dcgmHandle_t pDcgmHandle)
{
    int c;
    dcgmReturn_t r = enter(pDcgmHandle, &c);
    if (r == DCGM_ST_CONNECTION_NOT_VALID) { /* a lost connection is still released */
        pthread_mutex_lock(&stub_lock);
        c = (int)(pDcgmHandle & 0xff) - 1;
        if (!stub_inited || !conns[c].used || conns[c].serial != (unsigned)(pDcgmHandle >> 8))
            return leave(DCGM_ST_BADPARAM); /* released meanwhile by another thread */
        r = DCGM_ST_OK;
    }
    if (r != DCGM_ST_OK) return r;
    close(conns[c].fd);
    if (conns[c].persist) keep_conn_state(c);
    else drop_conn_state(c);
    memset(&conns[c], 0, sizeof conns[c]);
    return leave(DCGM_ST_OK);
}

/* ------------------------------------------------------------------ devices and MIG */

DCGM_API dcgmReturn_t dcgmGetAllSupportedDevices(dcgmHandle_t pDcgmHandle,
                                                 unsigned int gpuIdList[DCGM_MAX_NUM_DEVICES], int *count)
{
    if (gpuIdList == NULL || count == NULL) return DCGM_ST_BADPARAM;
    int c;
    dcgmReturn_t r = enter(pDcgmHandle, &c);
    if (r != DCGM_ST_OK) return r;
    refresh_topology();
    int n = 0;
    for (unsigned i = 0; i < ngpu && n < DCGM_MAX_NUM_DEVICES; i++)
        if (gpus[i].dev != NULL) gpuIdList[n++] = i;
    *count = n;
    return leave(DCGM_ST_OK);
}

DCGM_API dcgmReturn_t dcgmGetGpuInstanceHierarchy(dcgmHandle_t dcgmHandle, dcgmMigHierarchy_v2 *hierarchy)
{
    if (hierarchy == NULL) return DCGM_ST_BADPARAM;
    if (hierarchy->version != dcgmMigHierarchy_version2) return DCGM_ST_VER_MISMATCH;
    int c;
    dcgmReturn_t r = enter(dcgmHandle, &c);
    if (r != DCGM_ST_OK) return r;
    refresh_topology();
    unsigned n = 0;
    for (unsigned i = 0; i < ngpu; i++) {
        const stub_gpu_t *g = &gpus[i];
        for (unsigned k = 0; k < g->ninst && n < DCGM_MAX_HIERARCHY_INFO; k++) {
            const stub_inst_t *in = &g->inst[k];
            dcgmMigHierarchyInfo_v2 *e = &hierarchy->entityList[n++];
            memset(e, 0, sizeof *e);
            e->entity = (dcgmGroupEntityPair_t){DCGM_FE_GPU_I, in->eid};
            e->parent = (dcgmGroupEntityPair_t){DCGM_FE_GPU, i};
            snprintf(e->info.gpuUuid, sizeof e->info.gpuUuid, "%s", g->uuid);
            e->info.nvmlGpuIndex = i;
            e->info.nvmlInstanceId = in->nvml_gi;
            e->info.nvmlComputeInstanceId = 0xffffffffu; /* -1 for GPU instances (dcgm_structs.h:769) */
            e->info.nvmlMigProfileId = in->profile;
            e->info.nvmlProfileSlices = in->slices;
            for (unsigned q = 0; q < in->nci && n < DCGM_MAX_HIERARCHY_INFO; q++) {
                const stub_ci_t *c = &in->ci[q];
                e = &hierarchy->entityList[n++];
                memset(e, 0, sizeof *e);
                e->entity = (dcgmGroupEntityPair_t){DCGM_FE_GPU_CI, c->eid};
                e->parent = (dcgmGroupEntityPair_t){DCGM_FE_GPU_I, in->eid};
                snprintf(e->info.gpuUuid, sizeof e->info.gpuUuid, "%s", g->uuid);
                e->info.nvmlGpuIndex = i;
                e->info.nvmlInstanceId = in->nvml_gi;
                e->info.nvmlComputeInstanceId = c->nvml_ci;
                e->info.nvmlMigProfileId = c->profile;
                e->info.nvmlProfileSlices = c->slices;
            }
        }
    }
    hierarchy->count = n;
    return leave(DCGM_ST_OK);
}

/* ------------------------------------------------------------------ groups */

static stub_group_t *find_group(dcgmGpuGrp_t id)
{
    for (int i = 0; i < DCGM_MAX_NUM_GROUPS; i++)
        if (groups[i].used && groups[i].id == id) return &groups[i];
    return NULL;
}

static stub_fgroup_t *find_fgroup(dcgmFieldGrp_t id)
{
    for (int i = 0; i < DCGM_MAX_NUM_FIELD_GROUPS; i++)
        if (fgroups[i].used && fgroups[i].id == id) return &fgroups[i];
    return NULL;
}

DCGM_API dcgmReturn_t dcgmGroupCreate(dcgmHandle_t pDcgmHandle, int type, const char *groupName,
                                      dcgmGpuGrp_t *pDcgmGrpId)
{
    if (groupName == NULL || pDcgmGrpId == NULL) return DCGM_ST_BADPARAM;
    if (type != DCGM_GROUP_EMPTY) return DCGM_ST_NOT_SUPPORTED; /* the stub makes empty groups only */
    int c;
    dcgmReturn_t r = enter(pDcgmHandle, &c);
    if (r != DCGM_ST_OK) return r;
    for (int i = 0; i < DCGM_MAX_NUM_GROUPS; i++) {
        if (groups[i].used) continue;
        groups[i].used = 1;
        groups[i].conn = c;
        groups[i].n = 0;
        groups[i].id = next_group_id++;
        *pDcgmGrpId = groups[i].id;
        return leave(DCGM_ST_OK);
    }
    return leave(DCGM_ST_MAX_LIMIT);
}

DCGM_API dcgmReturn_t dcgmGroupDestroy(dcgmHandle_t pDcgmHandle, dcgmGpuGrp_t groupId)
{
    int c;
    dcgmReturn_t r = enter(pDcgmHandle, &c);
    if (r != DCGM_ST_OK) return r;
    stub_group_t *g = find_group(groupId);
    if (g == NULL) return leave(DCGM_ST_NOT_CONFIGURED);
    g->used = 0;
    return leave(DCGM_ST_OK);
}

DCGM_API dcgmReturn_t dcgmGroupAddEntity(dcgmHandle_t pDcgmHandle, dcgmGpuGrp_t groupId,
                                         dcgm_field_entity_group_t entityGroupId, dcgm_field_eid_t entityId)
{
    int c;
    dcgmReturn_t r = enter(pDcgmHandle, &c);
    if (r != DCGM_ST_OK) return r;
    stub_group_t *g = find_group(groupId);
    if (g == NULL) return leave(DCGM_ST_NOT_CONFIGURED);
    refresh_topology();
    unsigned gpu;
    int inst, ci;
    if (!stub_entity_exists(gpus, ngpu, entityGroupId, entityId, &gpu, &inst, &ci))
        return leave(DCGM_ST_BADPARAM);
    for (unsigned i = 0; i < g->n; i++)
        if (g->e[i].entityGroupId == entityGroupId && g->e[i].entityId == entityId)
            return leave(DCGM_ST_BADPARAM);
    if (g->n == DCGM_GROUP_MAX_ENTITIES_V2) return leave(DCGM_ST_MAX_LIMIT);
    g->e[g->n++] = (dcgmGroupEntityPair_t){entityGroupId, entityId};
    return leave(DCGM_ST_OK);
}

DCGM_API dcgmReturn_t dcgmFieldGroupCreate(dcgmHandle_t dcgmHandle, int numFieldIds,
                                           const unsigned short *fieldIds, const char *fieldGroupName,
                                           dcgmFieldGrp_t *dcgmFieldGroupId)
{
    if (numFieldIds < 1 || numFieldIds > DCGM_MAX_FIELD_IDS_PER_FIELD_GROUP || fieldIds == NULL ||
        fieldGroupName == NULL || dcgmFieldGroupId == NULL)
        return DCGM_ST_BADPARAM;
    for (int i = 0; i < numFieldIds; i++)
        if (fieldIds[i] == 0 || fieldIds[i] >= DCGM_FI_MAX_FIELDS) return DCGM_ST_BADPARAM;
    int c;
    dcgmReturn_t r = enter(dcgmHandle, &c);
    if (r != DCGM_ST_OK) return r;
    for (int i = 0; i < DCGM_MAX_NUM_FIELD_GROUPS; i++)
        if (fgroups[i].used && strncmp(fgroups[i].name, fieldGroupName, DCGM_MAX_STR_LENGTH - 1) == 0)
            return leave(DCGM_ST_DUPLICATE_KEY); /* DcgmFieldGroup.cpp:156 */
    for (int i = 0; i < DCGM_MAX_NUM_FIELD_GROUPS; i++) {
        stub_fgroup_t *f = &fgroups[i];
        if (f->used) continue;
        f->used = 1;
        f->conn = c;
        f->id = next_fgroup_id++;
        snprintf(f->name, sizeof f->name, "%s", fieldGroupName);
        f->n = (unsigned)numFieldIds;
        memcpy(f->f, fieldIds, (size_t)numFieldIds * sizeof *fieldIds);
        *dcgmFieldGroupId = f->id;
        return leave(DCGM_ST_OK);
    }
    return leave(DCGM_ST_MAX_LIMIT);
}

DCGM_API dcgmReturn_t dcgmFieldGroupDestroy(dcgmHandle_t dcgmHandle, dcgmFieldGrp_t dcgmFieldGroupId)
{
    int c;
    dcgmReturn_t r = enter(dcgmHandle, &c);
    if (r != DCGM_ST_OK) return r;
    stub_fgroup_t *f = find_fgroup(dcgmFieldGroupId);
    if (f == NULL) return leave(DCGM_ST_BADPARAM);
    f->used = 0;
    return leave(DCGM_ST_OK);
}

/* ------------------------------------------------------------------ profiling */

/* The metric groups of GPU gpu: the control file's for it (else its '*' lines), else the
 * architecture's default; *why is 0 or the DCGM error profiling gives on this GPU. */
static unsigned metric_groups(const stub_cfg_t *cfg, unsigned gpu, dcgmProfMetricGroupInfo_v2 *out, int *why)
{
    *why = DCGM_ST_OK;
    if (cfg->module_not_loaded) {
        *why = DCGM_ST_MODULE_NOT_LOADED;
        return 0;
    }
    if (cfg->library_error[gpu]) {
        *why = DCGM_ST_PROFILING_LIBRARY_ERROR;
        return 0;
    }
    int unsupported = 0;
    unsigned n = stub_default_groups(&gpus[gpu], out, &unsupported);
    if (cfg->prof_unsupported[gpu] || unsupported) {
        *why = DCGM_ST_PROFILING_NOT_SUPPORTED;
        return 0;
    }
    for (int pass = 0; pass < 2; pass++) {
        unsigned m = 0;
        for (int i = 0; i < cfg->ngroups; i++) {
            const stub_cfg_group_t *g = &cfg->groups[i];
            if (pass == 0 ? g->gpu != (int)gpu : g->gpu != STUB_GPU_ALL) continue;
            if (m == DCGM_PROF_MAX_NUM_GROUPS_V2) break;
            memset(&out[m], 0, sizeof out[m]);
            out[m].majorId = g->major;
            out[m].minorId = g->minor;
            out[m].numFieldIds = g->nfields;
            memcpy(out[m].fieldIds, g->fields, g->nfields * sizeof g->fields[0]);
            m++;
        }
        if (m) return m;
    }
    return n;
}

static int group_has(const dcgmProfMetricGroupInfo_v2 *g, unsigned field)
{
    for (unsigned j = 0; j < g->numFieldIds; j++)
        if (g->fieldIds[j] == field) return 1;
    return 0;
}

/* Passes the hardware needs to collect `fields` on one GPU: the most metric groups sharing one
 * majorId that covering the fields takes (a field found in a group already chosen adds none). */
static unsigned passes_needed(const dcgmProfMetricGroupInfo_v2 *mg, unsigned nmg, const unsigned short *fields,
                              unsigned nf)
{
    unsigned char chosen[DCGM_PROF_MAX_NUM_GROUPS_V2] = {0};
    for (unsigned i = 0; i < nf; i++) {
        int pick = -1;
        for (unsigned k = 0; k < nmg && pick < 0; k++)
            if (chosen[k] && group_has(&mg[k], fields[i])) pick = (int)k;
        for (unsigned k = 0; k < nmg && pick < 0; k++)
            if (group_has(&mg[k], fields[i])) pick = (int)k;
        if (pick >= 0) chosen[pick] = 1;
    }
    unsigned most = 0;
    for (unsigned k = 0; k < nmg; k++) {
        if (!chosen[k]) continue;
        unsigned same = 0;
        for (unsigned j = 0; j < nmg; j++)
            if (chosen[j] && mg[j].majorId == mg[k].majorId) same++;
        if (same > most) most = same;
    }
    return most;
}

DCGM_API dcgmReturn_t dcgmProfGetSupportedMetricGroups(dcgmHandle_t pDcgmHandle,
                                                       dcgmProfGetMetricGroups_v3 *metricGroups)
{
    if (metricGroups == NULL) return DCGM_ST_BADPARAM;
    if (metricGroups->version != dcgmProfGetMetricGroups_version3) return DCGM_ST_VER_MISMATCH;
    int c;
    dcgmReturn_t r = enter(pDcgmHandle, &c);
    if (r != DCGM_ST_OK) return r;
    unsigned gpu = metricGroups->gpuId;
    if (gpu >= ngpu || gpus[gpu].dev == NULL) return leave(DCGM_ST_BADPARAM);
    dcgmProfMetricGroupInfo_v2 mg[DCGM_PROF_MAX_NUM_GROUPS_V2];
    int why;
    unsigned n = metric_groups(stub_cfg(), gpu, mg, &why);
    if (why != DCGM_ST_OK) return leave(why);
    metricGroups->numMetricGroups = n;
    memset(metricGroups->metricGroups, 0, sizeof metricGroups->metricGroups);
    memcpy(metricGroups->metricGroups, mg, n * sizeof mg[0]);
    return leave(DCGM_ST_OK);
}

/* ------------------------------------------------------------------ watches and values */

static unsigned entity_gpu(unsigned eg, unsigned eid, int *ok)
{
    unsigned gpu = 0;
    int inst, ci;
    *ok = stub_entity_exists(gpus, ngpu, eg, eid, &gpu, &inst, &ci);
    return gpu;
}

/* Profiling fields watched on GPU gpu by live connections plus `extra` (only `extra`'s when
 * only_extra), deduplicated. */
static unsigned prof_fields_on(unsigned gpu, const stub_watch_t *extra, int only_extra, unsigned short *out,
                               unsigned max)
{
    unsigned n = 0;
    for (int w = -1; w < (only_extra ? 0 : STUB_MAX_WATCH); w++) {
        const stub_watch_t *x = w < 0 ? extra : &watches[w];
        if (x == NULL || !x->used || (w >= 0 && !owner_live(x->conn))) continue;
        int on = 0;
        for (unsigned e = 0; e < x->nent && !on; e++) {
            int ok;
            unsigned g = entity_gpu(x->ent[e].entityGroupId, x->ent[e].entityId, &ok);
            on = ok && g == gpu;
        }
        if (!on) continue;
        for (unsigned i = 0; i < x->nf; i++) {
            if (!is_prof(x->f[i])) continue;
            int seen = 0;
            for (unsigned j = 0; j < n && !seen; j++) seen = out[j] == x->f[i];
            if (!seen && n < max) out[n++] = x->f[i];
        }
    }
    return n;
}

static stub_cache_t *cache_get(unsigned eg, unsigned eid, unsigned field, int create)
{
    for (size_t i = 0; i < ncache; i++)
        if (cache[i].eg == eg && cache[i].eid == eid && cache[i].field == field) return &cache[i];
    if (!create) return NULL;
    if (ncache == capcache) {
        size_t cap = capcache ? capcache * 2 : 64;
        stub_cache_t *p = realloc(cache, cap * sizeof *p);
        if (p == NULL) return NULL;
        cache = p;
        capcache = cap;
    }
    stub_cache_t *e = &cache[ncache++];
    memset(e, 0, sizeof *e);
    e->eg = eg, e->eid = eid, e->field = field;
    return e;
}

/* The shortest update interval of the live watches of (entity, field), 0 when none; *since is
 * when the oldest of them began. */
static long long watch_freq(unsigned eg, unsigned eid, unsigned field, int64_t *since)
{
    long long best = 0;
    *since = 0;
    for (int w = 0; w < STUB_MAX_WATCH; w++) {
        const stub_watch_t *x = &watches[w];
        if (!x->used || !owner_live(x->conn)) continue;
        int has = 0;
        for (unsigned i = 0; i < x->nf && !has; i++) has = x->f[i] == field;
        for (unsigned e = 0; e < x->nent && has; e++) {
            if (x->ent[e].entityGroupId != eg || x->ent[e].entityId != eid) continue;
            if (best == 0 || x->freq_us < best) best = x->freq_us;
            if (*since == 0 || x->since_us < *since) *since = x->since_us;
            break;
        }
    }
    return best;
}

static void sample_into(stub_cache_t *e)
{
    stub_sample(gpus, ngpu, e->eg, e->eid, e->field, links, &e->s);
    e->have = 1;
}

DCGM_API dcgmReturn_t dcgmWatchFields(dcgmHandle_t pDcgmHandle, dcgmGpuGrp_t groupId, dcgmFieldGrp_t fieldGroupId,
                                      long long updateFreq, double maxKeepAge, int maxKeepSamples)
{
    (void)maxKeepAge;
    (void)maxKeepSamples;
    if (updateFreq <= 0) return DCGM_ST_BADPARAM;
    int c;
    dcgmReturn_t r = enter(pDcgmHandle, &c);
    if (r != DCGM_ST_OK) return r;
    stub_group_t *g = find_group(groupId);
    if (g == NULL) return leave(DCGM_ST_NOT_CONFIGURED);
    stub_fgroup_t *f = find_fgroup(fieldGroupId);
    if (f == NULL) return leave(DCGM_ST_BADPARAM);
    int slot = -1;
    for (int i = 0; i < STUB_MAX_WATCH && slot < 0; i++)
        if (!watches[i].used) slot = i;
    if (slot < 0) return leave(DCGM_ST_MAX_LIMIT);
    stub_watch_t w = {.used = 1, .conn = c, .group = groupId, .fgroup = fieldGroupId,
                      .freq_us = updateFreq, .since_us = stub_now_us(), .nent = g->n, .nf = f->n};
    memcpy(w.f, f->f, f->n * sizeof f->f[0]);
    int any_prof = 0;
    for (unsigned i = 0; i < f->n; i++) any_prof |= is_prof(f->f[i]);
    w.ent = malloc((g->n ? g->n : 1) * sizeof *w.ent);
    if (w.ent == NULL) return leave(DCGM_ST_MEMORY);
    memcpy(w.ent, g->e, g->n * sizeof *w.ent);
    const stub_cfg_t *cfg = stub_cfg();
    if (any_prof) {
        for (unsigned gpu = 0; gpu < ngpu; gpu++) {
            unsigned short fields[DCGM_MAX_FIELD_IDS_PER_FIELD_GROUP * 4];
            if (prof_fields_on(gpu, &w, 1, fields, 1) == 0) continue; /* this watch has none here */
            dcgmProfMetricGroupInfo_v2 mg[DCGM_PROF_MAX_NUM_GROUPS_V2];
            int why;
            unsigned nmg = metric_groups(cfg, gpu, mg, &why);
            if (why == DCGM_ST_OK) {
                unsigned nf = prof_fields_on(gpu, &w, 0, fields, sizeof fields / sizeof fields[0]);
                if (passes_needed(mg, nmg, fields, nf) > cfg->mux) why = DCGM_ST_PROFILING_MULTI_PASS;
            }
            if (why != DCGM_ST_OK) {
                free(w.ent);
                return leave(why);
            }
        }
    }
    watches[slot] = w;
    /* NVLink rates need a previous counter reading: the engine takes it when the watch begins */
    for (unsigned i = 0; i < w.nf; i++) {
        if (w.f[i] != DCGM_FI_PROF_NVLINK_TX_BYTES && w.f[i] != DCGM_FI_PROF_NVLINK_RX_BYTES) continue;
        for (unsigned e = 0; e < w.nent; e++) {
            int ok;
            unsigned gpu = entity_gpu(w.ent[e].entityGroupId, w.ent[e].entityId, &ok);
            if (ok && !links[gpu].have) {
                stub_sample_t s;
                stub_sample(gpus, ngpu, DCGM_FE_GPU, gpu, w.f[i], links, &s);
            }
        }
    }
    return leave(DCGM_ST_OK);
}

DCGM_API dcgmReturn_t dcgmUnwatchFields(dcgmHandle_t pDcgmHandle, dcgmGpuGrp_t groupId, dcgmFieldGrp_t fieldGroupId)
{
    int c;
    dcgmReturn_t r = enter(pDcgmHandle, &c);
    if (r != DCGM_ST_OK) return r;
    if (find_group(groupId) == NULL) return leave(DCGM_ST_NOT_CONFIGURED);
    if (find_fgroup(fieldGroupId) == NULL) return leave(DCGM_ST_BADPARAM);
    for (int i = 0; i < STUB_MAX_WATCH; i++) {
        stub_watch_t *w = &watches[i];
        if (!w->used || w->conn != c || w->group != groupId || w->fgroup != fieldGroupId) continue;
        free(w->ent);
        memset(w, 0, sizeof *w);
    }
    return leave(DCGM_ST_OK);
}

DCGM_API dcgmReturn_t dcgmUpdateAllFields(dcgmHandle_t pDcgmHandle, int waitForUpdate)
{
    if (waitForUpdate != 0 && waitForUpdate != 1) return DCGM_ST_BADPARAM;
    int c;
    dcgmReturn_t r = enter(pDcgmHandle, &c);
    if (r != DCGM_ST_OK) return r;
    for (int w = 0; w < STUB_MAX_WATCH; w++) {
        const stub_watch_t *x = &watches[w];
        if (!x->used || !owner_live(x->conn)) continue;
        for (unsigned e = 0; e < x->nent; e++) {
            for (unsigned i = 0; i < x->nf; i++) {
                stub_cache_t *ce = cache_get(x->ent[e].entityGroupId, x->ent[e].entityId, x->f[i], 1);
                if (ce == NULL) return leave(DCGM_ST_MEMORY);
                sample_into(ce);
            }
        }
    }
    return leave(DCGM_ST_OK);
}

/* What the engine reports for (entity, field) now: its latest sample (taken here when the
 * watch is due), then the profiling state and the control file's blanks and statuses. */
static void present(const stub_cfg_t *cfg, unsigned eg, unsigned eid, unsigned field, unsigned flags,
                    stub_sample_t *out)
{
    int64_t since;
    long long freq = watch_freq(eg, eid, field, &since);
    int64_t now = stub_now_us();
    memset(out, 0, sizeof *out);
    out->type = stub_field_type(field);
    if (freq == 0 && !(flags & 1)) { /* DCGM_FV_FLAG_LIVE_DATA (dcgm_structs.h:2204) samples anyway */
        out->status = DCGM_ST_NOT_WATCHED;
        stub_blank(out, STUB_BLANK);
        return;
    }
    stub_cache_t *ce = cache_get(eg, eid, field, 1);
    if (ce == NULL) {
        out->status = DCGM_ST_MEMORY;
        stub_blank(out, STUB_BLANK);
        return;
    }
    int due = (flags & 1) || (ce->have ? now - ce->s.ts >= freq : now - since >= freq);
    if (due) sample_into(ce);
    if (!ce->have) { /* watched, but the engine has not sampled it yet */
        out->status = DCGM_ST_NO_DATA;
        out->ts = 0;
        stub_blank(out, STUB_BLANK);
        return;
    }
    *out = ce->s;
    int ok;
    unsigned gpu = entity_gpu(eg, eid, &ok);
    if (ok && is_prof(field) && out->status == DCGM_ST_OK) {
        dcgmProfMetricGroupInfo_v2 mg[DCGM_PROF_MAX_NUM_GROUPS_V2];
        int why;
        unsigned nmg = metric_groups(cfg, gpu, mg, &why);
        int listed = 0;
        for (unsigned k = 0; k < nmg && !listed; k++) listed = group_has(&mg[k], field);
        if (why != DCGM_ST_OK) {
            out->status = why;
            stub_blank(out, STUB_BLANK);
        } else if (!listed) {
            stub_blank(out, STUB_NOT_SUPPORTED);
        } else if (cfg->paused) { /* profiling paused: DCGM publishes blanks (dcgm_agent.h:2085-2118) */
            stub_blank(out, STUB_BLANK);
        }
    }
    for (int i = 0; i < cfg->nrules; i++) {
        const stub_rule_t *rl = &cfg->rules[i];
        if (rl->field >= 0 && (unsigned)rl->field != field) continue;
        if (rl->eg >= 0 && ((unsigned)rl->eg != eg || rl->eid != eid)) continue;
        if (rl->kind == 1) {
            out->status = rl->code;
            stub_blank(out, STUB_BLANK);
        } else {
            out->status = DCGM_ST_OK;
            stub_blank(out, rl->code);
        }
    }
}

DCGM_API dcgmReturn_t dcgmEntitiesGetLatestValues(dcgmHandle_t pDcgmHandle, dcgmGroupEntityPair_t entities[],
                                                  unsigned int entityCount, unsigned short fields[],
                                                  unsigned int fieldCount, unsigned int flags,
                                                  dcgmFieldValue_v2 values[])
{
    /* the same checks as DCGM's (DcgmApi.cpp:791-805) */
    if (entities == NULL || entityCount < 1 || fields == NULL || fieldCount < 1 || values == NULL)
        return DCGM_ST_BADPARAM;
    int c;
    dcgmReturn_t r = enter(pDcgmHandle, &c);
    if (r != DCGM_ST_OK) return r;
    const stub_cfg_t *cfg = stub_cfg();
    size_t k = 0;
    for (unsigned e = 0; e < entityCount; e++) {
        for (unsigned i = 0; i < fieldCount; i++, k++) {
            stub_sample_t s;
            present(cfg, entities[e].entityGroupId, entities[e].entityId, fields[i], flags, &s);
            dcgmFieldValue_v2 *v = &values[k];
            memset(v, 0, sizeof *v);
            v->version = dcgmFieldValue_version2;
            v->entityGroupId = entities[e].entityGroupId;
            v->entityId = entities[e].entityId;
            v->fieldId = fields[i];
            v->fieldType = s.type;
            v->status = s.status;
            v->ts = s.ts;
            if (s.type == DCGM_FT_DOUBLE) v->value.dbl = s.dbl;
            else if (s.type == DCGM_FT_STRING) snprintf(v->value.str, sizeof v->value.str, "%s", s.str);
            else v->value.i64 = s.i64;
        }
    }
    return leave(DCGM_ST_OK);
}

/* ------------------------------------------------------------------ errors */

/* Our own short texts; NULL for a code DCGM does not define, as DCGM's errorString does
 * (dcgm_errors.c:337-339). */
DCGM_API const char *errorString(dcgmReturn_t result)
{
    switch ((int)result) {
    case DCGM_ST_OK: return "Success";
    case DCGM_ST_BADPARAM: return "Bad parameter passed to function";
    case DCGM_ST_GENERIC_ERROR: return "Generic unspecified error";
    case DCGM_ST_MEMORY: return "Out of memory";
    case DCGM_ST_NOT_CONFIGURED: return "Setting not configured";
    case DCGM_ST_NOT_SUPPORTED: return "Feature not supported";
    case DCGM_ST_INIT_ERROR: return "DCGM initialisation error";
    case DCGM_ST_NVML_ERROR: return "NVML returned an error";
    case -9: return "Object is in a pending state";
    case DCGM_ST_UNINITIALIZED: return "DCGM is not initialised";
    case -11: return "Operation timed out";
    case DCGM_ST_VER_MISMATCH: return "Structure version mismatch";
    case DCGM_ST_UNKNOWN_FIELD: return "Unknown field id";
    case DCGM_ST_NO_DATA: return "No data is available";
    case -15: return "Data is stale";
    case DCGM_ST_NOT_WATCHED: return "The field is not being watched";
    case DCGM_ST_NO_PERMISSION: return "No permission for this operation";
    case DCGM_ST_GPU_IS_LOST: return "The GPU is lost";
    case -19: return "The GPU needs a reset";
    case -20: return "Function not found";
    case DCGM_ST_CONNECTION_NOT_VALID: return "The connection to the host engine is not valid";
    case -22: return "The GPU is not supported by DCGM";
    case -23: return "The GPUs of the group are not compatible for this operation";
    case DCGM_ST_MAX_LIMIT: return "Maximum limit reached";
    case -25: return "DCGM library not found";
    case DCGM_ST_DUPLICATE_KEY: return "Duplicate key";
    case DCGM_ST_REQUIRES_ROOT: return "This operation needs a host engine running as root";
    case DCGM_ST_MODULE_NOT_LOADED: return "The DCGM module serving this request is not loaded";
    case DCGM_ST_IN_USE: return "The resource is in use";
    case DCGM_ST_GROUP_IS_EMPTY: return "The group is empty";
    case DCGM_ST_PROFILING_NOT_SUPPORTED: return "Profiling is not supported on this GPU";
    case DCGM_ST_PROFILING_LIBRARY_ERROR: return "The profiling library returned an unrecoverable error";
    case DCGM_ST_PROFILING_MULTI_PASS: return "These profiling metrics need more than one pass";
    case DCGM_ST_INSTANCE_NOT_FOUND: return "No such GPU instance";
    case DCGM_ST_COMPUTE_INSTANCE_NOT_FOUND: return "No such compute instance";
    case DCGM_ST_PAUSED: return "The host engine is paused";
    default:
        if (result < 0 && result >= -67) return "DCGM error"; /* defined codes we do not spell out */
        return NULL;
    }
}
