"""
The cluster's Redis connections: one for commands (pipelined: every
command written in one reactor turn goes out in one TCP write) and one
subscribed to this node's channel, both reconnecting on their own, and
the node's view of whether Redis is up.

The client is C{txredisapi}'s protocol (see docs/operations.md for why),
run on connections this module makes with the injected reactor.  Nothing
here blocks: every command returns a C{Deferred}; while Redis is down a
command fails at once with L{RedisDown} instead of queueing.
"""

from __future__ import annotations

from typing import Callable
from urllib.parse import urlsplit

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger

import txredisapi

#: Seconds a command may take before Redis counts as down.
COMMAND_TIMEOUT = 2.0


class RedisDown(Exception):
    """
    Redis cannot be reached now (the node serves what it holds).
    """


def parse_url(url: str) -> tuple[str, int, int | None, str | None]:
    """
    C{redis://[:password@]host[:port][/db]} as C{(host, port, db,
    password)}.

    @raise ValueError: for anything else.
    """
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise ValueError(f"not a redis://host[:port][/db] URL: {url!r}")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ValueError(f"the database in {url!r} must be a number")
    return parts.hostname, parts.port or 6379, int(db) if db else None, parts.password


class _Subscriber(txredisapi.SubscriberProtocol):
    on_message: Callable[[str], None] = staticmethod(lambda message: None)

    def messageReceived(self, pattern, channel, message) -> None:
        self.on_message(message)


class RedisStore(MultiService):
    """
    Commands and this node's subscription.

    @param on_message: called with each message published on C{channel}.
    @param on_up: called (no arguments) when the command connection is
        (re)established: the node writes what it holds again.
    """

    log = Logger()

    def __init__(
        self,
        reactor,
        url: str,
        channel: str,
        on_message: Callable[[str], None],
        on_up: Callable[[], None],
    ) -> None:
        super().__init__()
        self._reactor = reactor
        host, port, db, password = parse_url(url)
        self._url = url
        self.channel = channel
        self._on_up = on_up
        self._protocol: txredisapi.RedisProtocol | None = None
        self._lost_logged = False
        self.up = False
        self.subscribed = False

        def command_protocol() -> txredisapi.RedisProtocol:
            return txredisapi.RedisProtocol(dbid=db, password=password, convertNumbers=False, charset=None)

        def subscriber_protocol() -> _Subscriber:
            protocol = _Subscriber(dbid=db, password=password, charset="utf-8")
            protocol.on_message = on_message
            return protocol

        commands, subscriber = Factory.forProtocol(command_protocol), Factory.forProtocol(subscriber_protocol)
        commands.noisy = subscriber.noisy = False
        policy = backoffPolicy(initialDelay=0.2, maxDelay=2.0)
        self._commands = ClientService(
            HostnameEndpoint(reactor, host, port, timeout=2),
            commands,
            retryPolicy=policy,
            clock=reactor,
            prepareConnection=self._ready,
        )
        self._commands.setServiceParent(self)
        self._subscriber = ClientService(
            HostnameEndpoint(reactor, host, port, timeout=2),
            subscriber,
            retryPolicy=policy,
            clock=reactor,
            prepareConnection=self._subscribe,
        )
        self._subscriber.setServiceParent(self)

    def _ready(self, protocol) -> Deferred:
        d = protocol.whenConnected() if hasattr(protocol, "whenConnected") else None

        def usable(_) -> None:
            self._protocol = protocol
            self.up = True
            self.log.info("Redis at {url} reachable; writing this node's state", url=self._url)
            self._lost_logged = False
            # (C{protocol} is ClientService's proxy; the callback gets
            # the protocol it wraps.)
            protocol.whenDisconnected().addCallback(lambda _: self._lost(protocol))
            self._on_up()

        if d is None:
            usable(None)
            return None
        return d.addCallback(usable)

    def _subscribe(self, protocol) -> Deferred:
        def subscribed(_) -> None:
            self.subscribed = True
            protocol.whenDisconnected().addCallback(lambda _: setattr(self, "subscribed", False))

        d = protocol.whenConnected().addCallback(lambda p: p.subscribe(self.channel))
        return d.addCallback(subscribed)

    @property
    def ready(self) -> bool:
        """
        Whether both connections are up: commands, and this node's
        subscription (messages published to it meanwhile are lost).
        """
        return self.up and self.subscribed

    def _lost(self, protocol) -> None:
        if self._protocol is protocol:
            self._protocol = None
            self.up = False
            self._down("connection lost")

    def _down(self, why: str) -> None:
        if not self._lost_logged:
            self._lost_logged = True
            self.log.warn(
                "Redis at {url} unreachable ({why}): serving what this node holds; will resync",
                url=self._url,
                why=why,
            )

    def whenUp(self) -> Deferred:
        """
        Fires (with None) once the command connection is usable.
        """
        return self._commands.whenConnected().addCallback(lambda _: None)

    def execute(self, *args) -> Deferred:
        """
        Run one Redis command; fails with L{RedisDown} at once while Redis
        is down, or when it does not answer within L{COMMAND_TIMEOUT}.
        """
        protocol = self._protocol
        if protocol is None:
            return fail(RedisDown("Redis is down"))
        d = maybeDeferred(protocol.execute_command, *args)
        d.addTimeout(COMMAND_TIMEOUT, self._reactor)

        def failed(reason):
            if reason.check(txredisapi.ResponseError):
                return reason
            self._down(reason.getErrorMessage())
            if self._protocol is protocol:
                # A command that failed or timed out: the connection is
                # not usable (a new one replaces it).
                self._protocol = None
                self.up = False
                if protocol.transport is not None:
                    protocol.transport.loseConnection()
            raise RedisDown(reason.getErrorMessage())

        return d.addErrback(failed)

    def eval(self, script: str, keys: list, args: list) -> Deferred:
        return self.execute("EVAL", script, len(keys), *keys, *args)
