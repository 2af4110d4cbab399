"""`edgevla bench bus`'s row between machines, short: frames over tcp with CURVE, raw and JPEG,
all delivered, JPEG a fraction of the bytes on the wire."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.timing, pytest.mark.timeout(120)]


def test_frames_cross_raw_and_as_jpeg_and_jpeg_needs_a_fraction_of_the_link():
    from edgevla.actors.bench.bus_link import LINK_MODES, run_link

    rows = {r["transport"]: r for r in run_link(20, base_port=7700)}
    assert set(rows) == set(LINK_MODES)
    assert all(r["lost"] == 0 and r["p50_us"] > 0 for r in rows.values()), rows
    raw, q90, q75 = (rows[m]["link_Mbit_s_3cam_30fps"] for m in
                     ("tcp_curve_raw", "tcp_curve_jpeg90", "tcp_curve_jpeg75"))
    assert raw == pytest.approx(640 * 480 * 3 * 8 * 90 / 1e6, rel=0.01)  # 3 cameras x 30 fps
    assert q75 < q90 < raw / 10
