"""
A tiny game: one player hosts a session, others list sessions, find it by
its title and join; every player sends its position to the others a few
times a second over the direct path.

    p2pnet introducer --port 3478 --interface 127.0.0.1
    python examples/game.py host --introducer 127.0.0.1:3478 --name keith --title "Keith's Server"
    python examples/game.py join --introducer 127.0.0.1:3478 --name ann --title "Keith's Server"

It shows how to embed a L{PeerEndpoint} in a Twisted program run by
C{twisted.internet.task.react}: one L{PeerProtocol} per player, a
L{PeerFactory} on the host for players who join, session properties,
status events, and shutting down cleanly.

Options that make it stop by itself (used by tests/test_examples.py):
C{--exit-after SECONDS}; C{join --positions N} leaves after receiving N
positions from the host; C{host --once} stops when its first player
leaves.
"""

from __future__ import annotations

import math
import socket
import struct
import sys

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.python import usage
from twisted.python.failure import Failure

from p2pnet import (
    Address,
    P2PError,
    PeerConnection,
    PeerEndpoint,
    PeerFactory,
    PeerProtocol,
    SessionNotFound,
    StatusEvent,
)

GAME_ID = "p2pnet-example-race"

#: One position update: sequence number, x, y (network byte order).
POSITION = struct.Struct("!Iff")


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


class _Common(usage.Options):
    optParameters = [
        ["introducer", "i", None, "The introducer's HOST:PORT.", _address],
        ["name", "n", None, "Our player name (peer id)."],
        ["title", "t", None, "The session's title."],
        ["rate", None, 5.0, "Position updates per second.", _seconds],
        ["exit-after", None, None, "Stop after this many seconds.", _seconds],
    ]

    def postOptions(self) -> None:
        for name in ("introducer", "name", "title"):
            if not self[name]:
                raise usage.UsageError(f"--{name} is required")


class HostOptions(_Common):
    optParameters = [
        ["max-players", None, 4, "Players allowed, the host included.", int],
        ["map", None, "harbour", "The map (a session property)."],
    ]
    optFlags = [["once", None, "Stop when the first player leaves."]]


class JoinOptions(_Common):
    optParameters = [
        ["positions", None, 0, "Leave after this many positions from the host (0: never).", int],
        ["retry", None, 10.0, "Seconds to keep looking for the session.", _seconds],
    ]


class Options(usage.Options):
    synopsis = "host|join --introducer HOST:PORT --name NAME --title TITLE [options]"
    subCommands = [
        ["host", None, HostOptions, "Host a session."],
        ["join", None, JoinOptions, "Join a session by its title."],
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("say 'host' or 'join'")


def say(text: str) -> None:
    print(text, flush=True)


class Player(PeerProtocol):
    """
    The game's side of one connection: sends our position on a timer,
    prints the positions the other player sends.

    @param on_position: called with the count of positions received so far.
    @param on_lost: called when the connection ends.
    """

    def __init__(self, reactor, rate: float, on_position=None, on_lost=None) -> None:
        self._reactor = reactor
        self._rate = rate
        self._on_position = on_position
        self._on_lost = on_lost
        self._sequence = 0
        self.received = 0
        self._ticker: task.LoopingCall | None = None

    def connection_made(self, connection: PeerConnection) -> None:
        super().connection_made(connection)
        say(f"{connection.peer_id} is in the game ({connection.path.value} {connection.address})")
        self._ticker = task.LoopingCall(self._tick)
        self._ticker.clock = self._reactor
        self._ticker.start(1.0 / self._rate, now=True)

    def _tick(self) -> None:
        # Everybody runs in circles; a real game sends its world state.
        self._sequence += 1
        angle = self._sequence / 5.0
        self.connection.send(POSITION.pack(self._sequence, 10 * math.cos(angle), 10 * math.sin(angle)))

    def datagram_received(self, data: bytes) -> None:
        if len(data) != POSITION.size:
            say(f"ignoring a {len(data)}-byte datagram from {self.connection.peer_id}")
            return
        sequence, x, y = POSITION.unpack(data)
        self.received += 1
        say(f"position from {self.connection.peer_id}: #{sequence} x={x:.2f} y={y:.2f}")
        if self._on_position is not None:
            self._on_position(self.received)

    def connection_lost(self, reason: Failure) -> None:
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        peer = self.connection.peer_id if self.connection else "player"
        say(f"{peer} left: {reason.getErrorMessage()}")
        if self._on_lost is not None:
            self._on_lost()


class Lobby(PeerFactory):
    """
    The host's factory: a L{Player} for everyone who joins.
    """

    def __init__(self, reactor, rate: float, on_lost) -> None:
        self._reactor = reactor
        self._rate = rate
        self._on_lost = on_lost

    def build_protocol(self, peer_id: str) -> PeerProtocol:
        return Player(self._reactor, self._rate, on_lost=self._on_lost)


def show_status(event: StatusEvent) -> None:
    """
    What a game UI might show while connecting.
    """
    if event.kind == "registered":
        say(f"[status] registered; our public address is {event.address}")
    elif event.kind in ("connected", "path-changed"):
        say(f"[status] {event.kind} {event.peer_id} via {event.path.value}")
    elif event.kind in ("failed", "lost", "introducer-lost"):
        say(f"[status] {event.kind} {event.peer_id or ''} {event.detail}".rstrip())
    else:
        say(f"[status] {event.kind} {event.peer_id or ''}".rstrip())


async def host(reactor, options: HostOptions, done: Deferred) -> None:
    def finish() -> None:
        if options["once"] and not done.called:
            done.callback(None)

    endpoint = PeerEndpoint(
        reactor,
        options["introducer"],
        options["name"],
        factory=Lobby(reactor, options["rate"], finish),
    )
    endpoint.add_observer(show_status)
    reactor.addSystemEventTrigger("before", "shutdown", endpoint.stop)
    try:
        await endpoint.start()
        session = await endpoint.host_session(
            options["title"],
            GAME_ID,
            max_players=options["max-players"],
            properties={"map": options["map"], "mode": "race"},
        )
        say(f"hosting {session.name!r} ({session.max_players} players, map {options['map']})")
        await done
    finally:
        await endpoint.stop()


async def join(reactor, options: JoinOptions, done: Deferred) -> None:
    def counted(received: int) -> None:
        if options["positions"] and received >= options["positions"] and not done.called:
            done.callback(None)

    def lost() -> None:
        if not done.called:
            done.callback(None)

    endpoint = PeerEndpoint(reactor, options["introducer"], options["name"])
    endpoint.add_observer(show_status)
    reactor.addSystemEventTrigger("before", "shutdown", endpoint.stop)
    try:
        await endpoint.start()
        session = await find(reactor, endpoint, options["title"], options["retry"])
        properties = ", ".join(f"{k}={v}" for k, v in session.properties.items())
        say(
            f"found {session.name!r} hosted by {session.host}: "
            f"{session.players}/{session.max_players} players, {properties}"
        )
        player = Player(reactor, options["rate"], counted, lost)
        await endpoint.join(session, player)
        await done
    finally:
        await endpoint.stop()


async def find(reactor, endpoint: PeerEndpoint, title: str, retry: float):
    """
    The listed session called C{title}; the host may register after us,
    so look again once a second for up to C{retry} seconds.
    """
    deadline = reactor.seconds() + retry
    while True:
        sessions = await endpoint.list_sessions(GAME_ID)
        for session in sessions:
            if session.name == title:
                return session
        if reactor.seconds() >= deadline:
            raise SessionNotFound(title, len(sessions))
        await task.deferLater(reactor, 1.0, lambda: None)


async def main(reactor, *argv: str) -> None:
    options = Options()
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        sys.stderr.write(f"{options}\ngame.py: {e}\n")
        raise SystemExit(2)
    sub = options.subOptions
    done: Deferred = Deferred()
    if sub["exit-after"]:
        timer = reactor.callLater(sub["exit-after"], lambda: done.called or done.callback(None))
        done.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])
    run = host if options.subCommand == "host" else join
    try:
        await run(reactor, sub, done)
    except P2PError as e:
        say(f"error: {type(e).__name__}: {e}")
        raise SystemExit(1)
    say("bye")


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
