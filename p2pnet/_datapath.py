"""
A connection's data path: what its datagrams look like once a path is up.

Two kinds, chosen once per connection:

  - L{SecurePath} (the default): the Noise handshake rides in the hellos
    and answers; afterwards every datagram is sealed (C{SEALED}: the path
    framing, then AES-256-GCM over frames: the game's datagrams,
    keepalives, closes and path challenges).  Nothing that is not sealed
    changes an established connection, replays are dropped and counted, and
    the connection moves to a new address only after that address answered
    a path challenge.
  - L{PlainPath} (C{insecure=True}): the p2pnet of before: C{DATA}
    datagrams tagged with the introduction key, plain keepalives and
    closes.

The connection owns one and calls it for every datagram; the data path
never calls the handshake machine per datagram: it reads and writes the
machine's timestamps, and feeds the machine only what changes its state
(the first authentic packet, a new path, a close).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from p2pnet import wire
from p2pnet.address import is_relayed
from p2pnet._messaging import Messaging, is_channel_packet
from p2pnet.errors import HandshakeFailed, MalformedMessage, P2PError
from p2pnet.secure import _frames as frames
from p2pnet.secure._pathcheck import CHALLENGE_LENGTH
from p2pnet.secure._session import PacketDropped, SecureSession

if TYPE_CHECKING:
    from p2pnet.connection import PeerConnection

#: The longest application datagram one sealed datagram carries (the
#: channel layer fragments bigger messages).
MAX_SEALED_DATAGRAM = 65507 - 4 - 24 - 1

#: Frames that only check a path: a packet of nothing else moves nothing.
_PROBING = (frames.PathChallenge, frames.PathResponse, frames.Padding)

#: A plain keepalive's C{sequence} asking for a keepalive back (see
#: L{p2pnet._liveness}); 0 asks nothing.
ECHO_REQUEST = 1

#: Close codes (CLOSE frame).
CLOSE_NORMAL = 0


class PlainPath:
    """
    No secure session: data tagged with the introduction key (if
    C{authenticate_data}), plain keepalives and closes; no channels.
    """

    secure = False
    #: No channels without a secure session.
    messages = None

    def messaging(self):
        raise P2PError("channels need a secure session: they are not available with insecure=True")

    def __init__(self, connection: PeerConnection) -> None:
        self._connection = connection
        config = connection._endpoint.config
        self._data_key = wire.DatagramMac(connection.key) if config.authenticate_data else None

    def hello_noise(self) -> bytes | None:
        return None

    def handshake_received(self, noise: bytes | None, source) -> bool:
        return True

    def control_received(self, message: wire.Message, source) -> None:
        connection = self._connection
        if isinstance(message, wire.Keepalive):
            connection._machine.traffic_received(source)
            if message.sequence == ECHO_REQUEST and source == connection._core.path and not connection.ended:
                self.send_keepalive(source)
                connection._core.last_sent = connection._clock.seconds()
        elif isinstance(message, wire.Close):
            connection._peer_closed(message.code, message.reason or "")

    def send_datagram(self, data: bytes) -> None:
        connection = self._connection
        connection._send_to(wire.encode_data(connection.remote_conn_id, data, self._data_key), connection.address)

    def send_keepalive(self, to) -> None:
        connection = self._connection
        keepalive = wire.Keepalive(connection._endpoint.new_txid(), connection.intro_id, 0)
        connection._send_to(wire.encode(keepalive, connection.key), to)

    def send_echo_request(self, to) -> None:
        # A keepalive with sequence 1: the peer answers with one of its own.
        connection = self._connection
        keepalive = wire.Keepalive(connection._endpoint.new_txid(), connection.intro_id, ECHO_REQUEST)
        connection._send_to(wire.encode(keepalive, connection.key), to)

    def send_close(self, to, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        connection = self._connection
        close = wire.Close(connection._endpoint.new_txid(), connection.intro_id, code, reason)
        connection._send_to(wire.encode(close, connection.key), to)

    def close(self) -> None:
        pass

    def data_received(self, raw: bytes, source) -> None:
        connection = self._connection
        if self._data_key is not None:
            payload = wire.verify_data(raw, self._data_key)
            if payload is None:
                connection._endpoint.count("dropped-bad-data-tag")
                return
            connection._machine.traffic_received(source)
        else:
            if source != connection.address:
                connection._endpoint.count("dropped-data-wrong-source")
                return
            payload = raw[wire.DATA_HEADER_SIZE :]
            connection._core.last_heard = connection._clock.seconds()
        connection._deliver(payload)

    def sealed_received(self, raw: bytes, source) -> None:
        self._connection._endpoint.count("dropped-sealed-insecure")


class SecurePath:
    """
    A secure session: sealed datagrams, path validation before a move.
    """

    secure = True
    log = Logger()

    #: Addresses with a challenge on its way, and what the machine gets
    #: when one is proven.
    MAX_PENDING = 16

    def __init__(self, connection: PeerConnection, session: SecureSession) -> None:
        self._connection = connection
        self.session = session
        self._pending: dict = {}
        self._retransmit = None
        #: The connection's channels, once used (see L{messaging}).
        self.messages: Messaging | None = None

    def messaging(self) -> Messaging:
        """
        The connection's channels (made on first use).
        """
        if self.messages is None:
            self.messages = Messaging(self._connection, self._seal_to)
        return self.messages

    # -- the handshake, in hellos and answers --------------------------------

    def hello_noise(self) -> bytes | None:
        return self.session.outgoing_handshake()

    def handshake_received(self, noise: bytes | None, source) -> bool:
        """
        Read the handshake message a hello or answer carries; whether we
        have the keys afterwards.
        """
        connection = self._connection
        session = self.session
        if noise is not None and not (session.ready and session.initiator):
            try:
                if session.handshake_received(noise, connection._clock.seconds()):
                    connection.log.info(
                        "secure session with {peer_id} (initiator: {initiator})",
                        peer_id=connection.peer_id,
                        initiator=session.initiator,
                    )
                    if not session.initiator:
                        # The joiner's connect request rode in message 1.
                        connection._admission.request(session.peer_payload or b"", source)
            except HandshakeFailed as e:
                connection._endpoint.count("dropped-bad-handshake")
                connection.log.debug("refused a handshake message from {source}: {error}", source=str(source), error=str(e))
        return session.ready

    def control_received(self, message: wire.Message, source) -> None:
        # Plain keepalives and closes carry only the introduction key,
        # which whoever saw the introduction knows: a secure connection
        # takes neither (its own are sealed frames).
        self._connection._endpoint.count("dropped-plain-control")

    # -- sending ----------------------------------------------------------------

    def _seal_to(self, plaintext: bytes, to) -> None:
        connection = self._connection
        if not self.session.ready or connection.remote_conn_id is None:
            connection._endpoint.count("unsent-no-keys")
            return
        now = connection._clock.seconds()
        connection._send_to(self.session.seal(connection.remote_conn_id, plaintext, now), to)

    def send_datagram(self, data: bytes) -> None:
        if len(data) > MAX_SEALED_DATAGRAM:
            raise ValueError(f"a datagram holds at most {MAX_SEALED_DATAGRAM} bytes, not {len(data)}")
        self._seal_to(frames.encode_datagram(data), self._connection.address)

    def send_keepalive(self, to) -> None:
        connection = self._connection
        if not self.session.peer_confirmed and not self.session.initiator and self.session.ready:
            # The initiator may not have our handshake message 2 yet (our
            # answer to its hello can be lost, or we validated through its
            # answer to ours): send it once more in a hello.
            connection._send_hello(to)
        self._seal_to(frames.encode_frames([frames.Ping()]), to)

    def send_echo_request(self, to) -> None:
        # Any peer answers a PATH_CHALLENGE where it came from; on the
        # current path the answer proves nothing new, only that the peer
        # is alive (it matches no pending challenge and moves nothing).
        data = self._connection._endpoint._random_bytes(CHALLENGE_LENGTH)
        self._seal_to(frames.encode_frames([frames.PathChallenge(data)]), to)

    def send_close(self, to, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        self._seal_to(frames.encode_frames([frames.Close(code, reason)]), to)

    def send_frames(self, frame_list: list, to) -> None:
        """
        Seal C{frame_list} (the connect request's frames) to C{to}.
        """
        self._seal_to(frames.encode_frames(frame_list), to)

    # -- receiving ------------------------------------------------------------

    def data_received(self, raw: bytes, source) -> None:
        self._connection._endpoint.count("dropped-plain-data")

    def sealed_received(self, raw: bytes, source) -> None:
        connection = self._connection
        endpoint = connection._endpoint
        now = connection._clock.seconds()
        try:
            plaintext = self.session.open(raw, now)
        except PacketDropped as e:
            endpoint.count("dropped-" + e.reason)
            return
        datagram = frames.single_datagram(plaintext)
        channel = datagram is None and is_channel_packet(plaintext)
        if datagram is not None or channel:
            decoded = None
            probing = False
        else:
            try:
                decoded = frames.decode_frames(plaintext)
            except MalformedMessage:
                endpoint.count("dropped-malformed-frames")
                return
            probing = all(isinstance(frame, _PROBING) for frame in decoded)
        core = connection._core
        if source == core.path:
            core.last_heard = core.last_heard_on_path = now
            if is_relayed(source) and not core.route_confirmed:
                connection._machine.traffic_received(source)
        elif connection.address is None:
            # Before the path is up, an authentic packet validates it: only
            # the peer has the keys.
            self.session.prove(source)
            connection._machine.traffic_received(source)
        elif probing or not self.session.newest:
            # A path check, or a packet overtaken by a newer one (late,
            # from the path we left): alive, but no reason to move.
            core.last_heard = now
        elif is_relayed(source) or self.session.proven(source):
            connection._machine.traffic_received(source)
        else:
            # Authentic, but from an address the peer has not shown it
            # receives at (an on-path attacker can forward a fresh packet
            # from anywhere): alive, yes; moved, not before a challenge.
            core.last_heard = now
            self.challenge(source, "traffic")
        if channel:
            if not self.messaging().received(plaintext):
                endpoint.count("dropped-malformed-frames")
            return
        if decoded is None:
            connection._deliver(datagram)
            return
        for frame in decoded:
            if connection.ended:
                return
            self._frame(frame, source, now)

    def _frame(self, frame, source, now: float) -> None:
        connection = self._connection
        if isinstance(frame, frames.Datagram):
            connection._deliver(frame.data)
        elif isinstance(frame, frames.PathChallenge):
            # Answer where it came from: that is what proves the path.
            self._seal_to(frames.encode_frames([frames.PathResponse(frame.data)]), source)
        elif isinstance(frame, frames.PathResponse):
            if self.session.response_received(source, frame.data, now):
                self._arm_retransmit()
                kind = self._pending.pop(source, "traffic")
                connection.log.info(
                    "{peer_id} proved it receives at {source}", peer_id=connection.peer_id, source=str(source)
                )
                if kind == "answer":
                    connection._machine.answer_received(source)
                else:
                    connection._machine.traffic_received(source)
        elif isinstance(frame, (frames.Close, frames.Connect, frames.Accept)):
            connection._frame_received(frame, source)

    # -- path validation ----------------------------------------------------------

    def challenge(self, address, kind: str) -> None:
        """
        Send a PATH_CHALLENGE to C{address}; when the answer proves it, the
        machine gets C{kind} (C{"traffic"}: move there; C{"answer"}: an
        answer to our hello came from there, upgrade if it is better).
        """
        connection = self._connection
        data = self.session.challenge(address, connection._clock.seconds())
        if data is None:
            connection._endpoint.count("challenge-pending")
            return
        if len(self._pending) >= self.MAX_PENDING:
            del self._pending[next(iter(self._pending))]
        self._pending[address] = kind
        connection._endpoint.count("path-challenges")
        self._seal_to(frames.encode_frames([frames.PathChallenge(data)]), address)
        self._arm_retransmit()

    def _arm_retransmit(self) -> None:
        if self._retransmit is not None and self._retransmit.active():
            self._retransmit.cancel()
        self._retransmit = None
        deadline = self.session.next_challenge_deadline()
        if deadline is None or self._connection.ended:
            return
        clock = self._connection._clock
        self._retransmit = clock.callLater(max(0.0, deadline - clock.seconds()), self._resend_challenges)

    def _resend_challenges(self) -> None:
        self._retransmit = None
        for address, data in self.session.challenges_due(self._connection._clock.seconds()):
            self._seal_to(frames.encode_frames([frames.PathChallenge(data)]), address)
        self._arm_retransmit()

    def close(self) -> None:
        """
        The connection ended: no more challenges, no more channel timers.
        """
        if self._retransmit is not None and self._retransmit.active():
            self._retransmit.cancel()
        self._retransmit = None
        if self.messages is not None:
            self.messages.close()

    def answer_allowed(self, source) -> bool:
        """
        Whether an answer to our hello from C{source} may reach the
        machine now: before the path is up, yes (the handshake message it
        carries proves the peer); afterwards only from a proven address (a
        new one is challenged first).
        """
        connection = self._connection
        if connection.address is None or source == connection._core.path:
            return True
        if is_relayed(source) or self.session.proven(source):
            return True
        self.challenge(source, "answer")
        return False
