#ifndef HAL_CLOCK_H_STUB
#define HAL_CLOCK_H_STUB
#include <stdbool.h>
#include <stdint.h>
#define HAL_CLOCK_PLATFORM_SOURCE_NUM 41
typedef enum {
    hal_clock_osc24m = 2,
    hal_clock_lpuart3 = HAL_CLOCK_PLATFORM_SOURCE_NUM + 101
} hal_clk_id_e;
typedef enum { hal_clk_round_down = 0, hal_clk_round_up = 1, hal_clk_round_auto = 2 } hal_clk_rnd_opt_e;
typedef struct {
    hal_clk_id_e clk_id;
    hal_clk_id_e pclk_id;
    uint32_t div;
    bool enable_clk;
    hal_clk_rnd_opt_e clk_round_opt;
    uint32_t rateu;
    uint32_t ratel;
    uint64_t rate;
} hal_clk_t;
void HAL_ClockSetRootClk(hal_clk_t *hal_clk);
uint64_t HAL_ClockGetIpFreq(hal_clk_id_e clk_id);
#endif
