/* pol_throttle.c - the escalating delay schedule (see pol_throttle.h). */
#include "pol_throttle.h"

uint32_t pol_throttle_delay_s(uint32_t failures)
{
	if (failures < 5)
		return 0;
	if (failures < 10)
		return failures == 5 ? 30 : 0;
	if (failures < 30)
		return 30;
	if (failures < 140)
		return 30u << ((failures - 30) / 10);
	return 24u * 3600;
}

uint32_t pol_throttle_retry_in(uint32_t failures, int64_t elapsed_ns)
{
	uint64_t delay_ns = (uint64_t)pol_throttle_delay_s(failures) * 1000000000ull;
	uint64_t el = elapsed_ns > 0 ? (uint64_t)elapsed_ns : 0;
	if (el >= delay_ns)
		return 0;
	return (uint32_t)((delay_ns - el + 999999999ull) / 1000000000ull);
}
