/* Board wiring of the imx95 port. Defaults follow the MCUXpresso SDK's
 * multicore_examples/rpmsg_lite_str_echo_rtos for the i.MX 95 EVK; override with -D. */
#ifndef EVLA_IMX95_CONFIG_H
#define EVLA_IMX95_CONFIG_H

#include "rpmsg_platform.h"

/* Shared memory of the vrings: must match the Linux device tree. The resource table of the
 * board files (rsc_table.c) has two vdevs: vdev0 for SRTM (link 0), vdev1 for the user link
 * (link 1, RL_PLATFORM_IMX95_M7_A55_USER_LINK_ID). The user link uses vdev1's vrings. */
#ifndef EVLA_RPMSG_SHMEM_BASE
#ifdef VDEV1_VRING_BASE /* board.h of the SDK board files */
#define EVLA_RPMSG_SHMEM_BASE (VDEV1_VRING_BASE)
#else
#define EVLA_RPMSG_SHMEM_BASE (0x88010000U) /* vdev1vring0 in NXP's imx95 *-rpmsg.dts */
#endif
#endif
#ifndef EVLA_RPMSG_LINK_ID
#define EVLA_RPMSG_LINK_ID (RL_PLATFORM_IMX95_M7_A55_USER_LINK_ID)
#endif
/* Linux names the tty after this address: 30 -> /dev/ttyRPMSG30 */
#ifndef EVLA_RPMSG_LOCAL_EPT_ADDR
#define EVLA_RPMSG_LOCAL_EPT_ADDR (30U)
#endif
#ifndef EVLA_RPMSG_CHANNEL_NAME
#define EVLA_RPMSG_CHANNEL_NAME "rpmsg-virtual-tty-channel-1"
#endif

/* Safety: held this long after the host is lost (watchdog) or stops, then torque off; and the
 * read cycles (10 ms each) a silent servo is given before the arm holds. */
#ifndef EVLA_TORQUE_OFF_MS
#define EVLA_TORQUE_OFF_MS (3000U)
#endif
#ifndef EVLA_SERVO_MISS_HOLD
#define EVLA_SERVO_MISS_HOLD (5U)
#endif

/* Feetech STS servo bus. LPUART3 is the M7's debug UART of the EVK board files (board.h:
 * BOARD_DEBUG_UART_INSTANCE 3); the firmware prints nothing, so the bus takes it, and
 * BOARD_InitBootPins() of the example's pin_mux.c muxes its pads (GPIO_IO14/IO15). Another
 * LPUART needs its pads muxed and the System Manager configuration to grant it to the M7. The
 * clock root is a hal_clk_id_e of hal_clock_platform.h (SCMI clock id), not a CCM root. */
#ifndef EVLA_SERVO_LPUART
#define EVLA_SERVO_LPUART LPUART3
#define EVLA_SERVO_LPUART_IRQn LPUART3_IRQn
#define EVLA_SERVO_LPUART_IRQHandler LPUART3_IRQHandler
#define EVLA_SERVO_LPUART_CLOCK_ROOT hal_clock_lpuart3
#endif

#endif
