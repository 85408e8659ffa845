#ifndef SWITCHBOARD_CSYSTEMD_SHIM_H
#define SWITCHBOARD_CSYSTEMD_SHIM_H

// The service manager protocol only: readiness and status notifications, the watchdog, and
// socket activation. Nothing of sd-bus or sd-event is used.
#include <systemd/sd-daemon.h>

#endif
