"""
Tests for L{p2pnet.turn.TurnClient} against a scripted fake TURN server on a
L{Clock}: the client's datagrams are decoded with the STUN codec and answered
with encoded messages.
"""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from p2pnet.address import Address
from p2pnet.errors import AuthenticationFailed, ConnectionClosed, P2PError
from p2pnet.stun import (
    AttributeType,
    MessageClass,
    MessageIntegrity,
    Method,
    Nonce,
    RawAttribute,
    Realm,
    Software,
    StunMessage,
    Username,
    XorMappedAddress,
    decode,
    decode_xor_address,
    encode,
    encode_xor_address,
    long_term_key,
    verify_integrity,
)
from p2pnet.turn import (
    AllocationLost,
    NoAllocation,
    TurnAuthenticationFailed,
    TurnClient,
    TurnClosed,
    TurnError,
    TurnTimeout,
    decode_channel_data,
    encode_channel_data,
)

SERVER = Address("192.0.2.1", 3478)
OTHER = Address("192.0.2.99", 3478)
RELAYED = Address("192.0.2.1", 49152)
MAPPED = Address("203.0.113.5", 40000)
PEER = Address("198.51.100.7", 5000)
REALM = "p2pnet.test"
KEY = long_term_key("alice", REALM, "secret")


class Counter:
    """
    Deterministic transaction ids: 1, 2, 3, ... as 12 bytes.
    """

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, n: int) -> bytes:
        self.count += 1
        return self.count.to_bytes(n, "big")


class FakeServer:
    """
    Records what the client writes and answers it as a TURN server would.
    """

    def __init__(self, test: SynchronousTestCase) -> None:
        self.test = test
        self.clock = Clock()
        self.sent: list[tuple[float, bytes, tuple]] = []
        self.nonce = "nonce-1"
        self.client = TurnClient(
            self.clock, self.write, SERVER, "alice", "secret", random_bytes=Counter()
        )

    def write(self, data: bytes, addr: tuple) -> None:
        self.sent.append((self.clock.seconds(), data, addr))

    def take(self) -> tuple[StunMessage, bytes]:
        """
        The oldest unread datagram the client sent, decoded; it must be STUN
        and addressed to the server.
        """
        self.test.assertTrue(self.sent, "the client sent nothing")
        _, data, addr = self.sent.pop(0)
        self.test.assertEqual(addr, SERVER.as_tuple())
        return decode(data), data

    def take_request(self, method: int) -> tuple[StunMessage, bytes]:
        message, data = self.take()
        self.test.assertEqual((message.method, message.message_class), (method, MessageClass.REQUEST))
        return message, data

    def feed(self, data: bytes, source: Address = SERVER) -> bool:
        return self.client.datagram_received(data, source.as_tuple())

    def answer(self, request: StunMessage, attributes=(), *, key: bytes | None = KEY) -> bool:
        return self.feed(encode(request.success(attributes), integrity_key=key))

    def refuse(self, request: StunMessage, code: int, reason: str, attributes=(), *, key=None) -> bool:
        return self.feed(encode(request.error(code, reason, attributes), integrity_key=key))

    def allocate(self) -> Address:
        """
        Run the whole 401 dance and return the relayed address.
        """
        d = self.client.allocate()
        request, _ = self.take_request(Method.ALLOCATE)
        self.refuse(request, 401, "Unauthorized", [Realm(REALM), Nonce(self.nonce)])
        request, _ = self.take_request(Method.ALLOCATE)
        tid = request.transaction_id
        self.answer(
            request,
            [
                RawAttribute(AttributeType.XOR_RELAYED_ADDRESS, encode_xor_address(RELAYED, tid)),
                XorMappedAddress(MAPPED),
                RawAttribute(AttributeType.LIFETIME, struct.pack("!I", 600)),
            ],
        )
        self.clock.advance(0)
        return self.test.successResultOf(d)

    def no_timers_left(self) -> None:
        self.test.assertEqual(self.clock.getDelayedCalls(), [])


def raw(message: StunMessage, attribute_type: int) -> bytes:
    attribute = message.get_raw(attribute_type)
    assert attribute is not None, f"no {AttributeType(attribute_type).name}"
    return attribute.value


def peer_of(message: StunMessage) -> Address:
    return decode_xor_address(raw(message, AttributeType.XOR_PEER_ADDRESS), message.transaction_id)


def closed(test: SynchronousTestCase, server: FakeServer) -> None:
    """
    Close the client, answer its final Refresh, and check nothing is left
    scheduled.
    """
    d = server.client.close()
    request, _ = server.take_request(Method.REFRESH)
    test.assertEqual(raw(request, AttributeType.LIFETIME), struct.pack("!I", 0))
    server.answer(request, [RawAttribute(AttributeType.LIFETIME, bytes(4))])
    server.clock.advance(0)
    test.assertIsNone(test.successResultOf(d))
    server.no_timers_left()


class AllocateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer(self)
        self.client = self.server.client

    def test_unauthenticated_first(self) -> None:
        """
        The first Allocate asks for a UDP relay and the configured lifetime
        and carries no credentials.
        """
        self.client.allocate()
        request, data = self.server.take_request(Method.ALLOCATE)
        self.assertEqual(raw(request, AttributeType.REQUESTED_TRANSPORT), bytes((17, 0, 0, 0)))
        self.assertEqual(raw(request, AttributeType.LIFETIME), struct.pack("!I", 600))
        self.assertEqual(request.get(Software), Software("p2pnet"))
        self.assertIsNone(request.get(Username))
        self.assertIsNone(request.get(MessageIntegrity))

    def test_long_term_credentials(self) -> None:
        """
        After a 401 with REALM and NONCE, the Allocate is repeated with a new
        transaction id, USERNAME, REALM, NONCE and a MESSAGE-INTEGRITY keyed
        with MD5(username:realm:password); the relayed and mapped addresses
        come from the signed answer.
        """
        d = self.client.allocate()
        first, _ = self.server.take_request(Method.ALLOCATE)
        self.server.refuse(first, 401, "Unauthorized", [Realm(REALM), Nonce("abc")])
        second, data = self.server.take_request(Method.ALLOCATE)
        self.assertNotEqual(second.transaction_id, first.transaction_id)
        self.assertEqual(second.get(Username), Username("alice"))
        self.assertEqual(second.get(Realm), Realm(REALM))
        self.assertEqual(second.get(Nonce), Nonce("abc"))
        self.assertTrue(verify_integrity(data, KEY))
        self.assertFalse(verify_integrity(data, long_term_key("alice", REALM, "wrong")))
        tid = second.transaction_id
        self.server.answer(
            second,
            [
                RawAttribute(AttributeType.XOR_RELAYED_ADDRESS, encode_xor_address(RELAYED, tid)),
                XorMappedAddress(MAPPED),
                RawAttribute(AttributeType.LIFETIME, struct.pack("!I", 600)),
            ],
        )
        self.assertNoResult(d)  # fired on the next reactor turn, not inside datagram_received
        self.server.clock.advance(0)
        self.assertEqual(self.successResultOf(d), RELAYED)
        self.assertEqual(self.client.relayed_address, RELAYED)
        self.assertEqual(self.client.mapped_address, MAPPED)
        self.assertEqual(self.client.state, "allocated")
        again = self.client.allocate()
        self.server.clock.advance(0)
        self.assertEqual(self.successResultOf(again), RELAYED)
        self.assertEqual(self.server.sent, [])
        closed(self, self.server)

    def test_wrong_password(self) -> None:
        """
        A 401 to a request that carried credentials fails the allocation
        with L{TurnAuthenticationFailed} (an L{AuthenticationFailed}) that
        quotes the server's reason.
        """
        d = self.client.allocate()
        request, _ = self.server.take_request(Method.ALLOCATE)
        self.server.refuse(request, 401, "Unauthorized", [Realm(REALM), Nonce("abc")])
        request, _ = self.server.take_request(Method.ALLOCATE)
        self.server.refuse(request, 401, "Bad credentials", [Realm(REALM), Nonce("abc")])
        self.server.clock.advance(0)
        failure = self.failureResultOf(d, TurnAuthenticationFailed)
        self.assertIsInstance(failure.value, AuthenticationFailed)
        self.assertEqual(failure.value.code, 401)
        self.assertIn("Bad credentials", str(failure.value))
        self.assertEqual(self.client.state, "idle")
        self.server.no_timers_left()

    def test_error_response(self) -> None:
        """
        Other errors fail the allocation with L{TurnError} carrying the code
        and reason (a signed error is accepted; a trailing NUL, as coturn
        sends, is stripped).
        """
        d = self.client.allocate()
        request, _ = self.server.take_request(Method.ALLOCATE)
        self.server.refuse(request, 401, "Unauthorized", [Realm(REALM), Nonce("abc")])
        request, _ = self.server.take_request(Method.ALLOCATE)
        self.server.refuse(request, 486, "Allocation Quota Reached\x00", key=KEY)  # coturn's NUL
        self.server.clock.advance(0)
        error = self.failureResultOf(d, TurnError).value
        self.assertEqual((error.code, error.reason), (486, "Allocation Quota Reached"))
        self.assertNotIsInstance(error, AuthenticationFailed)

    def test_retransmit_schedule(self) -> None:
        """
        Unanswered requests are sent 7 times, at 0, 0.5, 1.5, 3.5, 7.5, 15.5
        and 31.5 s (the interval doubling from RTO 0.5 s), identically, and
        fail with a L{TurnTimeout} naming the server 8 s after the last.
        """
        d = self.client.allocate()
        self.server.clock.pump([0.25] * 200)
        times = [when for when, _, _ in self.server.sent]
        self.assertEqual(times, [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5])
        self.assertEqual(len({data for _, data, _ in self.server.sent}), 1)
        failure = self.failureResultOf(d, TurnTimeout)
        self.assertIn(str(SERVER), str(failure.value))
        self.assertIn("Allocate", str(failure.value))
        self.assertEqual(failure.value.elapsed, 39.5)
        self.server.no_timers_left()

    def test_timeout_exact(self) -> None:
        """
        The allocation is still pending just before 39.5 s and fails at
        39.5 s.
        """
        d = self.client.allocate()
        self.server.clock.pump([0.5] * 78)
        self.assertNoResult(d)
        self.server.clock.advance(0.5)
        self.server.clock.advance(0)
        self.failureResultOf(d, TurnTimeout)

    def test_stale_nonce_on_allocate(self) -> None:
        """
        A 438 answer carries a new nonce; the request is repeated with it
        under a new transaction id.
        """
        d = self.client.allocate()
        request, _ = self.server.take_request(Method.ALLOCATE)
        self.server.refuse(request, 401, "Unauthorized", [Realm(REALM), Nonce("old")])
        request, _ = self.server.take_request(Method.ALLOCATE)
        self.server.refuse(request, 438, "Stale Nonce", [Realm(REALM), Nonce("new")])
        again, data = self.server.take_request(Method.ALLOCATE)
        self.assertNotEqual(again.transaction_id, request.transaction_id)
        self.assertEqual(again.get(Nonce), Nonce("new"))
        self.assertTrue(verify_integrity(data, KEY))
        tid = again.transaction_id
        self.server.answer(
            again, [RawAttribute(AttributeType.XOR_RELAYED_ADDRESS, encode_xor_address(RELAYED, tid))]
        )
        self.server.clock.advance(0)
        self.assertEqual(self.successResultOf(d), RELAYED)

    def test_unsigned_success_dropped(self) -> None:
        """
        A success answer to a signed request without MESSAGE-INTEGRITY, or
        with one made with the wrong key, is dropped as if never received;
        retransmission continues and the real answer still counts.
        """
        d = self.client.allocate()
        request, _ = self.server.take_request(Method.ALLOCATE)
        self.server.refuse(request, 401, "Unauthorized", [Realm(REALM), Nonce("n")])
        request, _ = self.server.take_request(Method.ALLOCATE)
        tid = request.transaction_id
        relayed = [RawAttribute(AttributeType.XOR_RELAYED_ADDRESS, encode_xor_address(OTHER, tid))]
        self.assertTrue(self.server.answer(request, relayed, key=None))
        self.assertTrue(self.server.answer(request, relayed, key=b"x" * 16))
        self.server.clock.advance(0)
        self.assertNoResult(d)
        self.server.clock.advance(0.5)
        again, _ = self.server.take_request(Method.ALLOCATE)
        self.assertEqual(again.transaction_id, tid)
        self.server.answer(
            request, [RawAttribute(AttributeType.XOR_RELAYED_ADDRESS, encode_xor_address(RELAYED, tid))]
        )
        self.server.clock.advance(0)
        self.assertEqual(self.successResultOf(d), RELAYED)

    def test_unsigned_error_dropped(self) -> None:
        """
        An error answer (other than 400, 401, 420, 438) to a signed request
        must be signed too; a forged 403 does not fail the request.
        """
        d = self.client.allocate()
        request, _ = self.server.take_request(Method.ALLOCATE)
        self.server.refuse(request, 401, "Unauthorized", [Realm(REALM), Nonce("n")])
        request, _ = self.server.take_request(Method.ALLOCATE)
        self.server.refuse(request, 403, "Forbidden")
        self.server.clock.advance(0)
        self.assertNoResult(d)

    def test_missing_realm(self) -> None:
        """
        A 401 without REALM and NONCE fails the allocation with a TurnError
        that says so.
        """
        d = self.client.allocate()
        request, _ = self.server.take_request(Method.ALLOCATE)
        self.server.refuse(request, 401, "Unauthorized")
        self.server.clock.advance(0)
        self.assertIn("REALM", str(self.failureResultOf(d, TurnError).value))


class RefreshTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer(self)
        self.client = self.server.client
        self.server.allocate()

    def test_refresh_before_expiry(self) -> None:
        """
        A 600 s allocation is refreshed 60 s before it expires, with the
        configured lifetime and credentials; the next refresh follows the
        lifetime the server granted.
        """
        self.server.clock.advance(539.9)
        self.assertEqual(self.server.sent, [])
        self.server.clock.advance(0.1)
        request, data = self.server.take_request(Method.REFRESH)
        self.assertEqual(raw(request, AttributeType.LIFETIME), struct.pack("!I", 600))
        self.assertTrue(verify_integrity(data, KEY))
        self.server.answer(request, [RawAttribute(AttributeType.LIFETIME, struct.pack("!I", 300))])
        self.server.clock.advance(239.9)
        self.assertEqual(self.server.sent, [])
        self.server.clock.advance(0.1)
        self.server.take_request(Method.REFRESH)

    def test_short_lifetime(self) -> None:
        """
        A lifetime of 60 s or less is refreshed half-way.
        """
        self.server.clock.advance(540)
        request, _ = self.server.take_request(Method.REFRESH)
        self.server.answer(request, [RawAttribute(AttributeType.LIFETIME, struct.pack("!I", 40))])
        self.server.clock.advance(20)
        self.server.take_request(Method.REFRESH)

    def test_stale_nonce_on_refresh(self) -> None:
        """
        A 438 to a Refresh updates the nonce used by every later request.
        """
        self.server.clock.advance(540)
        request, _ = self.server.take_request(Method.REFRESH)
        self.server.refuse(request, 438, "Stale Nonce", [Realm(REALM), Nonce("fresh")])
        request, _ = self.server.take_request(Method.REFRESH)
        self.assertEqual(request.get(Nonce), Nonce("fresh"))
        self.server.answer(request, [RawAttribute(AttributeType.LIFETIME, struct.pack("!I", 600))])
        self.client.create_permission(PEER)
        request, _ = self.server.take_request(Method.CREATE_PERMISSION)
        self.assertEqual(request.get(Nonce), Nonce("fresh"))

    def test_refresh_failure_loses_allocation(self) -> None:
        """
        If a Refresh is refused, the allocation is lost: C{on_lost} hears
        an L{AllocationLost}, pending requests fail, and nothing stays
        scheduled.
        """
        lost = []
        self.client.on_lost = lost.append
        self.server.clock.advance(540)
        permission = self.client.create_permission(PEER)
        request, _ = self.server.take_request(Method.REFRESH)
        self.server.refuse(request, 437, "Allocation Mismatch", key=KEY)
        self.server.clock.advance(0)
        self.assertEqual(len(lost), 1)
        self.assertIsInstance(lost[0], AllocationLost)
        self.assertIn("437", str(lost[0]))
        self.failureResultOf(permission, AllocationLost)
        self.assertEqual(self.client.state, "idle")
        self.assertRaises(NoAllocation, self.client.send, PEER, b"x")
        self.server.no_timers_left()


class PermissionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer(self)
        self.client = self.server.client
        self.server.allocate()

    def test_create_and_refresh(self) -> None:
        """
        CreatePermission carries the peer in XOR-PEER-ADDRESS; once
        installed it is refreshed every 240 s, and asking again for the same
        IP (any port) needs no request.
        """
        d = self.client.create_permission(PEER)
        request, data = self.server.take_request(Method.CREATE_PERMISSION)
        self.assertEqual(peer_of(request).host, PEER.host)
        self.assertTrue(verify_integrity(data, KEY))
        self.server.answer(request)
        self.server.clock.advance(0)
        self.assertIsNone(self.successResultOf(d))
        again = self.client.create_permission(Address(PEER.host, 9999))
        self.server.clock.advance(0)
        self.assertIsNone(self.successResultOf(again))
        self.assertEqual(self.server.sent, [])
        for _ in range(2):
            self.server.clock.advance(239.9)
            self.assertEqual(self.server.sent, [])
            self.server.clock.advance(0.1)
            request, _ = self.server.take_request(Method.CREATE_PERMISSION)
            self.assertEqual(peer_of(request).host, PEER.host)
            self.server.answer(request)

    def test_concurrent_requests_share(self) -> None:
        """
        Two create_permission calls for one IP before the answer send one
        request and both fire.
        """
        first = self.client.create_permission(PEER)
        second = self.client.create_permission(PEER)
        request, _ = self.server.take_request(Method.CREATE_PERMISSION)
        self.assertEqual(self.server.sent, [])
        self.server.answer(request)
        self.server.clock.advance(0)
        self.successResultOf(first)
        self.successResultOf(second)

    def test_stale_nonce(self) -> None:
        """
        A 438 to CreatePermission is retried with the new nonce and the same
        peer.
        """
        d = self.client.create_permission(PEER)
        request, _ = self.server.take_request(Method.CREATE_PERMISSION)
        self.server.refuse(request, 438, "Stale Nonce", [Realm(REALM), Nonce("n2")])
        again, data = self.server.take_request(Method.CREATE_PERMISSION)
        self.assertEqual(again.get(Nonce), Nonce("n2"))
        self.assertEqual(peer_of(again).host, PEER.host)
        self.assertTrue(verify_integrity(data, KEY))
        self.server.answer(again)
        self.server.clock.advance(0)
        self.successResultOf(d)

    def test_refused(self) -> None:
        """
        A refused CreatePermission fails with the server's code.
        """
        d = self.client.create_permission(PEER)
        request, _ = self.server.take_request(Method.CREATE_PERMISSION)
        self.server.refuse(request, 403, "Forbidden IP", key=KEY)
        self.server.clock.advance(0)
        self.assertEqual(self.failureResultOf(d, TurnError).value.code, 403)

    def test_before_allocate(self) -> None:
        """
        Permissions and channels need an allocation first.
        """
        client = TurnClient(self.server.clock, self.server.write, SERVER, "alice", "secret")
        permission, channel = client.create_permission(PEER), client.bind_channel(PEER)
        self.server.clock.advance(0)
        self.failureResultOf(permission, NoAllocation)
        self.failureResultOf(channel, NoAllocation)
        self.assertRaises(NoAllocation, client.send, PEER, b"x")


class ChannelTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer(self)
        self.client = self.server.client
        self.server.allocate()

    def bind(self, peer: Address = PEER) -> int:
        d = self.client.bind_channel(peer)
        request, data = self.server.take_request(Method.CHANNEL_BIND)
        self.assertEqual(peer_of(request), peer)
        self.assertTrue(verify_integrity(data, KEY))
        self.server.answer(request)
        self.server.clock.advance(0)
        number = self.successResultOf(d)
        self.assertEqual(raw(request, AttributeType.CHANNEL_NUMBER), struct.pack("!HH", number, 0))
        return number

    def test_numbers(self) -> None:
        """
        Channels are numbered from 0x4000; binding the same peer again
        returns the same number without a request.
        """
        self.assertEqual(self.bind(PEER), 0x4000)
        self.assertEqual(self.bind(Address(PEER.host, 5001)), 0x4001)
        d = self.client.bind_channel(PEER)
        self.server.clock.advance(0)
        self.assertEqual(self.successResultOf(d), 0x4000)
        self.assertEqual(self.server.sent, [])
        self.assertEqual(self.client.channel_for(PEER), 0x4000)

    def test_refresh(self) -> None:
        """
        A channel binding is refreshed every 300 s (bindings last 600 s)
        and the permission it installed every 240 s.
        """
        self.bind()
        self.server.clock.advance(240)
        request, _ = self.server.take_request(Method.CREATE_PERMISSION)
        self.assertEqual(peer_of(request).host, PEER.host)
        self.server.answer(request)
        self.server.clock.advance(59.9)
        self.assertEqual(self.server.sent, [])
        self.server.clock.advance(0.1)
        request, _ = self.server.take_request(Method.CHANNEL_BIND)
        self.assertEqual(raw(request, AttributeType.CHANNEL_NUMBER), struct.pack("!HH", 0x4000, 0))
        self.server.answer(request)
        self.server.clock.advance(180)
        request, _ = self.server.take_request(Method.CREATE_PERMISSION)
        self.server.answer(request)
        self.server.clock.advance(60)
        request, _ = self.server.take_request(Method.REFRESH)  # the allocation's own, at 540 s
        self.server.answer(request, [RawAttribute(AttributeType.LIFETIME, struct.pack("!I", 600))])
        self.assertEqual(self.server.sent, [])
        self.server.clock.advance(60)
        self.server.take_request(Method.CHANNEL_BIND)
        self.assertEqual(self.server.sent, [])

    def test_channel_data_framing(self) -> None:
        """
        With a channel bound, send() writes ChannelData: channel number,
        length, data, and no padding (optional over UDP).
        """
        self.client.send(PEER, b"hello")
        indication, _ = self.server.take()
        self.assertEqual(indication.method, Method.SEND)
        number = self.bind()
        self.client.send(PEER, b"hello")
        _, data, addr = self.server.sent.pop()
        self.assertEqual(addr, SERVER.as_tuple())
        self.assertEqual(data, struct.pack("!HH", number, 5) + b"hello")
        self.assertEqual(len(data), 9)

    def test_channel_data_received(self) -> None:
        """
        ChannelData from the server, padded or not, is delivered as coming
        from the channel's peer; unknown channels and bad lengths are
        dropped.
        """
        received = []
        self.client.on_data = lambda peer, data: received.append((peer, data))
        number = self.bind()
        self.assertTrue(self.server.feed(encode_channel_data(number, b"abcde")))
        self.assertTrue(self.server.feed(encode_channel_data(number, b"abcde", pad=True)))
        self.assertTrue(self.server.feed(encode_channel_data(number + 1, b"lost")))
        self.assertTrue(self.server.feed(struct.pack("!HH", number, 50) + b"short"))
        self.assertTrue(self.server.feed(struct.pack("!HH", number, 1) + b"too long"))
        self.assertFalse(self.server.feed(encode_channel_data(number, b"x"), OTHER))
        self.assertEqual(received, [(PEER, b"abcde"), (PEER, b"abcde")])

    def test_channel_refused(self) -> None:
        """
        A refused ChannelBind fails the Deferred and sends keep using Send
        indications.
        """
        d = self.client.bind_channel(PEER)
        request, _ = self.server.take_request(Method.CHANNEL_BIND)
        self.server.refuse(request, 400, "Bad Request")
        self.server.clock.advance(0)
        self.assertEqual(self.failureResultOf(d, TurnError).value.code, 400)
        self.client.send(PEER, b"x")
        message, _ = self.server.take()
        self.assertEqual(message.method, Method.SEND)


class IndicationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer(self)
        self.client = self.server.client
        self.server.allocate()
        self.received = []
        self.client.on_data = lambda peer, data: self.received.append((peer, data))

    def test_send_indication(self) -> None:
        """
        Without a channel, send() writes a Send indication with
        XOR-PEER-ADDRESS and DATA.
        """
        self.client.send(PEER, b"game state")
        message, _ = self.server.take()
        self.assertEqual((message.method, message.message_class), (Method.SEND, MessageClass.INDICATION))
        self.assertEqual(peer_of(message), PEER)
        self.assertEqual(raw(message, AttributeType.DATA), b"game state")

    def test_data_indication(self) -> None:
        """
        A Data indication from the server is delivered with its peer.
        """
        tid = b"\x07" * 12
        message = StunMessage(
            Method.DATA,
            MessageClass.INDICATION,
            tid,
            (
                RawAttribute(AttributeType.XOR_PEER_ADDRESS, encode_xor_address(PEER, tid)),
                RawAttribute(AttributeType.DATA, b"pong"),
            ),
        )
        self.assertTrue(self.server.feed(encode(message)))
        self.assertEqual(self.received, [(PEER, b"pong")])

    def test_data_indication_from_elsewhere(self) -> None:
        """
        Datagrams from other addresses are not the TURN client's: it
        returns False and delivers nothing.
        """
        tid = b"\x07" * 12
        message = StunMessage(
            Method.DATA,
            MessageClass.INDICATION,
            tid,
            (
                RawAttribute(AttributeType.XOR_PEER_ADDRESS, encode_xor_address(PEER, tid)),
                RawAttribute(AttributeType.DATA, b"pong"),
            ),
        )
        self.assertFalse(self.server.feed(encode(message), OTHER))
        self.assertEqual(self.received, [])

    def test_incomplete_data_indication(self) -> None:
        """
        A Data indication without DATA or XOR-PEER-ADDRESS is dropped.
        """
        tid = b"\x07" * 12
        for attributes in [
            (RawAttribute(AttributeType.DATA, b"pong"),),
            (RawAttribute(AttributeType.XOR_PEER_ADDRESS, encode_xor_address(PEER, tid)),),
            (RawAttribute(AttributeType.XOR_PEER_ADDRESS, b"\x00\x09\x00\x00"), RawAttribute(AttributeType.DATA, b"x")),
        ]:
            message = StunMessage(Method.DATA, MessageClass.INDICATION, tid, attributes)
            self.assertTrue(self.server.feed(encode(message)))
        self.assertEqual(self.received, [])

    def test_not_stun_not_consumed(self) -> None:
        """
        Datagrams from the server that are neither STUN nor ChannelData are
        left for the endpoint.
        """
        self.assertFalse(self.server.feed(b"\x01\x02p2pnet-datagram"))
        self.assertFalse(self.server.feed(b""))

    def test_malformed_stun_dropped(self) -> None:
        """
        A STUN-framed datagram that does not decode is consumed and
        dropped.
        """
        message = StunMessage(Method.DATA, MessageClass.INDICATION, b"\x01" * 12, ())
        data = bytearray(encode(message))
        data[-1] ^= 0xFF  # break the FINGERPRINT
        self.assertTrue(self.server.feed(bytes(data)))
        self.assertEqual(self.received, [])

    def test_unmatched_answer_dropped(self) -> None:
        """
        A response matching no outstanding request is dropped.
        """
        request = StunMessage.request(Method.CREATE_PERMISSION, transaction_id=b"\x09" * 12)
        self.assertTrue(self.server.answer(request))
        self.assertEqual(self.server.clock.getDelayedCalls()[0].getTime(), 540)

    @given(st.binary(max_size=120))
    def test_arbitrary_bytes(self, data: bytes) -> None:
        """
        Arbitrary datagrams from the server never raise and never deliver
        anything except through a valid ChannelData/Data framing.
        """
        before = len(self.received)
        result = self.client.datagram_received(data, SERVER.as_tuple())
        self.assertIsInstance(result, bool)
        self.assertEqual(len(self.received), before)  # no channels bound: nothing to deliver

    @given(st.integers(0, 0x3FFF), st.binary(min_size=12, max_size=12), st.binary(max_size=100))
    def test_arbitrary_stun_framed(self, message_type: int, tid: bytes, body: bytes) -> None:
        """
        Arbitrary attributes framed as STUN from the server are consumed and
        never raise.
        """
        body = body[: len(body) - len(body) % 4]
        data = struct.pack("!HHI", message_type, len(body), 0x2112A442) + tid + body
        self.assertTrue(self.client.datagram_received(data, SERVER.as_tuple()))


class CloseTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer(self)
        self.client = self.server.client

    def test_close_releases(self) -> None:
        """
        close() sends a signed Refresh with LIFETIME 0, fails pending
        requests with L{TurnClosed}, and once the server answers leaves no
        delayed calls.
        """
        self.server.allocate()
        permission = self.client.create_permission(PEER)
        request, _ = self.server.take_request(Method.CREATE_PERMISSION)
        self.server.answer(request)
        channel = self.client.bind_channel(PEER)
        pending = self.client.create_permission(OTHER)
        self.server.sent.clear()
        d = self.client.close()
        refresh, data = self.server.take_request(Method.REFRESH)
        self.assertEqual(raw(refresh, AttributeType.LIFETIME), bytes(4))
        self.assertTrue(verify_integrity(data, KEY))
        self.server.clock.advance(0)
        self.successResultOf(permission)
        self.failureResultOf(channel, TurnClosed)
        failure = self.failureResultOf(pending, TurnClosed)
        self.assertIsInstance(failure.value, ConnectionClosed)
        self.assertNoResult(d)
        self.server.answer(refresh, [RawAttribute(AttributeType.LIFETIME, bytes(4))])
        self.server.clock.advance(0)
        self.successResultOf(d)
        self.assertEqual(self.client.state, "closed")
        self.server.no_timers_left()
        self.assertRaises(NoAllocation, self.client.send, PEER, b"x")
        self.server.clock.advance(1000)
        self.assertEqual(self.server.sent, [])

    def test_close_unanswered(self) -> None:
        """
        If the server never answers the final Refresh, close() still fires
        after close_timeout (2 s) and leaves no delayed calls.
        """
        self.server.allocate()
        d = self.client.close()
        self.server.clock.pump([0.5] * 3)
        self.assertNoResult(d)
        self.server.clock.advance(0.5)
        self.server.clock.advance(0)
        self.successResultOf(d)
        self.assertEqual([when for when, _, _ in self.server.sent], [0, 0.5, 1.5])
        self.server.no_timers_left()

    def test_close_during_allocate(self) -> None:
        """
        Closing while the Allocate is outstanding fails it with
        L{TurnClosed} and sends nothing more.
        """
        d = self.client.allocate()
        self.server.sent.clear()
        done = self.client.close()
        self.server.clock.advance(0)
        self.failureResultOf(d, TurnClosed)
        self.successResultOf(done)
        self.assertEqual(self.server.sent, [])
        self.server.no_timers_left()
        self.server.clock.advance(0)
        again = self.client.allocate()
        self.server.clock.advance(0)
        self.failureResultOf(again, TurnClosed)
        closed_again = self.client.close()
        self.server.clock.advance(0)
        self.successResultOf(closed_again)

    def test_close_idle(self) -> None:
        """
        Closing a client that never allocated sends nothing.
        """
        d = self.client.close()
        self.server.clock.advance(0)
        self.successResultOf(d)
        self.assertEqual(self.server.sent, [])
        self.server.no_timers_left()

    def test_data_after_close_ignored(self) -> None:
        """
        ChannelData arriving after close() is not delivered.
        """
        received = []
        self.client.on_data = lambda peer, data: received.append(data)
        self.server.allocate()
        d = self.client.bind_channel(PEER)
        request, _ = self.server.take_request(Method.CHANNEL_BIND)
        self.server.answer(request)
        self.server.clock.advance(0)
        number = self.successResultOf(d)
        closed(self, self.server)
        self.assertTrue(self.server.feed(encode_channel_data(number, b"late")))
        self.assertEqual(received, [])


class FramingTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """
        ChannelData encodes as a 4-byte header and decodes back, padding or
        not.
        """
        for pad in (False, True):
            data = encode_channel_data(0x4001, b"abc", pad=pad)
            self.assertEqual(len(data), 8 if pad else 7)
            self.assertEqual(decode_channel_data(data), (0x4001, b"abc"))

    def test_bad_channel(self) -> None:
        """
        Channel numbers outside 0x4000-0x7FFF are refused.
        """
        self.assertRaises(ValueError, encode_channel_data, 0x3FFF, b"")
        self.assertRaises(ValueError, encode_channel_data, 0x8000, b"")

    def test_errors_are_p2perrors(self) -> None:
        """
        Every TURN error is a P2PError.
        """
        for kind in (TurnError, TurnAuthenticationFailed, TurnTimeout, TurnClosed, NoAllocation, AllocationLost):
            self.assertTrue(issubclass(kind, P2PError), kind)
        error = TurnError(508, "Insufficient Capacity", "Allocate")
        self.assertEqual(str(error), "the TURN server refused the Allocate (508): Insufficient Capacity")
