"""
A chat between two (or more) terminals over direct p2pnet paths.

Start an introducer, then one chat that waits and one that connects:

    p2pnet introducer --port 3478 --interface 127.0.0.1
    python examples/chat.py --introducer 127.0.0.1:3478 --name ann
    python examples/chat.py --introducer 127.0.0.1:3478 --name bob --connect ann

Every line typed is sent to every connected peer; what arrives is printed
as C{<peer> text}, progress as C{* ...} and errors as C{! ...}.  End of
input (Ctrl-D) closes the connections and quits; so does C{--exit-after}.
"""

from __future__ import annotations

import socket
import sys

from twisted.internet import stdio, task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.protocols.basic import LineReceiver
from twisted.python import usage
from twisted.python.failure import Failure
from zope.interface import implementer

from p2pnet import (
    Address,
    P2PError,
    PeerEndpoint,
    PeerFactory,
    PeerProtocol,
    StatusEvent,
    UnknownPeer,
)


def _address(text: str) -> Address:
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"expected HOST:PORT, not {text!r}")
    return Address(socket.gethostbyname(host), int(port))


def _seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


class Options(usage.Options):
    synopsis = "--introducer HOST:PORT --name NAME [--connect OTHER]"
    optParameters = [
        ["introducer", "i", None, "The introducer's HOST:PORT.", _address],
        ["name", "n", None, "Our name (peer id) at the introducer."],
        ["connect", "c", None, "Connect to this peer (else wait to be connected to)."],
        ["retry", None, 30.0, "Seconds to keep trying while OTHER is not registered.", _seconds],
        ["exit-after", None, None, "Quit after this many seconds.", _seconds],
    ]

    def postOptions(self) -> None:
        if self["introducer"] is None or not self["name"]:
            raise usage.UsageError("--introducer and --name are required")


@implementer(IHalfCloseableProtocol)
class Console(LineReceiver):
    """
    The terminal: lines typed go to C{on_line}; output goes through the
    reactor (stdout is non-blocking once stdio owns it, so no print()).
    """

    delimiter = b"\n"

    def __init__(self, on_line, on_eof) -> None:
        self._on_line = on_line
        self._on_eof = on_eof
        self.closed = Deferred()

    def show(self, text: str) -> None:
        if self.transport is not None:
            self.transport.write(text.encode("utf-8") + b"\n")

    def lineReceived(self, line: bytes) -> None:
        self._on_line(line.decode("utf-8", "replace").rstrip("\r"))

    def readConnectionLost(self) -> None:
        self._on_eof()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        if not self.closed.called:
            self.closed.callback(None)


class ChatPeer(PeerProtocol):
    """
    One conversation: print what the peer says.
    """

    def __init__(self, console: Console, peer_id: str) -> None:
        self._console = console
        self._peer_id = peer_id

    def datagram_received(self, data: bytes) -> None:
        self._console.show(f"<{self._peer_id}> {data.decode('utf-8', 'replace')}")

    def connection_lost(self, reason: Failure) -> None:
        self._console.show(f"* {self._peer_id} left: {reason.getErrorMessage()}")


class Everyone(PeerFactory):
    """
    Accept everyone who connects to us.
    """

    def __init__(self, console: Console) -> None:
        self._console = console

    def build_protocol(self, peer_id: str) -> PeerProtocol:
        return ChatPeer(self._console, peer_id)


def describe(event: StatusEvent) -> str:
    """
    One line for a status event.
    """
    if event.kind == "registered":
        return f"* registered, public address {event.address}"
    if event.kind in ("connected", "path-changed"):
        took = f" in {event.elapsed:.3f}s" if event.elapsed is not None else ""
        return f"* {event.kind} {event.peer_id} via {event.path.value} {event.address}{took}"
    words = [f"* {event.kind}"]
    if event.peer_id:
        words.append(event.peer_id)
    if event.detail:
        words.append(f"({event.detail})")
    return " ".join(words)


async def main(reactor, *argv: str) -> None:
    options = Options()
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        sys.stderr.write(f"{options}\nchat.py: {e}\n")
        raise SystemExit(2)

    done: Deferred = Deferred()

    def quit() -> None:
        if not done.called:
            done.callback(None)

    def say(text: str) -> None:
        if not text:
            return
        live = [c for c in endpoint.connections if c.is_open]
        if not live:
            console.show("* nobody to talk to yet")
        for connection in live:
            connection.send(text.encode("utf-8"))

    console = Console(say, quit)
    stdio.StandardIO(console, reactor=reactor)
    endpoint = PeerEndpoint(reactor, options["introducer"], options["name"], factory=Everyone(console))
    endpoint.add_observer(lambda event: console.show(describe(event)))
    reactor.addSystemEventTrigger("before", "shutdown", endpoint.stop)
    if options["exit-after"]:
        reactor.callLater(options["exit-after"], quit)

    code = 0
    try:
        await endpoint.start()
        if options["connect"]:
            await connect(reactor, endpoint, options["connect"], console, options["retry"])
        console.show("* type a line and press Enter to send it")
        await done
    except P2PError as e:
        console.show(f"! {type(e).__name__}: {e}")
        code = 1
    await endpoint.stop()
    console.show("* bye")
    console.transport.loseConnection()
    await console.closed
    if code:
        raise SystemExit(code)


async def connect(reactor, endpoint: PeerEndpoint, other: str, console: Console, retry: float):
    """
    Connect to C{other}, asking again once a second while the introducer
    does not know it yet (it may start after us).
    """
    deadline = reactor.seconds() + retry
    while True:
        try:
            return await endpoint.connect(other, ChatPeer(console, other))
        except UnknownPeer:
            if reactor.seconds() >= deadline:
                raise
            console.show(f"* {other} is not there yet; asking again in a second")
            await task.deferLater(reactor, 1.0, lambda: None)


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
