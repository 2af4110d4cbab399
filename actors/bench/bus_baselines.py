"""The bus benchmark's baselines: gRPC + pickle (LeRobot's transport) and multiprocessing.Queue.

``grpc_pickle`` makes gRPC unary calls carrying pickled observations, as LeRobot's async
inference ships them; ``mp_queue`` is multiprocessing.Queue (pickle + pipe), the stdlib default.

This module is the one place pickle is allowed: it is the baseline being measured, never a data
path (tests/system/test_security.py names it).
"""

from __future__ import annotations

import multiprocessing as mp
import pickle  # noqa: S403 - the gRPC+pickle / mp.Queue baselines only
import time
from typing import Any

from edgevla.actors.bench.bus_measure import SIZES, latency_stats, rtt_stats, sleep_until


def _recv_mpq(q, n: int, ready, out_q, ack=None) -> None:
    ready.set()
    lat: list[int] = []
    t_first = t_last = 0
    while len(lat) < n:
        try:
            t_send, payload = q.get(timeout=5)
        except Exception:  # noqa: BLE001 - queue.Empty: report what arrived
            break
        now = time.monotonic_ns()
        if ack is not None:
            ack.put(t_send)
        lat.append(now - t_send)
        t_first = t_first or now
        t_last = now
    out_q.put((lat, t_first, t_last))


def _serve_grpc(port: int, n: int, ready, out_q) -> None:
    from concurrent import futures

    import grpc

    lat: list[int] = []
    stamps: list[int] = []

    def handle(request: bytes, context) -> bytes:
        obj = pickle.loads(request)  # noqa: S301 - LeRobot's transport, measured as a baseline
        now = time.monotonic_ns()
        lat.append(now - obj["t_ns"])
        stamps.append(now)
        return b""

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1), options=[
        ("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    handler = grpc.method_handlers_generic_handler("bench.Bus", {
        "Send": grpc.unary_unary_rpc_method_handler(handle)})
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    ready.set()
    deadline = time.monotonic() + 120
    while len(lat) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    server.stop(0)
    out_q.put((lat, stamps[0] if stamps else 0, stamps[-1] if stamps else 0))


def _run_one(mode: str, size: str, n: int, period_s: float) -> dict[str, Any]:
    """grpc_pickle or mp_queue: paced latency run, then an unpaced burst."""
    arr = SIZES[size]()
    ctx_mp = mp.get_context("spawn")
    ready, out_q = ctx_mp.Event(), ctx_mp.Queue()
    rtt: list[int] = []
    if mode == "mp_queue":
        q = ctx_mp.Queue(maxsize=0)
        ack = ctx_mp.Queue() if period_s else None
        proc = ctx_mp.Process(target=_recv_mpq, args=(q, n, ready, out_q, ack), daemon=True)
        proc.start()
        ready.wait(30)
        for i in range(n):
            t = time.monotonic_ns()
            q.put((t, arr))
            if ack is not None:
                ack.get(timeout=30)
                rtt.append(time.monotonic_ns() - t)
            if period_s:
                sleep_until(t + int(period_s * 1e9))
        lat, t_first, t_last = out_q.get(timeout=120)
        proc.join(10)
    elif mode == "grpc_pickle":
        import grpc

        port = _free_port()
        proc = ctx_mp.Process(target=_serve_grpc, args=(port, n, ready, out_q), daemon=True)
        proc.start()
        ready.wait(30)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[
            ("grpc.max_send_message_length", 64 * 1024 * 1024)])
        rpc = channel.unary_unary("/bench.Bus/Send")
        grpc.channel_ready_future(channel).result(timeout=30)
        for i in range(n):
            t = time.monotonic_ns()
            rpc(pickle.dumps({"t_ns": t, "observation": arr}))
            rtt.append(time.monotonic_ns() - t)
            if period_s:
                sleep_until(t + int(period_s * 1e9))
        lat, t_first, t_last = out_q.get(timeout=120)
        channel.close()
        proc.join(10)
    else:
        raise ValueError(mode)
    return {"lat": lat, "t_first": t_first, "t_last": t_last, "nbytes": arr.nbytes, "n": n,
            "rtt": rtt}


def baseline(mode: str, size: str, n: int, n_thr: int, period_s: float) -> dict[str, Any]:
    paced = _run_one(mode, size, n, period_s)
    t0 = time.monotonic_ns()
    burst = _run_one(mode, size, n_thr, 0.0)
    out = {**latency_stats(paced["lat"], [], n, paced["nbytes"], t0), **rtt_stats(paced["rtt"])}
    elapsed = max((burst["t_last"] - burst["t_first"]) / 1e9, 1e-9)
    out["msgs_per_s"] = (len(burst["lat"]) - 1) / elapsed
    out["MB_per_s"] = out["msgs_per_s"] * paced["nbytes"] / 1e6
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
