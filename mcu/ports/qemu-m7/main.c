/* qemu-m7 port: bare-metal Cortex-M7 on qemu-system-arm -M mps2-an500.
 *
 * Link on CMSDK UART0 (0x40004000; QEMU: -serial pty), received under interrupt into a
 * ring buffer (the CMSDK RX register holds one byte, so polling from a 1 ms loop would cap
 * the link at 1 kB/s). SysTick at 1 kHz from the 25 MHz core clock drives the control
 * tick; the main loop sleeps in WFI between interrupts. Servos: there is no second bus in
 * this emulated board, so six simulated STS servos (evla_servo_sim) answer the driver's
 * packets in-process. */
#include <stdint.h>

#include "evla_fw.h"
#include "evla_servo_sim.h"

#define SYSCLK_HZ 25000000u

typedef struct {
    volatile uint32_t DATA;
    volatile uint32_t STATE;
    volatile uint32_t CTRL;
    volatile uint32_t INTSTATUS; /* write 1 to clear */
    volatile uint32_t BAUDDIV;
} cmsdk_uart_t;

#define UART0 ((cmsdk_uart_t *)0x40004000u)
#define UART_STATE_TXFULL 0x1u
#define UART_STATE_RXFULL 0x2u
#define UART_CTRL_TXEN 0x1u
#define UART_CTRL_RXEN 0x2u
#define UART_CTRL_RXIRQ 0x8u
#define UART_INT_RX 0x2u

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define NVIC_ISER0 (*(volatile uint32_t *)0xE000E100u)

/* CMSDK APB dual timer, timer 1 */
#define DT1_LOAD (*(volatile uint32_t *)0x40002000u)
#define DT1_VALUE (*(volatile uint32_t *)0x40002004u)
#define DT1_CONTROL (*(volatile uint32_t *)0x40002008u)
#define DT_CTRL_ENABLE 0x80u
#define DT_CTRL_32BIT 0x02u
#define UART0RX_IRQn 0

#define RX_RING 2048u /* power of two */
static volatile uint8_t g_rx[RX_RING];
static volatile uint32_t g_rx_head, g_rx_tail, g_rx_overflow;
static volatile uint32_t g_ms;

static evla_fw_t g_fw;
static evla_servo_sim_t g_servos;

void SysTick_Handler(void);
void UART0RX_Handler(void);

void SysTick_Handler(void) { g_ms++; }

void UART0RX_Handler(void)
{
    /* Clear the interrupt before reading DATA: reading lets QEMU deliver the next byte at
     * once, and clearing afterwards would swallow that byte's interrupt. */
    while (UART0->STATE & UART_STATE_RXFULL) {
        UART0->INTSTATUS = UART_INT_RX;
        uint8_t b = (uint8_t)UART0->DATA;
        uint32_t next = (g_rx_head + 1u) & (RX_RING - 1u);
        if (next == g_rx_tail) {
            g_rx_overflow++;
            continue;
        }
        g_rx[g_rx_head] = b;
        g_rx_head = next;
    }
    UART0->INTSTATUS = UART_INT_RX;
}

static uint64_t g_timer_counts;
static uint32_t g_timer_last;

/* Main context only. The 32-bit down counter wraps every 171 s; we read it every ms. */
static uint64_t now_us(void)
{
    uint32_t v = DT1_VALUE;
    g_timer_counts += (uint32_t)(g_timer_last - v);
    g_timer_last = v;
    return g_timer_counts / (SYSCLK_HZ / 1000000u);
}

static void link_write(void *ctx, const uint8_t *d, size_t n)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        while (UART0->STATE & UART_STATE_TXFULL) {
        }
        UART0->DATA = d[i];
    }
}

static void servo_write(void *ctx, const uint8_t *d, size_t n)
{
    (void)ctx;
    evla_servo_sim_rx(&g_servos, d, n);
}

int main(void)
{
    UART0->BAUDDIV = SYSCLK_HZ / 1000000u * 16u; /* any value >= 16; QEMU does not pace */
    UART0->CTRL = UART_CTRL_TXEN | UART_CTRL_RXEN | UART_CTRL_RXIRQ;
    NVIC_ISER0 = 1u << UART0RX_IRQn;

    DT1_LOAD = 0xFFFFFFFFu;
    DT1_CONTROL = DT_CTRL_ENABLE | DT_CTRL_32BIT; /* free-running, no interrupt, /1 */
    g_timer_last = DT1_VALUE;

    SYST_RVR = SYSCLK_HZ / EVLA_TICK_HZ - 1u;
    SYST_CVR = 0;
    SYST_CSR = 0x7u; /* enable, interrupt, core clock */

    evla_fw_config_t cfg;
    evla_fw_default_config(&cfg);
    evla_servo_sim_init(&g_servos, cfg.servo_ids);
    evla_port_t port = {0, link_write, servo_write};
    evla_fw_init(&g_fw, &port, &cfg, now_us());

    uint64_t next_tick_us = 1000u;
    uint8_t chunk[64];
    for (;;) {
        uint32_t systicks = g_ms; /* a SysTick after this point must not be slept through */
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
        uint64_t now = now_us();
        if (now > next_tick_us + 100000u) /* far behind (debugger, host stall): skip */
            next_tick_us = now - now % 1000u;
        while (next_tick_us <= now) {
            evla_fw_tick(&g_fw, next_tick_us);
            next_tick_us += 1000u;
            evla_servo_sim_step_1ms(&g_servos);
            size_t sn = evla_servo_sim_take(&g_servos, chunk, sizeof chunk);
            while (sn) {
                evla_fw_servo_rx(&g_fw, chunk, sn);
                sn = evla_servo_sim_take(&g_servos, chunk, sizeof chunk);
            }
            work = 1;
        }
        if (!work) {
            /* sleep until the next interrupt; PRIMASK closes the check-then-sleep race */
            __asm volatile("cpsid i" ::: "memory");
            if (g_rx_tail == g_rx_head && systicks == g_ms)
                __asm volatile("wfi");
            __asm volatile("cpsie i" ::: "memory");
        }
    }
}
