#ifndef BOARD_H_STUB
#define BOARD_H_STUB
#include "fsl_common.h"
#include "hal_clock.h"
#define BOARD_DEBUG_UART_INSTANCE 3
#define VDEV0_VRING_BASE (0x88000000U)
#define VDEV1_VRING_BASE (0x88010000U)
#endif
