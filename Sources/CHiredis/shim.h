#ifndef SWITCHBOARD_CHIREDIS_SHIM_H
#define SWITCHBOARD_CHIREDIS_SHIM_H

// Only hiredis's reply reader is used: NIO owns the sockets, so none of
// hiredis's networking (redisContext, async adapters) is imported into Swift.
#include <hiredis/read.h>

#endif
