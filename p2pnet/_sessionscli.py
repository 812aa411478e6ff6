"""
C{p2pnet sessions}: list the sessions an introducer offers (its lobby),
without registering.

Readable lines by default; with C{--json}, one JSON object per session per
line.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TextIO

from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.python import usage
from twisted.python.failure import Failure

from p2pnet import wire
from p2pnet._introclient import IntroducerClient
from p2pnet._lister import SessionLister, make_query
from p2pnet._options import parse, read_secret
from p2pnet._peercli import _address
from p2pnet._reaching import ReachingIntroducer
from p2pnet.address import Address
from p2pnet.errors import MalformedMessage, P2PError


def _limit(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("--limit is at least 1")
    return value


class Options(usage.Options):
    synopsis = (
        "--introducer HOST:PORT [--game GAME] [--property KEY=VALUE ...] [--name-prefix TEXT] "
        "[--open] [--limit N] [--json]"
    )
    longdesc = (
        "List the sessions hosted at a p2pnet introducer.  The filters are applied by the "
        "introducer: a listed session has every --property, a name starting with "
        "--name-prefix, and with --open a free slot."
    )
    optParameters = [
        ["introducer", "i", None, "The introducer's HOST:PORT.", _address],
        ["game", "g", None, "Only this game's sessions."],
        ["name-prefix", "n", None, "Only sessions whose name starts with this."],
        ["limit", "l", None, "At most this many sessions.", _limit],
        ["secret-file", None, None, "File holding the introducer's shared secret."],
        ["bind", "b", "", "Local address to bind (default: all)."],
    ]
    optFlags = [
        ["json", "j", "Print one JSON object per line per session."],
        ["open", "o", "Only sessions with a free slot."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["properties"] = []

    def opt_property(self, text: str) -> None:
        """
        Only sessions with this property, KEY=VALUE (repeat for several, at most 4).
        """
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise usage.UsageError(f"--property wants KEY=VALUE, not {text!r}")
        self["properties"].append((key, value))

    opt_p = opt_property

    def postOptions(self) -> None:
        if self["introducer"] is None:
            raise usage.UsageError("--introducer HOST:PORT is required")
        self["secret"] = read_secret(self["secret-file"], "--secret-file") if self["secret-file"] else None
        try:
            self["query"] = make_query(
                self["game"], self["properties"], self["name-prefix"], self["open"], None
            )
        except ValueError as e:
            raise usage.UsageError(str(e)) from None


class _Lobby(DatagramProtocol):
    """
    A socket that only asks the introducer for its session list.
    """

    def __init__(self, clock, introducer: Address, secret: bytes | None) -> None:
        self._clock = clock
        self._introducer = introducer
        self._secret = secret
        self.client: IntroducerClient | None = None

    def startProtocol(self) -> None:
        self.client = IntroducerClient(
            self._clock, self.transport.write, self._introducer, os.urandom, self._secret
        )

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        if Address(addr[0], addr[1]) != self._introducer or self.client is None:
            return
        if self._secret is not None and not wire.verify(data, self._secret):
            return
        try:
            self.client.answer(wire.decode(data))
        except MalformedMessage:
            pass


def format_session(info: wire.SessionInfo) -> str:
    """
    One readable line for a listed session.
    """
    properties = " ".join(f"{k}={v}" for k, v in info.properties.items())
    game = f" [{info.game_id}]" if info.game_id else ""
    mesh = " mesh" if info.mesh else ""
    return (
        f"{info.name!r}{game} hosted by {info.host}: "
        f"{info.players}/{info.max_players} players{mesh}{' ' + properties if properties else ''}"
    )


def as_json(info: wire.SessionInfo) -> str:
    return json.dumps(
        {
            "name": info.name,
            "game": info.game_id,
            "host": info.host,
            "players": info.players,
            "max_players": info.max_players,
            "mesh": info.mesh,
            "properties": info.properties,
        }
    )


@inlineCallbacks
def run(reactor, options: Options, out: TextIO, err: TextIO):
    """
    List the sessions; returns the exit code (0 listed, 1 failed).
    """
    introducer = options["introducer"]
    lobby = _Lobby(reactor, introducer, options["secret"])
    port = reactor.listenUDP(0, lobby, options["bind"])
    client = lobby.client

    def refused() -> None:
        client.cancel_all(
            P2PError(f"the introducer's port {introducer} is closed (ICMP port unreachable): is it running?")
        )

    reaching = ReachingIntroducer(
        reactor, introducer, lambda elapsed: None, refused, probe=True, interface=options["bind"]
    )
    try:
        lister = SessionLister(reactor, client.request, client.new_txid)
        sessions = yield lister.list(options["query"], options["limit"])
    except P2PError as e:
        err.write(f"p2pnet sessions: {e}\n")
        return 1
    finally:
        reaching.stop()
        yield port.stopListening()
    for info in sessions:
        out.write((as_json(info) if options["json"] else format_session(info)) + "\n")
    if not sessions and not options["json"]:
        out.write("no sessions\n")
    return 0


def main(argv: list[str]) -> int:
    options = Options()
    if not parse(options, argv, "p2pnet sessions"):
        return 2
    from twisted.internet import reactor

    result: list[int] = []

    def done(outcome) -> None:
        if isinstance(outcome, Failure):
            print(outcome.getTraceback(), file=sys.stderr)
            outcome = 1
        result.append(outcome)
        reactor.stop()

    reactor.callWhenRunning(lambda: run(reactor, options, sys.stdout, sys.stderr).addBoth(done))
    reactor.run()
    return result[0] if result else 1
