/*
 * Simulated NVML: dynamics.
 *
 * Every value is a closed-form function of the simulated time tau (seconds since the
 * simulated driver load), so that the same (profile, seed, tau) always gives the same value
 * and cumulative counters (energy, bytes, violation time) are exact integrals of the rates
 * they belong to: they only grow, whatever the call pattern.
 *
 * Utilisation is a mean plus four sinusoids (amplitudes sum to at most the distance to
 * 0 and 100, so no clipping is needed); power is linear in utilisation; temperature follows
 * power through a first-order lag of 40 s (exact for sinusoids: attenuated and delayed).
 */
#include "sim.h"


double sim_wave(const sim_gpu_t *g, double tau)
{
    double u = g->util_mean;
    for (int k = 0; k < SIM_WAVES; k++)
        u += g->wave[k].amp * sin(g->wave[k].omega * tau + g->wave[k].phase);
    return u < 0 ? 0 : (u > 100 ? 100 : u);
}

double sim_wave_int(const sim_gpu_t *g, double tau)
{
    double s = g->util_mean * tau;
    for (int k = 0; k < SIM_WAVES; k++) {
        const sim_sine_t *w = &g->wave[k];
        s += w->amp * (cos(w->phase) - cos(w->omega * tau + w->phase)) / w->omega;
    }
    return s;
}

static double sim_wave_lagged(const sim_gpu_t *g, double tau)
{
    double u = g->util_mean;
    for (int k = 0; k < SIM_WAVES; k++) {
        const sim_sine_t *w = &g->wave[k];
        u += w->lag_amp * sin(w->omega * tau + w->lag_phase);
    }
    return u < 0 ? 0 : (u > 100 ? 100 : u);
}

static double sim_mem_util(const sim_gpu_t *g, double u, double tau)
{
    double m = u * 0.55 + (u > 0 ? 3.0 * sin(tau / 17.0 + (double)(g->seed % 7)) + 3.0 : 0);
    return m > 100 ? 100 : m;
}

/* Utilisation only (the cheap path of nvmlDeviceGetUtilizationRates and friends). */
void sim_eval_util(const sim_dev_t *d, double tau, sim_now_t *o)
{
    const sim_gpu_t *g = &sim.gpu[d->gpu];
    double u = g->util_mean == 0 && g->util_amp == 0 ? 0 : sim_wave(g, tau);
    o->tau = tau;
    o->util = u * d->share;
    o->mem_util = sim_mem_util(g, u, tau);
    o->dec_util = g->decoder ? u * 0.08 : 0;
    o->enc_util = g->encoder ? u * 0.03 : 0;
    double su, smu, senc, sdec;
    if (sim_script_util(d, tau, 0, &su, NULL, &smu, &senc, &sdec)) {
        o->util = su;
        o->mem_util = smu;
        o->enc_util = g->encoder ? senc : 0;
        o->dec_util = g->decoder ? sdec : 0;
    }
}

void sim_eval(const sim_dev_t *d, double tau, sim_now_t *o)
{
    const sim_gpu_t *g = &sim.gpu[d->gpu];
    memset(o, 0, sizeof *o);
    o->tau = tau;
    double u = sim_wave(g, tau);
    double ui = sim_wave_int(g, tau);
    o->util = u * d->share;
    o->util_int = ui * d->share;
    double ul = sim_wave_lagged(g, tau);
    o->mem_util = sim_mem_util(g, u, tau);
    o->dec_util = g->decoder ? u * 0.08 : 0;
    o->enc_util = g->encoder ? u * 0.03 : 0;
    /* scripted processes: the GPU's utilisation (power, energy, clocks, temperature without
     * the thermal lag) and the device's own (MIG: its GPU instance's) follow them */
    double su, sui, smu, senc, sdec, x;
    if (sim_script_util(d, tau, 1, &u, &ui, &x, &x, &x)) {
        ul = u;
        sim_script_util(d, tau, 0, &su, &sui, &smu, &senc, &sdec);
        o->util = su;
        o->util_int = sui;
        o->mem_util = smu;
        o->enc_util = g->encoder ? senc : 0;
        o->dec_util = g->decoder ? sdec : 0;
    }
    double idle = (double)g->power_idle_mw, peak = (double)g->power_peak_mw;
    o->power_mw = idle + (peak - idle) * u / 100.0;
    o->energy_mj = idle * tau + (peak - idle) * ui / 100.0;
    o->temp = (double)g->temp_ambient + ((double)g->temp_load - (double)g->temp_ambient) * ul / 100;
    o->mem_temp = o->temp + (double)g->mem_temp_offset;
    unsigned long long reasons = 0;
    if (u < 1.0) {
        o->sm_clock = (double)g->clock_sm_idle;
        o->mem_clock = (double)g->clock_mem_idle;
        o->video_clock = (double)g->clock_video_idle;
        reasons |= nvmlClocksEventReasonGpuIdle;
    } else {
        double f = u / 40.0 > 1 ? 1 : u / 40.0;
        o->sm_clock = (double)g->clock_sm_base + ((double)g->clock_sm_max - (double)g->clock_sm_base) * f;
        o->mem_clock = (double)g->clock_mem_max;
        o->video_clock = (double)g->clock_video_max * (0.7 + 0.3 * f);
        if (o->power_mw >= 0.9 * (double)g->power_default_mw) {
            o->sm_clock *= 0.93;
            reasons |= nvmlClocksEventReasonSwPowerCap;
        }
        if (o->temp >= (double)g->temp_slowdown - 3) {
            o->sm_clock *= 0.9;
            reasons |= nvmlClocksEventReasonSwThermalSlowdown;
        }
    }
    if (g->display) reasons |= 0; /* display clocks never limit in the simulation */
    o->reasons = reasons;
}

unsigned long long sim_pcie_bytes(const sim_gpu_t *g, double tau, int rx)
{
    double peak = (double)g->pcie_peak_mbps * 1e6;
    double base = rx ? 0.02 : 0.01, load = rx ? 0.25 : 0.15;
    return (unsigned long long)(peak * (base * tau + load * sim_wave_int(g, tau) / 100.0));
}

unsigned long long sim_nvlink_kib(const sim_gpu_t *g, double tau, int link, int rx, int raw)
{
    double f = rx ? g->link_rx[link] : g->link_tx[link];
    double kib = (double)g->nvlink_link_mbps * 1e6 / 1024.0 * f *
                 (0.005 * tau + 0.4 * sim_wave_int(g, tau) / 100.0);
    return (unsigned long long)(raw ? kib * 1.07 : kib);
}

unsigned long long sim_violation_ns(const sim_gpu_t *g, double tau, int policy)
{
    double busy = sim_wave_int(g, tau) / 100.0; /* busy seconds */
    switch (policy) {
    case NVML_PERF_POLICY_POWER: return (unsigned long long)(busy * 0.02 * 1e9);
    case NVML_PERF_POLICY_THERMAL: return (unsigned long long)(busy * 0.002 * 1e9);
    case NVML_PERF_POLICY_LOW_UTILIZATION: return (unsigned long long)((tau - busy) * 0.5 * 1e9);
    case NVML_PERF_POLICY_TOTAL_APP_CLOCKS: return (unsigned long long)(busy * 0.022 * 1e9);
    case NVML_PERF_POLICY_TOTAL_BASE_CLOCKS: return (unsigned long long)(busy * 0.002 * 1e9);
    default: return 0;
    }
}

unsigned long long sim_ecc(const sim_gpu_t *g, int gpu, int dbe, int aggregate)
{
    const sim_faults_t *fl = sim_faults();
    unsigned long long vol = dbe ? g->ecc_dbe_vol + fl->ecc_dbe[gpu] : g->ecc_sbe_vol + fl->ecc_sbe[gpu];
    if (!aggregate) return vol;
    return vol + (dbe ? g->ecc_dbe_agg : g->ecc_sbe_agg);
}
