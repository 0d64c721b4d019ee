/* pol_throttle.h - the wrong-password delay schedule (after Android's Gatekeeper
 * ComputeRetryTimeout), a pure function of the number of consecutive failures:
 *   failures 0..4: no delay; 5: 30 s; 6..9: none; 10..29: 30 s after each failure;
 *   30..139: 30 s * 2^((failures - 30) / 10); 140 and more: 1 day.
 * The next attempt is allowed when the delay has passed since the last failure, measured
 * on a monotonic clock (never the wall clock: setting it forward must not cancel a
 * wait). After a restart of the agent the full delay applies again from the restart (as
 * Gatekeeper does after a reboot): a wait can be made longer, never shorter. */
#ifndef CELLS_POL_THROTTLE_H
#define CELLS_POL_THROTTLE_H

#include <stdint.h>

uint32_t pol_throttle_delay_s(uint32_t failures);
/* Seconds (rounded up) until the next attempt is allowed after `failures` consecutive
 * failures, elapsed_ns of monotonic time after the last failure (or after the restart
 * that loaded the count). A negative elapsed time (a clock that went back) counts as 0. */
uint32_t pol_throttle_retry_in(uint32_t failures, int64_t elapsed_ns);

#endif
