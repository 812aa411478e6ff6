"""
A secure connection's channels: the thin owner of one
L{p2pnet.channels.ChannelMachine}.

The machine is sans-IO; this class feeds it (the game's messages, the
channel packets that arrive sealed, its timer), seals and sends what it
wants sent on the connection's current path, keeps one timer armed for
its next deadline, and hands its events to the game's protocol.  It is
created on the first message sent or received, so a connection that only
uses raw datagrams pays nothing for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from twisted.internet.defer import Deferred

from p2pnet.channels import ChannelMachine, MessageReceived, Writable
from p2pnet.channels._frames import FIRST_TYPE, LAST_TYPE
from p2pnet.errors import MalformedMessage

if TYPE_CHECKING:
    from p2pnet.connection import PeerConnection


def is_channel_packet(plaintext: bytes) -> bool:
    """
    Whether a sealed packet's plaintext holds channel frames (their types
    are 0x10-0x3F; a channel packet starts with its packet number).
    """
    return bool(plaintext) and FIRST_TYPE <= plaintext[0] <= LAST_TYPE


class Messaging:
    """
    @ivar machine: the connection's L{ChannelMachine}.
    """

    #: Messages kept for a protocol that is not attached yet.
    EARLY_LIMIT = 64
    #: The shortest timer (seconds).
    MIN_DELAY = 0.0005

    def __init__(self, connection: PeerConnection, seal: Callable[[bytes, object], None]) -> None:
        config = connection._endpoint.config
        self._connection = connection
        self._clock = connection._clock
        self._seal = seal
        self.machine = ChannelMachine(config.channels, max_message=config.max_message)
        self._timer = None
        self._soon = None
        self._early: list[tuple[int, bytes]] = []
        self._waiting: list[Deferred] = []

    # -- the game's side --------------------------------------------------------

    def send(self, channel: int, data: bytes, flush: bool) -> None:
        self.machine.send(channel, data, flush=flush, now=self._clock.seconds())
        if flush:
            self.pump()
        elif self._soon is None:
            # A message that may wait: pump once at the end of this
            # reactor turn, not after every send (a game sending many
            # small messages in one turn pays for one pump).
            self._soon = self._clock.callLater(0, self._pump_soon)

    def _pump_soon(self) -> None:
        self._soon = None
        self.pump()

    def when_writable(self) -> Deferred:
        d = Deferred()
        if self.machine.writable:
            d.callback(None)
        else:
            self._waiting.append(d)
            self.machine.when_writable(self._writable)
        return d

    def _writable(self) -> None:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            self._connection._endpoint.eventually(d.callback, None)

    def stats(self):
        return self.machine.stats(self._clock.seconds())

    # -- the connection's side -----------------------------------------------------

    def received(self, plaintext: bytes) -> bool:
        """
        A channel packet arrived (authentic, decrypted): feed it, send what
        it calls for (acks), deliver what it completed.

        @return: False if it was malformed (the machine is unchanged).
        """
        try:
            self.machine.receive(plaintext, self._clock.seconds())
        except MalformedMessage:
            return False
        # Acks and deliveries at the end of this reactor turn: the
        # reactor reads a batch of datagrams per turn, and one pump for
        # the batch (one ack, one timer) costs far less than one each.
        if self._soon is None:
            self._soon = self._clock.callLater(0, self._pump_soon)
        return True

    def pump(self) -> None:
        """
        Send what the machine wants sent now, deliver its events, and arm
        the timer for its next deadline.
        """
        connection = self._connection
        machine = self.machine
        if connection.ended:
            return
        now = self._clock.seconds()
        address = connection.address
        if address is not None:
            eliciting = machine.sent.last_ack_eliciting_time
            sent = machine.datagrams_to_send(now)
            for plaintext in sent:
                self._seal(plaintext, address)
            if sent:
                # Acks alone owe us nothing; data (and loss probes) do.
                connection._sent_now(now, data=machine.sent.last_ack_eliciting_time != eliciting)
        while True:
            event = machine.next_event()
            if event is None:
                break
            if isinstance(event, MessageReceived):
                self._deliver(event.channel, event.data)
            elif isinstance(event, Writable):
                self._writable()
        if address is not None:
            # (Without a path nothing can be sent: the connection pumps
            # again once it has one.)
            self._arm(now)

    def _deliver(self, channel: int, data: bytes) -> None:
        protocol = self._connection.protocol
        if protocol is not None:
            protocol.message_received(channel, data)
        elif len(self._early) < self.EARLY_LIMIT:
            self._early.append((channel, data))
        else:
            self._connection._endpoint.count("dropped-message-no-protocol")

    def attached(self, protocol) -> None:
        """
        The protocol is attached: give it what arrived before.
        """
        early, self._early = self._early, []
        for channel, data in early:
            protocol.message_received(channel, data)

    def _arm(self, now: float) -> None:
        deadline = self.machine.get_timer()
        timer = self._timer
        if deadline is None:
            if timer is not None and timer.active():
                timer.cancel()
            self._timer = None
            return
        # Never a zero delay: a deadline that is already due runs on the
        # next turn, at least MIN_DELAY later, so it cannot spin.
        delay = max(self.MIN_DELAY, deadline - now)
        if timer is not None and timer.active():
            # A timer already due no later stays: firing early is
            # harmless (the machine only acts on what is due, and the
            # timer is armed again then), and re-arming after every
            # send would cost a callLater and a cancel each.
            if timer.getTime() <= now + delay + 1e-6:
                return
            timer.cancel()
        self._timer = self._clock.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._connection.ended:
            return
        self.machine.handle_timer(self._clock.seconds())
        self.pump()

    def close(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._soon is not None and self._soon.active():
            self._soon.cancel()
        self._soon = None
