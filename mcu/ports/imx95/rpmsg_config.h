/* rpmsg-lite configuration of the imx95 port (found before the SDK example's rpmsg_config.h,
 * which renames MU7_B_IRQHandler for its SRTM/FreeRTOS application). Buffer size and count
 * match the resource table of the SDK board files (rsc_table.c) and NXP's Linux device tree:
 * 256 buffers of 496 bytes per direction, vrings of 0x8000 bytes. */
#ifndef RPMSG_CONFIG_H_
#define RPMSG_CONFIG_H_

#define RL_MS_PER_INTERVAL (1)
#define RL_BUFFER_PAYLOAD_SIZE (496U)
#define RL_BUFFER_COUNT (256U)
#define RL_API_HAS_ZEROCOPY (1)
/* no heap: the instance and the endpoint live in static storage of main.c */
#define RL_USE_STATIC_API (1)
#define RL_CLEAR_USED_BUFFERS (0)
#define RL_USE_MCMGR_IPC_ISR_HANDLER (0)
#define RL_USE_ENVIRONMENT_CONTEXT (0)
#define RL_DEBUG_CHECK_BUFFERS (0)

#endif
