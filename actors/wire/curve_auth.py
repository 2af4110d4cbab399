"""Who may connect: a ZAP handler that admits only the CURVE keys of a graph's machines.

Without one, a CURVE server encrypts for any client that knows its public key. With machines
in a graph, each publisher's process runs this handler (pyzmq's ThreadAuthenticator) and
refuses every other key, saying so once per key in its log.
"""

from __future__ import annotations

import logging

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

log = logging.getLogger("edgevla.curve")
ZAP_DOMAIN = "edgevla"


class _Admit:
    """The key list: z85 public keys of the graph's machines."""

    def __init__(self, allowed: dict[bytes, str]) -> None:
        self.allowed = allowed
        self.refused: set[bytes] = set()

    def callback(self, domain: str, key: bytes) -> bool:
        if key in self.allowed:
            return True
        if key not in self.refused:
            self.refused.add(key)
            log.error("refused a connection: CURVE key %s... is not one of the graph's machines "
                      "(%s); that peer's keys are not the ones `edgevla keys` wrote for this "
                      "graph", key[:8].decode(errors="replace"), ", ".join(sorted(self.allowed.values())))
        return False


def start_authenticator(ctx: zmq.Context, allowed: dict[str, str]) -> ThreadAuthenticator:
    """Admit the public keys in ``allowed`` (z85 key -> machine name) on ``ctx``'s CURVE servers."""
    auth = ThreadAuthenticator(ctx, log=logging.getLogger("edgevla.curve.zap"))
    auth.start()
    auth.configure_curve_callback(domain=ZAP_DOMAIN, credentials_provider=_Admit(
        {k.encode(): m for k, m in allowed.items()}))
    return auth



_FAILED = {zmq.EVENT_HANDSHAKE_FAILED_AUTH: "refused this machine's key",
           zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "does not hold the key this graph lists for it",
           zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "does not hold the key this graph lists for it"}


class HandshakeWatch:
    """A client socket's failed CURVE handshakes, said once per endpoint in the log: the other
    side of a refusal."""

    def __init__(self, sock: zmq.Socket) -> None:
        events = 0
        for e in _FAILED:
            events |= e
        self.socket = sock.get_monitor_socket(events)
        self.said: set[str] = set()

    def drain(self) -> None:
        while self.socket.poll(0):
            msg = recv_monitor_message(self.socket)
            endpoint = msg.get("endpoint", b"").decode(errors="replace")
            why = _FAILED.get(msg.get("event"))
            if why and endpoint not in self.said:
                self.said.add(endpoint)
                log.error("CURVE handshake with %s failed: the publisher there %s; the machines' "
                          "keys do not match (`edgevla keys` makes them once, each machine gets "
                          "every .key file)", endpoint, why)

    def close(self) -> None:
        self.socket.close(linger=0)
