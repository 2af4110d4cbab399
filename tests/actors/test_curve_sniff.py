"""What crosses the link between machines, read off the wire by a relay the test puts between
subscriber and publisher: with CURVE nothing of a message is readable, and a subscriber whose
key the publisher's machine does not admit gets not one byte of data."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest
import zmq

from edgevla.actors.wire.bus import CurveKeys, Publisher, Subscriber
from edgevla.actors.wire.curve_auth import ZAP_DOMAIN, start_authenticator
from edgevla.actors.wire.messages import Frame

pytestmark = [pytest.mark.timing, pytest.mark.timeout(60)]
MARK = b"SNIFF-ME-CAMERA"


class Relay:
    """Forwards one tcp connection to ``target`` and keeps every byte either way."""

    def __init__(self, target_port: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target = target_port
        self.seen = bytearray()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        up = socket.create_connection(("127.0.0.1", self.target))
        for a, b in ((conn, up), (up, conn)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src, dst) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.seen += data
            try:
                dst.sendall(data)
            except OSError:
                return


def _exchange(curve_pub, curve_sub, port: int, admit=None):
    ctx = zmq.Context()
    auth = start_authenticator(ctx, admit) if admit else None
    pub = Publisher(ctx, f"tcp://127.0.0.1:{port}", producer="cam", curve=curve_pub)
    relay = Relay(port)
    sub = Subscriber(ctx, [f"tcp://127.0.0.1:{relay.port}"], ["cam/top"], curve=curve_sub)
    image = np.full((48, 64, 3), 0xAB, np.uint8)
    got = None
    try:
        for _ in range(100):  # up to 5 s for the connection and its handshake on a loaded machine
            pub.send("cam/top", Frame(camera=MARK.decode(), image=image))
            got = got or sub.recv(50)
            if got and len(relay.seen) > 48 * 64 * 3:
                break
        return got, bytes(relay.seen)
    finally:
        pub.close()
        sub.sock.close(linger=0)
        if auth:
            auth.stop()
        ctx.term()


def _pair():
    pub, sec = zmq.curve_keypair()
    return pub, sec


def test_plain_tcp_shows_the_message_and_curve_hides_it():
    got, wire = _exchange(None, None, 7801)
    assert got is not None and MARK in wire and b"\xab" * 256 in wire  # readable on the wire
    spub, ssec = _pair()
    cpub, csec = _pair()
    server = CurveKeys(public=spub, secret=ssec, zap_domain=ZAP_DOMAIN)
    client = CurveKeys(public=cpub, secret=csec, server_public=spub)
    got, wire = _exchange(server, client, 7802, admit={cpub.decode(): "robot"})
    assert got is not None and got[1].camera == MARK.decode()  # delivered...
    assert len(wire) > 48 * 64 * 3 and MARK not in wire and b"\xab" * 16 not in wire  # ...unreadable


def test_a_key_the_publisher_does_not_admit_gets_no_data():
    spub, ssec = _pair()
    cpub, csec = _pair()
    other, _ = _pair()
    server = CurveKeys(public=spub, secret=ssec, zap_domain=ZAP_DOMAIN)
    client = CurveKeys(public=cpub, secret=csec, server_public=spub)
    got, wire = _exchange(server, client, 7803, admit={other.decode(): "robot"})
    assert got is None
    assert MARK not in wire and len(wire) < 48 * 64 * 3  # a handshake, then nothing
