#include "sim.h"
void sim_events_route(void) {}
