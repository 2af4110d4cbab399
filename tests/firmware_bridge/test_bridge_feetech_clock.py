"""Feetech STS codec / bus emulator and the clock model, without any process."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from edgevla.firmware_bridge.servos import feetech as ft
from edgevla.firmware_bridge.link.clock_sync import ClockSync


def test_known_packet_bytes():
    # READ present position (0x38, 2 bytes) of servo 1
    assert ft.read(1, ft.ADDR_PRESENT_POSITION, 2) == bytes.fromhex("ffff0104023802be")
    pkt = ft.sync_write_u16(ft.ADDR_GOAL_POSITION, [1, 2], [2048, 0x0123])
    assert pkt == bytes.fromhex("ffff fe0a 83 2a02 01 0008 02 2301".replace(" ", "")) + \
        bytes([ft.checksum(pkt[2:-1])])


def test_rad_counts_convention():
    assert ft.rad_to_counts(0.0) == 2048
    assert ft.rad_to_counts(np.pi / 2) == 3072
    assert ft.rad_to_counts(-np.pi / 2) == 1024
    assert ft.rad_to_counts(10.0) == 4095 and ft.rad_to_counts(-10.0) == 0
    c = np.arange(0, 4096)
    np.testing.assert_array_equal(ft.rad_to_counts(ft.counts_to_rad(c)), c)


@settings(max_examples=examples(200), deadline=None)
@given(pkts=st.lists(st.tuples(st.integers(0, 253), st.integers(0, 255),
                               st.binary(max_size=40)), min_size=1, max_size=8),
       noise=st.lists(st.binary(max_size=5), min_size=8, max_size=8),
       chunk=st.integers(1, 17))
def test_parser_recovers_packets_between_noise(pkts, noise, chunk):
    data = bytearray()
    for (i, instr, params), junk in zip(pkts, noise):
        # noise that cannot look like a header start (the parser must not need it, but a
        # random FF FF in junk could legitimately start a packet that swallows the next)
        data += bytes(b for b in junk if b != 0xFF)
        data += ft.Packet(i, instr, params).encode()
    parser = ft.PacketParser()
    got = []
    for k in range(0, len(data), chunk):
        got += list(parser.feed(bytes(data[k:k + chunk])))
    assert [(q.id, q.instr, q.params) for q in got] == [(i, s, bytes(pp)) for i, s, pp in pkts]


def test_bus_sim_answers_sync_read_and_applies_sync_write():
    pos = np.array([100, 200, 300, 400, 500, 600])
    goals = []
    bus = ft.FeetechBusSim("/dev/null", range(1, 7), lambda: pos, goals.append)
    reply = bus.handle(next(ft.PacketParser().feed(
        ft.sync_read(ft.ADDR_PRESENT_POSITION, 2, [3, 1]))))
    got = list(ft.PacketParser().feed(reply))
    assert [(q.id, q.instr, q.params) for q in got] == [(3, 0, bytes([44, 1])),
                                                       (1, 0, bytes([100, 0]))]
    bus.handle(next(ft.PacketParser().feed(
        ft.sync_write_u16(ft.ADDR_GOAL_POSITION, [2, 6], [1000, 3000]))))
    assert goals[-1].tolist() == [2048, 1000, 2048, 2048, 2048, 3000]
    bus.handle(ft.Packet(ft.BROADCAST_ID, ft.INST_WRITE, bytes([ft.ADDR_TORQUE_ENABLE, 1])))
    assert bus.torque
    with pytest.raises(ValueError):
        ft.FeetechBusSim("/dev/null", [1, 1], lambda: pos, goals.append)


@settings(max_examples=examples(100), deadline=None)
@given(offset_ms=st.floats(-1e6, 1e6), drift_ppm=st.floats(-500, 500),
       seed=st.integers(0, 2**31))
def test_clock_sync_recovers_offset_and_drift(offset_ms, drift_ppm, seed):
    """Synthetic link: asymmetric random delays; the estimate lands within the jitter."""
    rng = np.random.default_rng(seed)
    cs = ClockSync(window=256)
    offset_ns, drift = offset_ms * 1e6, drift_ppm * 1e-6
    t = 1_000_000_000_000
    for _ in range(200):
        t += int(rng.integers(10_000_000, 30_000_000))  # ~4 s of pings
        up = 40_000 + rng.exponential(60_000)
        down = 40_000 + rng.exponential(60_000)
        mcu_ns = (t + up) + offset_ns + drift * (t + up - 1_000_000_000_000)
        cs.add(t, int(mcu_ns // 1000), int(t + up + down))
    est = cs.estimate()
    assert abs(est.drift_ppm - drift_ppm) < 30
    probe = t + 1_000_000
    truth = probe + offset_ns + drift * (probe - 1_000_000_000_000)
    assert abs(est.host_to_mcu_us(probe) * 1000 - truth) < 100_000  # 100 us
    back = est.mcu_to_host_ns(est.host_to_mcu_us(probe))
    assert abs(int(back) - probe) < 2_000


def test_clock_sync_rejects_time_travel():
    with pytest.raises(ValueError):
        ClockSync().add(10, 0, 5)
