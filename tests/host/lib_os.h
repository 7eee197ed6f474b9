/*
 * The <nmikit/os.h> of the host-lib tests (log ring, boot parameters, shell):
 * the few services those need, with controls.  Threads stand in for CPUs, the
 * console goes to the capture of capture.h.  The NMI core's tests use
 * test_os.h instead: it simulates NMI delivery and replaces the log.
 */
#ifndef TESTS_HOST_LIB_OS_H
#define TESTS_HOST_LIB_OS_H

#include <stdint.h>

#include "capture.h"

/* The CPU the calling thread pretends to be (os_cpu_id()); 0 to begin with. */
extern _Thread_local unsigned los_cpu;

/* Make os_timestamp_ns() return `ns`; 0 makes it follow the host's clock. */
void los_set_time(uint64_t ns);

#endif
