/* Board wiring of the imx95 port. Defaults follow the MCUXpresso SDK's
 * multicore_examples/rpmsg_lite_str_echo_rtos for the i.MX 95 EVK; override with -D. */
#ifndef EVLA_IMX95_CONFIG_H
#define EVLA_IMX95_CONFIG_H

#include "rpmsg_platform.h"

/* Shared memory of the vrings: must match the Linux device tree (vdev0vring0 reserved memory). */
#ifndef EVLA_RPMSG_SHMEM_BASE
#ifdef VDEV0_VRING_BASE /* the SDK example's app.h */
#define EVLA_RPMSG_SHMEM_BASE (VDEV0_VRING_BASE)
#else
#define EVLA_RPMSG_SHMEM_BASE (0x88000000U) /* vdev0vring0 in NXP's imx95 *-rpmsg.dts */
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

/* Feetech STS servo bus */
#ifndef EVLA_SERVO_LPUART
#define EVLA_SERVO_LPUART LPUART3
#define EVLA_SERVO_LPUART_IRQn LPUART3_IRQn
#define EVLA_SERVO_LPUART_IRQHandler LPUART3_IRQHandler
#endif
#ifndef EVLA_SERVO_LPUART_CLK_FREQ
#define EVLA_SERVO_LPUART_CLK_FREQ (CLOCK_GetIpFreq(kCLOCK_Root_Lpuart3))
#endif

#endif
