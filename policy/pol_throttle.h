/* pol_throttle.h - the wrong-password delay schedule (after Android's Gatekeeper
 * ComputeRetryTimeout), a pure function of the number of consecutive failures:
 *   failures 0..4: no delay; 5: 30 s; 6..9: none; 10..29: 30 s after each failure;
 *   30..139: 30 s * 2^((failures - 30) / 10); 140 and more: 1 day.
 * The next attempt is allowed at (time of the last failure + delay). */
#ifndef CELLS_POL_THROTTLE_H
#define CELLS_POL_THROTTLE_H

#include <stdint.h>

uint32_t pol_throttle_delay_s(uint32_t failures);

#endif
