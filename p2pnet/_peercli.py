"""
C{p2pnet peer}: a command-line peer for testing connections and scripting.

With C{--json} it prints one JSON object per line per event, for scripts
(the kernel lab reads these); without, readable lines.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import socket
import sys
from typing import Callable, TextIO

from attrs import frozen
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import CannotListenError
from twisted.internet.task import deferLater
from twisted.python import usage
from twisted.python.failure import Failure

from p2pnet import wire
from p2pnet._handshake import HandshakeConfig
from p2pnet._names import MAX_NAME_BYTES, name_problem
from p2pnet._options import listen_error, parse, port, positive, read_secret
from p2pnet.address import Address
from p2pnet.endpoint import PeerConfig, PeerEndpoint, PeerFactory, PeerProtocol, StatusEvent
from p2pnet.errors import HostGone, KeyFileError, P2PError, SessionNotFound, UnknownPeer

#: The channel C{--send-file} sends on (reliable-ordered by default).
FILE_CHANNEL = 0
from p2pnet.secure.identity import Identity
from p2pnet.secure.trust import TrustStore


def _addresses(text: str) -> list[Address]:
    """
    C{HOST:PORT} as addresses: one for an IP literal, every IPv4 record
    for a host name (nodes of one introducer cluster behind one name).
    """
    host, sep, port = text.rpartition(":")
    if sep and host and not host.startswith("[") and not all(c.isdigit() or c == "." for c in host):
        try:
            records = socket.getaddrinfo(host, int(port), socket.AF_INET, socket.SOCK_DGRAM)
        except (OSError, ValueError):
            raise ValueError(f"cannot resolve {host!r}") from None
        found = []
        for record in records:
            address = Address.parse(f"{record[4][0]}:{port}")
            if address not in found:
                found.append(address)
        return found
    return [_address(text)]


def _address(text: str) -> Address:
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"expected HOST:PORT, not {text!r}")
    if host and all(c.isdigit() or c == "." for c in host):
        # Digits and dots are meant as an IPv4 address, never a host name:
        # do not ask the resolver about 300.1.1.1.
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IP address") from None
    elif not host.startswith("["):
        try:
            host = socket.gethostbyname(host)
        except OSError:
            raise ValueError(f"cannot resolve {host!r}") from None
        text = f"{host}:{port}"
    return Address.parse(text)


class Options(usage.Options):
    synopsis = "--introducer HOST:PORT --name NAME [--host-session TITLE | --join TITLE | --connect NAME]"
    longdesc = "Register with a p2pnet introducer and connect to peers; print what happens."
    optParameters = [
        ["name", "n", None, "Our peer id."],
        ["host-session", None, None, "Host a session with this title; accept joiners."],
        ["join", None, None, "Join the session with this title."],
        ["connect", None, None, "Connect to this peer id."],
        ["send", None, None, "Send this text to every peer as soon as it connects, then once a second."],
        ["send-file", None, None, "Send this file to every peer as one reliable message (channel 0) once connected."],
        ["save-dir", None, None, "Write every message received into this directory (named by its sha256)."],
        ["stats-interval", None, 5.0, "Seconds between 'stats' events for connections that carry messages.", positive],
        ["port", "p", 0, "Local UDP port (0: any).", port],
        ["bind", "b", "", "Local address to bind (default: all; '::' with an IPv6 --introducer)."],
        ["introducer6", None, None,
         "The introducer's IPv6 [HOST]:PORT beside an IPv4 --introducer: also register and connect over IPv6.",
         _address],
        ["bind6", None, None, "Local IPv6 address for the IPv6 socket (default: all)."],
        ["secret-file", None, None, "File holding the introducer's shared secret."],
        ["heartbeat", None, 15.0, "Seconds between registration heartbeats.", positive],
        ["keepalive", None, 15.0, "Seconds between keepalives on an idle path.", positive],
        ["timeout", None, 10.0, "Seconds to punch before giving up.", positive],
        ["retry", None, 10.0, "Seconds to keep looking for the peer or session.", positive],
        ["exit-after", None, None, "Stop after this many seconds.", positive],
        ["max-players", None, 8, "Players in a hosted session.", int],
        ["turn", None, None, "Relay through this TURN server (HOST:PORT) instead of a p2pnet relay.", _address],
        ["turn-user", None, None, "TURN user name."],
        ["turn-password-file", None, None, "File holding the TURN password."],
        ["identity", None, None,
         "Our key pair's file (created, mode 0600, if missing): keep it to keep our name and key across restarts."],
        ["port-mapping-protocols", None, "pcp,nat-pmp,upnp",
         "Port mapping protocols to try, comma-separated (pcp, nat-pmp, upnp)."],
        ["trust-file", None, None,
         "Known peers' keys (created if missing): pin each peer's key on first use, refuse a changed one."],
    ]
    optFlags = [
        ["json", "j", "Print one JSON object per line per event."],
        ["no-warmup", None, "Skip the short-TTL warm-up (to show why it matters)."],
        ["mesh", None, "Host a mesh session (everyone connects to everyone)."],
        ["nat-check", None, "Check our NAT at start (the default; kept for old scripts)."],
        ["no-nat-check", None, "Do not check our NAT at start (no birthday search against symmetric NATs)."],
        ["no-relay", None, "Never fall back to a relay."],
        ["relay-only", None, "Only use relayed paths (hides our addresses from the peer)."],
        ["insecure", None, "No encryption, no replay protection (for benchmarks and debugging only)."],
        ["no-port-mapping", None, "Do not ask the router for a port mapping (NAT-PMP, PCP, UPnP-IGD)."],
        ["no-ipv6", None, "No IPv6 socket beside the IPv4 one, no IPv6 candidates."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["introducers"] = []
        self["introducer"] = None

    def opt_introducer(self, value: str) -> None:
        """
        The introducer's HOST:PORT; again for other nodes of its cluster (a name counts each of its addresses).
        """
        try:
            found = _addresses(value)
        except ValueError as e:
            raise usage.UsageError(f"--introducer: {e}")
        self["introducers"].extend(a for a in found if a not in self["introducers"])
        self["introducer"] = self["introducers"][0]

    opt_i = opt_introducer

    def postOptions(self) -> None:
        if self["introducer"] is None:
            raise usage.UsageError("--introducer HOST:PORT is required")
        if not self["name"]:
            raise usage.UsageError("--name is required")
        problem = name_problem(self["name"], "--name")
        if problem is not None:
            raise usage.UsageError(problem)
        for option in ("host-session", "join", "connect"):
            if self[option] is not None:
                limit = MAX_NAME_BYTES if option == "connect" else wire.MAX_STRING
                problem = name_problem(self[option], f"--{option}", limit)
                if problem is not None:
                    raise usage.UsageError(problem)
        chosen = [k for k in ("host-session", "join", "connect") if self[k]]
        if len(chosen) > 1:
            raise usage.UsageError("use only one of --host-session, --join and --connect")
        if self["mesh"] and not self["host-session"]:
            raise usage.UsageError("--mesh is a kind of hosted session: it needs --host-session TITLE")
        self["turn-settings"] = None
        if self["turn"] is not None:
            if not self["turn-user"] or not self["turn-password-file"]:
                raise usage.UsageError("--turn needs --turn-user and --turn-password-file")
            password = read_secret(self["turn-password-file"], "--turn-password-file").decode("utf-8")
            from p2pnet.endpoint import TurnSettings

            self["turn-settings"] = TurnSettings(self["turn"], self["turn-user"], password)
        protocols = tuple(p.strip() for p in self["port-mapping-protocols"].split(",") if p.strip())
        if not protocols or not set(protocols) <= {"pcp", "nat-pmp", "upnp"}:
            raise usage.UsageError("--port-mapping-protocols takes pcp, nat-pmp and/or upnp")
        self["port-mapping-protocols"] = protocols
        if self["nat-check"] and self["no-nat-check"]:
            raise usage.UsageError("--nat-check and --no-nat-check contradict each other")
        if self["introducer6"] is not None and not self["introducer6"].is_ipv6:
            raise usage.UsageError("--introducer6 takes an IPv6 [HOST]:PORT")
        if self["introducer6"] is not None and self["no-ipv6"]:
            raise usage.UsageError("--introducer6 and --no-ipv6 contradict each other")
        if self["relay-only"] and self["no-relay"]:
            raise usage.UsageError("--relay-only and --no-relay contradict each other")
        self["secret"] = None
        if self["secret-file"]:
            self["secret"] = read_secret(self["secret-file"], "--secret-file")
        self["file-bytes"] = None
        if self["send-file"]:
            try:
                with open(self["send-file"], "rb") as f:
                    self["file-bytes"] = f.read()
            except OSError as e:
                raise usage.UsageError(f"--send-file: cannot read {self['send-file']!r}: {e.strerror}") from None
        if self["save-dir"] and not os.path.isdir(self["save-dir"]):
            raise usage.UsageError(f"--save-dir: {self['save-dir']!r} is not a directory")
        if self["insecure"] and (self["send-file"] or self["save-dir"]):
            raise usage.UsageError("--send-file and --save-dir need channels, which need encryption: drop --insecure")
        if self["insecure"] and (self["identity"] or self["trust-file"]):
            raise usage.UsageError("--insecure has no keys: drop --identity and --trust-file, or --insecure")
        try:
            self["identity-key"] = Identity.load_or_create(self["identity"]) if self["identity"] else None
            self["trust"] = TrustStore(self["trust-file"]) if self["trust-file"] else None
        except KeyFileError as e:
            raise usage.UsageError(str(e)) from None


class Printer:
    """
    Writes events as JSON lines or readable text.
    """

    def __init__(self, out: TextIO, as_json: bool, clock) -> None:
        self._out = out
        self._json = as_json
        self._clock = clock
        self._start = clock.seconds()

    def __call__(self, kind: str, **fields: object) -> None:
        if self._json:
            record = {"event": kind, "t": round(self._clock.seconds() - self._start, 4)}
            record.update(fields)
            self._out.write(json.dumps(record) + "\n")
        else:
            details = " ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, "", []))
            self._out.write(f"[{self._clock.seconds() - self._start:7.3f}] {kind} {details}\n")
        self._out.flush()

    def status(self, event: StatusEvent) -> None:
        fields: dict[str, object] = {}
        if event.kind == "registered":
            fields = {"public": str(event.address), "local": [str(a) for a in event.candidates]}
        elif event.kind == "introduced":
            fields = {"peer": event.peer_id, "candidates": [str(a) for a in event.candidates]}
        elif event.kind in ("connected", "path-changed"):
            fields = {"peer": event.peer_id, "path": event.path.value, "address": str(event.address)}
            if event.detail:
                fields["detail"] = event.detail
            if event.elapsed is not None:
                fields["elapsed"] = round(event.elapsed, 4)
        elif event.kind == "port-mapped":
            fields = {"protocol": event.detail, "address": str(event.address)}
        elif event.kind in ("lost", "failed", "closed"):
            fields = {"peer": event.peer_id, "reason": event.detail}
        else:
            fields = {"peer": event.peer_id, "address": str(event.address) if event.address else None,
                      "detail": event.detail}
        self(event.kind, **fields)


@frozen
class _Behaviour:
    """
    What every connection does: greet (C{--send}), send a file as one
    reliable message (C{--send-file}, on channel 0), save what arrives
    (C{--save-dir}).
    """

    greeting: bytes | None = None
    file: bytes | None = None
    save_dir: str | None = None


class _Printing(PeerProtocol):
    def __init__(self, printer: Printer, peer_id: str, behaviour: _Behaviour = _Behaviour()) -> None:
        self._printer = printer
        self._peer_id = peer_id
        self._behaviour = behaviour

    def connection_made(self, connection) -> None:
        super().connection_made(connection)
        behaviour = self._behaviour
        if behaviour.greeting is not None:
            connection.send(behaviour.greeting)
        if behaviour.file is not None:
            connection.send(behaviour.file, channel=FILE_CHANNEL)
            self._printer("file-sent", peer=self._peer_id, channel=FILE_CHANNEL, size=len(behaviour.file),
                          sha256=hashlib.sha256(behaviour.file).hexdigest())

    def datagram_received(self, data: bytes) -> None:
        self._printer("datagram", peer=self._peer_id, text=data.decode("utf-8", "replace"))

    def message_received(self, channel: int, data: bytes) -> None:
        digest = hashlib.sha256(data).hexdigest()
        saved = None
        if self._behaviour.save_dir is not None:
            # Named by content: a peer's name never becomes a path.
            saved = os.path.join(self._behaviour.save_dir, f"{digest}.bin")
            with open(saved, "wb") as f:
                f.write(data)
        self._printer("message", peer=self._peer_id, channel=channel, size=len(data), sha256=digest, saved=saved)


class _Factory(PeerFactory):
    def __init__(self, printer: Printer, behaviour: _Behaviour) -> None:
        self._printer = printer
        self._behaviour = behaviour

    def build_protocol(self, peer_id: str) -> PeerProtocol:
        return _Printing(self._printer, peer_id, self._behaviour)


@inlineCallbacks
def run(reactor, options: Options, out: TextIO):
    """
    Do what the options say; returns the exit code.
    """
    printer = Printer(out, options["json"], reactor)
    config = PeerConfig(
        handshake=HandshakeConfig(
            warmup=not options["no-warmup"],
            timeout=options["timeout"],
            keepalive_interval=options["keepalive"],
            dead_after=max(3 * options["keepalive"], options["keepalive"] + 1),
            relay_after=None if options["no-relay"] else 3.0,
            relay_only=options["relay-only"],
        ),
        turn=options["turn-settings"],
        heartbeat_interval=options["heartbeat"],
        nat_check=not options["no-nat-check"],
        insecure=options["insecure"],
        port_mapping=not options["no-port-mapping"],
        port_mapping_protocols=options["port-mapping-protocols"],
        ipv6=not options["no-ipv6"],
    )
    endpoint = PeerEndpoint(
        reactor,
        options["introducers"],
        options["name"],
        secret=options["secret"],
        port=options["port"],
        interface=options["bind"],
        factory=_Factory(printer, _behaviour(options)),
        config=config,
        identity=options["identity-key"],
        trust=options["trust"],
        introducer6=options["introducer6"],
        interface6=options["bind6"],
    )
    endpoint.add_observer(printer.status)
    done: Deferred = Deferred()
    code = [0]

    def finish(exit_code: int) -> None:
        code[0] = max(code[0], exit_code)
        if not done.called:
            done.callback(None)

    def report(failure: Failure) -> None:
        error = failure.value
        printer("error", error=type(error).__name__, message=_message(error))
        if not isinstance(error, (P2PError, CannotListenError)):
            printer("error", error="traceback", message=failure.getTraceback())
        finish(1)

    if options["exit-after"]:
        reactor.callLater(options["exit-after"], finish, 0)
    stopped: Deferred = Deferred()

    def shutting_down() -> Deferred:
        finish(0)
        return stopped

    reactor.addSystemEventTrigger("before", "shutdown", shutting_down)

    try:
        yield endpoint.start()
    except Exception:
        report(Failure())
        stopped.callback(None)
        return 1

    from twisted.internet.task import LoopingCall

    def report_stats() -> None:
        for connection in endpoint.connections:
            stats = connection.stats() if not connection.ended else None
            if stats is not None:
                printer(
                    "stats", peer=connection.peer_id, srtt=round(stats.srtt, 4), rttvar=round(stats.rttvar, 4),
                    loss=round(stats.loss, 4), send_rate=round(stats.send_rate), bandwidth=round(stats.bandwidth),
                    in_flight=stats.bytes_in_flight, queued=stats.queued_bytes,
                )

    stats_call = LoopingCall(report_stats)
    stats_call.clock = reactor
    stats_call.start(options["stats-interval"], now=False)
    sender = None
    if options["send"]:
        text = options["send"].encode("utf-8")

        def send_all() -> None:
            for connection in endpoint.connections:
                if connection.is_open:
                    connection.send(text)

        sender = LoopingCall(send_all)
        sender.clock = reactor
        sender.start(1.0, now=False)

    action = None
    if options["host-session"]:
        action = endpoint.host_session(
            options["host-session"], max_players=options["max-players"], mesh=options["mesh"]
        )
        action.addCallback(lambda s: printer("hosting", session=s.name, max_players=s.max_players))
    elif options["join"]:
        action = _retrying(reactor, options["retry"], lambda: _join(endpoint, options["join"], printer, _behaviour(options)))
    elif options["connect"]:
        peer = options["connect"]
        def connect() -> Deferred:
            printer("connecting", peer=peer)
            return endpoint.connect(peer, _Printing(printer, peer, _behaviour(options)))

        action = _retrying(reactor, options["retry"], connect)
    if action is not None:
        action.addErrback(report)

    yield done
    if sender is not None and sender.running:
        sender.stop()
    if stats_call.running:
        stats_call.stop()
    yield endpoint.stop()
    stopped.callback(None)
    return code[0]


def _message(error: Exception) -> str:
    if isinstance(error, CannotListenError):
        return listen_error(error)
    return str(error)


def _behaviour(options) -> _Behaviour:
    return _Behaviour(
        options["send"].encode("utf-8") if options["send"] else None,
        options["file-bytes"],
        options["save-dir"],
    )


def _join(endpoint: PeerEndpoint, title: str, printer: Printer, behaviour: _Behaviour) -> Deferred:
    def chosen(sessions):
        for session in sessions:
            if session.name == title:
                return endpoint.join(session, _Printing(printer, session.host, behaviour))
        raise SessionNotFound(title, len(sessions))

    return endpoint.list_sessions().addCallback(chosen)


def _retrying(reactor, limit: float, attempt: Callable[[], Deferred]) -> Deferred:
    """
    Retry C{attempt} once a second while it fails with UnknownPeer or
    SessionNotFound (the peer or session may not be registered yet), for
    up to C{limit} seconds; not after L{HostGone} (it was registered and
    stopped heartbeating).
    """
    deadline = reactor.seconds() + limit

    def again(failure: Failure) -> Deferred:
        failure.trap(UnknownPeer, SessionNotFound)
        # A peer that stopped heartbeating will not come back by waiting.
        if failure.check(HostGone) or reactor.seconds() >= deadline:
            return failure
        return deferLater(reactor, 1.0, attempt).addErrback(again)

    return attempt().addErrback(again)


def main(argv: list[str]) -> int:
    options = Options()
    if not parse(options, argv, "p2pnet peer"):
        return 2
    from twisted.internet import reactor

    result: list[int] = []

    def stop(code: int) -> None:
        result.append(code)
        from twisted.internet.error import ReactorNotRunning

        try:
            reactor.stop()
        except ReactorNotRunning:
            pass

    def crashed(failure: Failure) -> None:
        print(failure.getTraceback(), file=sys.stderr)
        stop(1)

    reactor.callWhenRunning(lambda: run(reactor, options, sys.stdout).addCallbacks(stop, crashed))
    reactor.run()
    return result[0] if result else 0
