"""
What a wire tap sees: two real endpoints on loopback, every datagram
captured with an AF_PACKET socket (root), checked for the game's bytes in
clear, then sent again, as captured and from another address, to show a
re-sender gets nothing delivered and moves no connection.

Needs Linux and root; skips otherwise, except under CI (C{CI=true}).
"""

from __future__ import annotations

import os
import socket
import struct

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import SkipTest, TestCase

from p2pnet._registry import Registry
from p2pnet.endpoint import PeerEndpoint, PeerFactory, PeerProtocol
from p2pnet.introducer import IntroducerProtocol, IntroducerService

ETH_P_ALL = 0x0003
SECRET_MESSAGE = b"the treasure is under the third palm tree"


def _capture_socket() -> socket.socket:
    if not hasattr(socket, "AF_PACKET"):
        raise OSError("no AF_PACKET on this system")
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind(("lo", 0))
    s.setblocking(False)
    return s


def _udp_frames(capture: socket.socket, ports: set[int]) -> list[tuple[bytes, tuple, tuple, bytes]]:
    """
    Drain C{capture}: C{(frame, source, destination, payload)} for each
    IPv4/UDP datagram from or to one of C{ports}, once (loopback shows each
    frame once per direction of the interface; outgoing copies are kept).
    """
    found = []
    while True:
        try:
            frame, meta = capture.recvfrom(65535)
        except BlockingIOError:
            return found
        if meta[2] == socket.PACKET_OUTGOING or len(frame) < 14 + 20 + 8:
            continue
        if frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        header = (ip[0] & 0x0F) * 4
        if ip[9] != socket.IPPROTO_UDP:
            continue
        sport, dport = struct.unpack("!HH", ip[header : header + 4])
        if sport not in ports and dport not in ports:
            continue
        source = (socket.inet_ntoa(ip[12:16]), sport)
        destination = (socket.inet_ntoa(ip[16:20]), dport)
        found.append((frame, source, destination, ip[header + 8 :]))


class Collect(PeerProtocol):
    def __init__(self):
        self.received = []

    def datagram_received(self, data):
        self.received.append(data)


class CaptureTests(TestCase):
    timeout = 30

    def setUp(self):
        try:
            self.capture = _capture_socket()
        except (OSError, PermissionError) as e:
            if os.environ.get("CI") == "true":
                self.fail(f"CI=true and no packet capture: {e}")
            raise SkipTest(f"packet capture needs Linux and root: {e}")
        self.addCleanup(self.capture.close)

    @defer.inlineCallbacks
    def test_tap_sees_no_payload_and_replays_get_nothing(self):
        """
        The game's message never appears in clear on the wire; every
        captured datagram sent again, unchanged from its own source and from
        another address, delivers nothing to the game and leaves both
        connections on their paths; the replays are counted.
        """
        registry = Registry(30.0, os.urandom)
        service = IntroducerService(reactor, IntroducerProtocol(reactor, registry), 0, "127.0.0.1")
        service.startService()
        self.addCleanup(service.stopService)
        introducer = ("127.0.0.1", service.port.getHost().port)
        received = Collect()

        class Factory(PeerFactory):
            def build_protocol(self, peer_id):
                return received

        host = PeerEndpoint(reactor, f"127.0.0.1:{introducer[1]}", "host", interface="127.0.0.1", factory=Factory())
        player = PeerEndpoint(reactor, f"127.0.0.1:{introducer[1]}", "player", interface="127.0.0.1")
        self.addCleanup(host.stop)
        self.addCleanup(player.stop)
        yield host.start()
        yield player.start()
        mine = Collect()
        connection = yield player.connect("host", mine)
        for _ in range(5):
            connection.send(SECRET_MESSAGE)
        yield task.deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(received.received, [SECRET_MESSAGE] * 5)
        theirs = received.connection
        ports = {host.transport.getHost().port, player.transport.getHost().port}
        frames = _udp_frames(self.capture, ports)
        self.assertTrue(frames, "captured nothing")
        clear = [f for f in frames if SECRET_MESSAGE in f[3]]
        self.assertEqual(clear, [], "the game's message crossed the wire in clear")

        paths = (connection.address, theirs.address)
        replayer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        replayer.bind(("127.0.0.77", 0))
        self.addCleanup(replayer.close)
        injector = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        injector.bind(("lo", 0))
        self.addCleanup(injector.close)
        for frame, source, destination, payload in frames:
            if destination[1] == introducer[1]:
                continue
            injector.send(frame)
            replayer.sendto(payload, destination)
        yield task.deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(received.received, [SECRET_MESSAGE] * 5)
        self.assertEqual(mine.received, [])
        self.assertEqual((connection.address, theirs.address), paths)
        self.assertGreater(host.stats.get("dropped-replay", 0), 0)
