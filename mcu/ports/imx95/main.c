/* imx95 port: the firmware on the i.MX 95 Cortex-M7, talking to Linux on the A55 cores over
 * RPMsg-lite. The endpoint announces "rpmsg-virtual-tty-channel-1", which Linux's
 * imx_rpmsg_tty driver turns into /dev/ttyRPMSG<addr>: the bridge opens it with pyserial
 * exactly like a UART. One link frame (<= 496 bytes) always fits one RPMsg buffer.
 *
 * Servos: Feetech STS bus on an LPUART at 1 Mbaud (through a half-duplex bus adapter such as
 * the SO-100's Waveshare board). 1 kHz tick from SysTick; time from SysTick count + VAL.
 *
 * Clocks and pads of the M7 belong to the System Manager: they are requested over SCMI
 * (hal_clock/hal_pinctrl on top of sm_platform), never written to the CCM/IOMUXC directly.
 *
 * Built with the NXP MCUXpresso SDK sources (see README.md); CI type-checks it against the
 * stand-in headers of tests/imx95_stubs. */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "fsl_common.h"
#include "fsl_lpuart.h"
#include "hal_clock.h"
#include "pin_mux.h"
#include "rpmsg_lite.h"
#include "rpmsg_ns.h"
#include "rsc_table.h"
#include "sm_platform.h"

#include "evla_fw.h"
#include "evla_imx95_config.h"

#define RX_RING 4096u /* power of two */

static volatile uint8_t g_rx[RX_RING];
static volatile uint32_t g_rx_head, g_rx_tail, g_rx_overflow;
static volatile uint8_t g_srx[512];
static volatile uint32_t g_srx_head, g_srx_tail;
static volatile uint32_t g_ms;
static volatile uint32_t g_remote_addr = RL_ADDR_ANY;

static struct rpmsg_lite_instance g_rl_ctx; /* RL_USE_STATIC_API: no heap */
static struct rpmsg_lite_ept_static_context g_ept_ctx;
static struct rpmsg_lite_instance *g_rl;
static struct rpmsg_lite_endpoint *g_ept;
static evla_fw_t g_fw;
static uint32_t g_tx_dropped;

void SysTick_Handler(void);
void SysTick_Handler(void) { g_ms++; }

static uint64_t now_us(void)
{
    uint32_t ms, val;
    do {
        ms = g_ms;
        val = SysTick->VAL;
    } while (ms != g_ms);
    uint32_t per_us = SystemCoreClock / 1000000u;
    return (uint64_t)ms * 1000u + (SysTick->LOAD - val) / per_us;
}

/* RPMsg receive callback (interrupt context): copy into the ring, release the buffer. */
static int32_t link_rx_cb(void *payload, uint32_t len, uint32_t src, void *priv)
{
    (void)priv;
    g_remote_addr = src;
    const uint8_t *d = payload;
    for (uint32_t i = 0; i < len; i++) {
        uint32_t next = (g_rx_head + 1u) & (RX_RING - 1u);
        if (next == g_rx_tail) {
            g_rx_overflow++;
            break;
        }
        g_rx[g_rx_head] = d[i];
        g_rx_head = next;
    }
    return RL_RELEASE;
}

static void link_write(void *ctx, const uint8_t *d, size_t n)
{
    (void)ctx;
    if (g_remote_addr == RL_ADDR_ANY) /* Linux has not opened the tty yet */
        return;
    if (rpmsg_lite_send(g_rl, g_ept, g_remote_addr, (char *)(uintptr_t)d, (uint32_t)n,
                        RL_DONT_BLOCK) != RL_SUCCESS)
        g_tx_dropped++;
}

static void servo_write(void *ctx, const uint8_t *d, size_t n)
{
    (void)ctx;
    (void)LPUART_WriteBlocking(EVLA_SERVO_LPUART, d, n); /* 30 bytes at 1 Mbaud: 0.3 ms */
}

void EVLA_SERVO_LPUART_IRQHandler(void);
void EVLA_SERVO_LPUART_IRQHandler(void)
{
    while (LPUART_GetStatusFlags(EVLA_SERVO_LPUART) & kLPUART_RxDataRegFullFlag) {
        uint8_t b = LPUART_ReadByte(EVLA_SERVO_LPUART);
        uint32_t next = (g_srx_head + 1u) % sizeof g_srx;
        if (next != g_srx_tail) {
            g_srx[g_srx_head] = b;
            g_srx_head = next;
        }
    }
    SDK_ISR_EXIT_BARRIER;
}

static void servo_uart_init(void)
{
    /* the LPUART root clock is the System Manager's: 24 MHz oscillator, divider 1
     * (1 Mbaud = 24 MHz / (OSR 24 * SBR 1), exact) */
    hal_clk_t clk = {
        .clk_id = EVLA_SERVO_LPUART_CLOCK_ROOT,
        .pclk_id = hal_clock_osc24m,
        .div = 1,
        .enable_clk = true,
        .clk_round_opt = hal_clk_round_auto,
    };
    HAL_ClockSetRootClk(&clk);

    lpuart_config_t c;
    LPUART_GetDefaultConfig(&c);
    c.baudRate_Bps = 1000000u;
    c.enableTx = true;
    c.enableRx = true;
    uint32_t src_hz = (uint32_t)HAL_ClockGetIpFreq(EVLA_SERVO_LPUART_CLOCK_ROOT);
    (void)LPUART_Init(EVLA_SERVO_LPUART, &c, src_hz);
    LPUART_EnableInterrupts(EVLA_SERVO_LPUART, kLPUART_RxDataRegFullInterruptEnable);
    EnableIRQ(EVLA_SERVO_LPUART_IRQn);
}

/* What the SDK's RPMsg examples do in BOARD_InitHardware, without their SRTM/FreeRTOS part. */
static void hardware_init(void)
{
    SM_Platform_Init();   /* SCMI channel to the System Manager (MU5) */
    BOARD_InitBootPins(); /* LPUART3 pads (BOARD_DEBUG_UART_INSTANCE 3 of board.h) */
    copyResourceTable();  /* to TCM and DRAM, where Linux remoteproc reads it */
}

int main(void)
{
    hardware_init();
    servo_uart_init();
    (void)SysTick_Config(SystemCoreClock / EVLA_TICK_HZ);

    g_rl = rpmsg_lite_remote_init((void *)(uintptr_t)EVLA_RPMSG_SHMEM_BASE, EVLA_RPMSG_LINK_ID,
                                  RL_NO_FLAGS, &g_rl_ctx);
    while (!rpmsg_lite_is_link_up(g_rl)) {
    }
    g_ept = rpmsg_lite_create_ept(g_rl, EVLA_RPMSG_LOCAL_EPT_ADDR, link_rx_cb, NULL, &g_ept_ctx);
    (void)rpmsg_ns_announce(g_rl, g_ept, EVLA_RPMSG_CHANNEL_NAME, (uint32_t)RL_NS_CREATE);

    evla_fw_config_t cfg;
    evla_fw_default_config(&cfg);
    cfg.torque_off_ms = EVLA_TORQUE_OFF_MS;
    cfg.servo_miss_hold = EVLA_SERVO_MISS_HOLD;
    evla_port_t port = {NULL, link_write, servo_write};
    evla_fw_init(&g_fw, &port, &cfg, now_us());

    uint64_t next_tick_us = now_us() + 1000u;
    uint8_t chunk[128];
    for (;;) {
        uint32_t systicks = g_ms;
        int work = 0;
        size_t n = 0;
        while (g_rx_tail != g_rx_head && n < sizeof chunk) {
            chunk[n++] = g_rx[g_rx_tail];
            g_rx_tail = (g_rx_tail + 1u) & (RX_RING - 1u);
        }
        if (n) {
            evla_fw_link_rx(&g_fw, chunk, n, now_us());
            work = 1;
        }
        n = 0;
        while (g_srx_tail != g_srx_head && n < sizeof chunk) {
            chunk[n++] = g_srx[g_srx_tail];
            g_srx_tail = (g_srx_tail + 1u) % sizeof g_srx;
        }
        if (n) {
            evla_fw_servo_rx(&g_fw, chunk, n);
            work = 1;
        }
        uint64_t now = now_us();
        if (now > next_tick_us + 100000u)
            next_tick_us = now - now % 1000u;
        while (next_tick_us <= now) {
            evla_fw_tick(&g_fw, next_tick_us);
            next_tick_us += 1000u;
            work = 1;
        }
        if (!work) {
            __disable_irq();
            if (g_rx_tail == g_rx_head && g_srx_tail == g_srx_head && systicks == g_ms)
                __WFI();
            __enable_irq();
        }
    }
}
