"""
Backpressure the Twisted way: a channel of a connection as an
L{IConsumer}, so a producer (a file being sent, a stream of game events)
is paused while the connection's channels hold more than their high-water
mark and resumed once acknowledgements bring them down to the low-water
mark.  Made by L{p2pnet.connection.PeerConnection.consumer}.

  - A streaming (push) producer (C{registerProducer(p, True)}) is paused
    as soon as a write leaves the send buffer over its high-water mark (or
    at once if it already is) and resumed when it has room again.
  - A pull producer (C{registerProducer(p, False)}, e.g.
    L{twisted.protocols.basic.FileSender}) is asked for more
    (C{resumeProducing}) on a later reactor turn each time there is room.
  - When the connection ends, the producer is stopped (C{stopProducing})
    and unregistered.

The send buffer is the connection's (all channels share it): a producer
on a bulk channel pauses whenever the connection is full, whichever
channel filled it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zope.interface import implementer
from twisted.internet.interfaces import IConsumer

if TYPE_CHECKING:
    from p2pnet.connection import PeerConnection


@implementer(IConsumer)
class ChannelConsumer:
    """
    One channel of one connection, as an L{IConsumer}: C{write(data)}
    sends C{data} as one message on the channel.

    @ivar channel: the channel number.
    @ivar producer: the registered producer, or None.
    @ivar paused: whether a streaming producer is paused by us.
    """

    def __init__(self, connection: PeerConnection, channel: int) -> None:
        self._connection = connection
        self.channel = channel
        self.producer = None
        self.streaming = False
        self.paused = False
        self._waiting = None
        self._pull_scheduled = False

    # -- IConsumer ------------------------------------------------------------

    def registerProducer(self, producer, streaming: bool) -> None:
        """
        Register C{producer}; a streaming one is paused at once if the send
        buffer is already over its high-water mark, a pull one is asked for
        data on a later turn.

        @raise RuntimeError: a producer is already registered.
        """
        if self.producer is not None:
            raise RuntimeError(f"a producer is already registered on channel {self.channel}: {self.producer!r}")
        connection = self._connection
        if connection.ended:
            producer.stopProducing()
            return
        self.producer = producer
        self.streaming = bool(streaming)
        self.paused = False
        connection._producer_registered(self)
        self._check()

    def unregisterProducer(self) -> None:
        """
        Forget the producer (it is neither paused, resumed nor stopped by us
        any more).
        """
        if self.producer is not None:
            self._connection._producer_unregistered(self)
        self.producer = None
        self.paused = False
        self._waiting = None

    def write(self, data: bytes) -> None:
        """
        Send C{data} as one message on this channel (see
        L{p2pnet.connection.PeerConnection.send}).
        """
        self._connection.send(data, channel=self.channel)
        self._check()

    # -- the connection's side ------------------------------------------------

    def connection_ended(self) -> None:
        """
        The connection is over: let the producer go, and stop it on the
        next reactor turn (never inside the connection's own transition).
        """
        producer = self.producer
        self.unregisterProducer()
        if producer is not None:
            self._connection._endpoint.eventually(producer.stopProducing)

    # -- internals ------------------------------------------------------------

    def _check(self) -> None:
        """
        Pause a streaming producer while the buffer is full (and wait for
        room), or ask a pull producer for more if there is room.
        """
        if self.producer is None or self._waiting is not None:
            return
        connection = self._connection
        if connection.writable:
            if not self.streaming and not self._pull_scheduled:
                self._pull_scheduled = True
                connection._endpoint.eventually(self._pull, self.producer)
            return
        if self.streaming and not self.paused:
            self.paused = True
            self.producer.pauseProducing()
        waiting = self._waiting = connection.when_writable()
        waiting.addCallback(self._room, waiting)

    def _room(self, _ignored, waiting) -> None:
        if waiting is not self._waiting:
            return  # unregistered (or registered anew) meanwhile
        self._waiting = None
        producer = self.producer
        if producer is None or self._connection.ended:
            return
        if self.streaming:
            if self.paused:
                self.paused = False
                producer.resumeProducing()
            # It may have filled the buffer again from resumeProducing.
            self._check()
        else:
            self._check()

    def _pull(self, producer) -> None:
        self._pull_scheduled = False
        if producer is not self.producer or self._connection.ended:
            return
        producer.resumeProducing()
