/* Replay a scripted link session through the firmware core, tick by tick, for the
 * hypothesis property tests (tests/mcu/test_mcu_properties.py).
 *
 * stdin, one command per line:
 *   F <hex>      feed these link bytes (wire frames, or garbage) at the current time
 *   T <t_us>     run 1 kHz ticks up to and including MCU time t_us
 * stdout:
 *   K <t_us> <cmd0..cmd5> <mode> <queue_depth> <faults>     after every tick
 *   O <canonical frame>                                        every frame the MCU sent
 * The firmware starts DISABLED at t=0 with default config except state reports off;
 * servos are the in-process simulation (evla_servo_sim), measured = 0 rad at start. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evla_fw.h"
#include "evla_servo_sim.h"

static evla_fw_t fw;
static evla_servo_sim_t sim;
static evla_stream_t out_stream;

static void link_write(void *ctx, const uint8_t *d, size_t n)
{
    (void)ctx;
    static evla_msg_t m;
    static char text[8192];
    for (size_t i = 0; i < n; i++) {
        int got = 0;
        evla_stream_push(&out_stream, d[i], &m, &got);
        if (got) {
            evla_format_msg(&m, text, sizeof text);
            printf("O %s\n", text);
        }
    }
}

static void servo_write(void *ctx, const uint8_t *d, size_t n)
{
    (void)ctx;
    evla_servo_sim_rx(&sim, d, n);
}

int main(void)
{
    evla_fw_config_t cfg;
    evla_fw_default_config(&cfg);
    cfg.state_period_ms = 0;
    evla_port_t port = {NULL, link_write, servo_write};
    evla_servo_sim_init(&sim, cfg.servo_ids);
    evla_stream_init(&out_stream);
    uint64_t now = 0;
    evla_fw_init(&fw, &port, &cfg, now);

    static char line[1 << 16];
    static uint8_t bytes[1 << 15];
    uint8_t sbuf[256];
    while (fgets(line, sizeof line, stdin)) {
        if (line[0] == 'F' && line[1] == ' ') {
            size_t n = 0;
            const char *h = line + 2;
            while (h[0] && h[1] && h[0] != '\n' && n < sizeof bytes) {
                unsigned v;
                if (sscanf(h, "%2x", &v) != 1)
                    break;
                bytes[n++] = (uint8_t)v;
                h += 2;
            }
            evla_fw_link_rx(&fw, bytes, n, now);
        } else if (line[0] == 'T' && line[1] == ' ') {
            uint64_t until = strtoull(line + 2, NULL, 10);
            while (now + 1000u <= until) {
                now += 1000u;
                evla_fw_tick(&fw, now);
                evla_servo_sim_step_1ms(&sim);
                size_t n = evla_servo_sim_take(&sim, sbuf, sizeof sbuf);
                if (n)
                    evla_fw_servo_rx(&fw, sbuf, n);
                evla_state_t st;
                evla_fw_fill_state(&fw, &st);
                printf("K %llu", (unsigned long long)now);
                for (int j = 0; j < EVLA_N_JOINTS; j++)
                    printf(" %.9g", (double)fw.mo.cmd[j]);
                printf(" %u %u %lu\n", (unsigned)fw.mode, (unsigned)fw.mo.count,
                       (unsigned long)st.faults);
            }
        } else if (line[0] != '\n' && line[0] != '#') {
            fprintf(stderr, "ctl_replay: bad line: %s", line);
            return 2;
        }
    }
    return 0;
}
