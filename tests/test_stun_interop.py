"""
Interoperability of p2pnet's STUN code with real third-party components,
over real loopback UDP:

  - p2pnet's client and C{p2pnet natcheck} against coturn's C{turnserver}
    (an RFC 5780 server on 127.0.0.1 and 127.0.0.2);
  - coturn's C{turnutils_stunclient} against p2pnet's STUN server;
  - aioice's STUN client (and codec) against p2pnet's server (and codec).

Each test skips with the reason when its tool is missing, except when the
environment variable CI is "true": then a missing tool is a failure.

Needs: Debian C{coturn} (turnserver, turnutils_stunclient); PyPI C{aioice}.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import socket
import sys
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import FailTest, SkipTest, SynchronousTestCase, TestCase

import p2pnet
from p2pnet._stunserver import listen_stun
from p2pnet.address import Address
from p2pnet.natcheck import Behaviour, StunClientProtocol, StunTimeout, check_nat
from p2pnet.stun import (
    MessageClass,
    Method,
    OtherAddress,
    Software,
    StunMessage,
    Username,
    XorMappedAddress,
    check_fingerprint,
    decode,
    encode,
    verify_integrity,
)

IN_CI = os.environ.get("CI") == "true"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(p2pnet.__file__)))


def require(available: bool, reason: str) -> None:
    """
    Skip (or, in CI, fail) unless C{available}.
    """
    if not available:
        if IN_CI:
            raise FailTest(f"{reason}; CI=true requires it")
        raise SkipTest(reason)


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"{name} not found (install the Debian package {package})")
    return path


def require_aioice():
    try:
        import aioice.stun
    except ImportError:
        require(False, "aioice is not installed (pip install aioice)")
    return aioice.stun


def deferred_test(method):
    """
    Run an C{async def} test method as a Deferred.
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        return Deferred.fromCoroutine(method(self, *args, **kwargs))

    return wrapper


def free_port_pair(hosts=("127.0.0.1", "127.0.0.2")) -> int:
    """
    A port P such that UDP P and P+1 are free on every host right now.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((hosts[0], 0))
            port = probe.getsockname()[1]
        if port >= 65535:
            continue
        sockets = []
        try:
            for host in hosts:
                for candidate in (port, port + 1):
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    sockets.append(s)
                    s.bind((host, candidate))
            return port
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free pair of UDP ports on loopback")


class _Collector(ProcessProtocol):
    def __init__(self) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.ended: Deferred = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason) -> None:
        code = reason.value.exitCode if reason.check(ProcessDone, ProcessTerminated) else None
        self.ended.callback(code)


async def run_tool(args: list[str], timeout: float = 15.0, env: dict | None = None) -> tuple[int | None, str, str]:
    """
    Run a program to completion (killing it after C{timeout} seconds) and
    return its exit code, stdout and stderr.
    """
    collector = _Collector()
    process = reactor.spawnProcess(collector, args[0], args, env=env if env is not None else os.environ.copy())
    killer = reactor.callLater(timeout, process.signalProcess, "KILL")
    code = await collector.ended
    if killer.active():
        killer.cancel()
    return code, collector.out.decode("utf-8", "replace"), collector.err.decode("utf-8", "replace")


async def stun_request(server: Address, *attributes, timeout: float = 2.0) -> tuple[StunMessage, Address]:
    """
    One Binding request from a fresh 127.0.0.1 socket; returns the answer
    and our local address.
    """
    client = StunClientProtocol(reactor)
    port = reactor.listenUDP(0, client, interface="127.0.0.1")
    try:
        message, _ = await client.request(
            StunMessage.request(Method.BINDING, attributes), server, timeout=timeout, retries=3
        )
        return message, Address("127.0.0.1", port.getHost().port)
    finally:
        client.stop()
        await port.stopListening() or None


class CoturnTests(TestCase):
    """
    p2pnet's STUN client and natcheck against a real coturn.
    """

    timeout = 60

    @deferred_test
    async def setUp(self) -> None:
        turnserver = require_tool("turnserver", "coturn")
        self.port = free_port_pair()
        self.workdir = tempfile.mkdtemp(prefix="p2pnet-coturn-")
        self.addCleanup(shutil.rmtree, self.workdir, True)
        args = [
            turnserver, "-n", "--stun-only", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp",
            "--listening-ip", "127.0.0.1", "--listening-ip", "127.0.0.2",
            "--listening-port", str(self.port), "--alt-listening-port", str(self.port + 1),
            "--relay-ip", "127.0.0.1",
            "--pidfile", os.path.join(self.workdir, "turnserver.pid"),
            "--log-file", os.path.join(self.workdir, "turnserver.log"),
            "--simple-log", "--no-stdout-log",
        ]
        self.collector = _Collector()
        self.process = reactor.spawnProcess(self.collector, turnserver, args, env={}, path=self.workdir)
        self.addCleanup(self.stop_coturn)
        # Wait until it answers (bounded).
        for _ in range(40):
            try:
                await stun_request(Address("127.0.0.1", self.port), timeout=0.25)
                return
            except StunTimeout:
                if self.collector.ended.called:
                    break
        raise FailTest(f"coturn did not start; log:\n{self.coturn_log()}")

    def coturn_log(self) -> str:
        try:
            with open(os.path.join(self.workdir, "turnserver.log")) as f:
                return f.read()[-3000:]
        except OSError:
            return "(no log)"

    async def _stop(self) -> None:
        if not self.collector.ended.called:
            self.process.signalProcess("TERM")
            killer = reactor.callLater(5, lambda: self.collector.ended.called or self.process.signalProcess("KILL"))
            await self.collector.ended
            if killer.active():
                killer.cancel()

    def stop_coturn(self) -> Deferred:
        return Deferred.fromCoroutine(self._stop())

    @deferred_test
    async def test_binding_against_coturn(self) -> None:
        """
        A p2pnet Binding request to coturn is answered with our own
        loopback address and port as XOR-MAPPED-ADDRESS, and coturn's
        alternate (127.0.0.2, port + 1) as OTHER-ADDRESS.
        """
        response, local = await stun_request(Address("127.0.0.1", self.port))
        self.assertEqual(response.message_class, MessageClass.SUCCESS)
        self.assertEqual(response.get(XorMappedAddress), XorMappedAddress(local))
        self.assertEqual(response.get(OtherAddress), OtherAddress(Address("127.0.0.2", self.port + 1)))

    @deferred_test
    async def test_check_nat_against_coturn(self) -> None:
        """
        natcheck against coturn on loopback finds no NAT: the public address
        is our own, mapping and filtering endpoint-independent, RFC 5780
        available, hairpinning works.
        """
        report = await check_nat(
            reactor, [Address("127.0.0.1", self.port)], timeout=2.0, interface="127.0.0.1", local_host="127.0.0.1"
        )
        self.assertEqual(report.public_address, report.local_address)
        self.assertEqual(report.public_address.host, "127.0.0.1")
        self.assertTrue(report.rfc5780)
        self.assertIs(report.behind_nat, False)
        self.assertEqual(report.mapping, Behaviour.ENDPOINT_INDEPENDENT)
        self.assertEqual(report.filtering, Behaviour.ENDPOINT_INDEPENDENT)
        self.assertTrue(report.hairpin)
        self.assertEqual(report.notes, ())

    @deferred_test
    async def test_natcheck_command_against_coturn(self) -> None:
        """
        C{p2pnet natcheck --stun 127.0.0.1:PORT --json} exits 0 and prints
        one JSON object with 127.0.0.1 as the public address.
        """
        env = dict(os.environ, PYTHONPATH=REPO)
        code, out, err = await run_tool(
            [sys.executable, "-m", "p2pnet", "natcheck", "--stun", f"127.0.0.1:{self.port}", "--json", "--timeout", "2"],
            env=env,
        )
        self.assertEqual(code, 0, err)
        result = json.loads(out)
        self.assertEqual(Address.parse(result["public_address"]).host, "127.0.0.1")
        self.assertEqual(result["mapping"], "endpoint-independent")
        self.assertEqual(result["filtering"], "endpoint-independent")
        self.assertTrue(result["rfc5780"])


class ThirdPartyClientTests(TestCase):
    """
    Third-party STUN clients against p2pnet's server (RFC 5780 mode, on
    127.0.0.1 and 127.0.0.2).
    """

    timeout = 60

    def setUp(self) -> None:
        self.sources: list[Address] = []

        def record(source: Address) -> bool:
            self.sources.append(source)
            return True

        self.ports = listen_stun(reactor, Address("127.0.0.1", 0), "127.0.0.2", 0, rate_limiter=record)
        for port in self.ports:
            self.addCleanup(port.stopListening)
        self.primary = self.ports[0].getHost().port
        self.alternate = self.ports[1].getHost().port

    @deferred_test
    async def test_turnutils_stunclient(self) -> None:
        """
        coturn's turnutils_stunclient gets, as its reflexive address, the
        address our server saw it send from, and our alternate address as
        OTHER-ADDRESS; its change request is answered from the alternate.
        """
        tool = require_tool("turnutils_stunclient", "coturn")
        code, out, err = await run_tool([tool, "-p", str(self.primary), "127.0.0.1"])
        self.assertEqual(code, 0, out + err)
        reflexive = re.findall(r"UDP reflexive addr: (\S+)", out)
        self.assertTrue(reflexive, out)
        for text in reflexive:
            self.assertIn(Address.parse(text), self.sources)
        self.assertEqual(Address.parse(reflexive[0]).host, "127.0.0.1")
        self.assertIn(f"Other addr: : 127.0.0.2:{self.alternate}", out)
        self.assertIn(f"Response origin: : 127.0.0.1:{self.primary}", out)
        self.assertIn(f"Response origin: : 127.0.0.2:{self.alternate}", out)

    @deferred_test
    async def test_turnutils_stunclient_plain_server(self) -> None:
        """
        Against a plain (non-RFC 5780) p2pnet server, turnutils_stunclient
        still gets the right reflexive address.
        """
        tool = require_tool("turnutils_stunclient", "coturn")
        seen: list[Address] = []
        [port] = listen_stun(reactor, Address("127.0.0.1", 0), rate_limiter=lambda s: seen.append(s) or True)
        self.addCleanup(port.stopListening)
        code, out, err = await run_tool([tool, "-p", str(port.getHost().port), "127.0.0.1"])
        self.assertEqual(code, 0, out + err)
        reflexive = re.findall(r"UDP reflexive addr: (\S+)", out)
        self.assertTrue(reflexive, out)
        self.assertEqual(Address.parse(reflexive[0]), seen[0])

    @deferred_test
    async def test_aioice_client(self) -> None:
        """
        aioice's STUN client (the one its ICE agent uses for server-reflexive
        candidates) gets its own socket address as XOR-MAPPED-ADDRESS.
        """
        require_aioice()
        code, out, err = await run_tool(
            [sys.executable, "-c", AIOICE_CLIENT, "127.0.0.1", str(self.primary)],
            env=dict(os.environ, PYTHONPATH=REPO),
        )
        self.assertEqual(code, 0, err)
        result = json.loads(out.strip().splitlines()[-1])
        self.assertEqual(result["mapped"], result["local"])
        self.assertEqual(result["mapped_plain"], result["local"])
        self.assertEqual(result["other"], ["127.0.0.2", self.alternate])
        self.assertEqual(result["software"], "p2pnet")
        self.assertIn(Address(*result["local"]), self.sources)


AIOICE_CLIENT = """
import asyncio, json, sys
from aioice import stun
from aioice.ice import StunProtocol

class Receiver:
    def data_received(self, data, component): pass
    def request_received(self, *args): pass
    def protocol_lost(self, protocol): pass

async def main(host, port):
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: StunProtocol(Receiver()), local_addr=("127.0.0.1", 0))
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    response, source = await asyncio.wait_for(protocol.request(request, (host, port)), 10)
    print(json.dumps({
        "local": list(transport.get_extra_info("sockname")[:2]),
        "mapped": list(response.attributes["XOR-MAPPED-ADDRESS"]),
        "mapped_plain": list(response.attributes.get("MAPPED-ADDRESS", ())),
        "software": response.attributes.get("SOFTWARE"),
        "other": list(response.attributes.get("OTHER-ADDRESS", ())),
    }))
    transport.close()
    await asyncio.sleep(0)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


class AioiceCodecTests(SynchronousTestCase):
    """
    Our codec and aioice's read each other's messages, integrity and
    fingerprint included.
    """

    def test_aioice_reads_ours(self) -> None:
        """
        aioice parses a response we encode, checks our MESSAGE-INTEGRITY and
        FINGERPRINT, and reads the same XOR-MAPPED-ADDRESS (IPv4 and IPv6).
        """
        aio_stun = require_aioice()
        for address in (Address("192.0.2.1", 32853), Address("2001:db8::77", 4000)):
            message = StunMessage(
                Method.BINDING, MessageClass.SUCCESS, b"\x42" * 12,
                (XorMappedAddress(address), Software("p2pnet")),
            )
            data = encode(message, integrity_key=b"secret")
            parsed = aio_stun.parse_message(data)
            self.assertTrue(parsed.check_message_integrity(b"secret"))
            self.assertFalse(parsed.check_message_integrity(b"wrong"))
            self.assertEqual(parsed.attributes["XOR-MAPPED-ADDRESS"], (address.host, address.port))
            self.assertEqual(parsed.transaction_id, b"\x42" * 12)
            self.assertEqual(parsed.attributes["SOFTWARE"], "p2pnet")
            corrupted = data[:-1] + bytes([data[-1] ^ 1])
            self.assertRaises(ValueError, aio_stun.parse_message, corrupted)

    def test_we_read_aioices(self) -> None:
        """
        We decode a request aioice encodes with USERNAME, MESSAGE-INTEGRITY
        and FINGERPRINT, and both checks pass.
        """
        aio_stun = require_aioice()
        request = aio_stun.Message(
            message_method=aio_stun.Method.BINDING,
            message_class=aio_stun.Class.REQUEST,
            transaction_id=b"\x07" * 12,
        )
        request.attributes["USERNAME"] = "alice:bob"
        request.add_message_integrity(b"secret")
        request.add_fingerprint()
        data = bytes(request)
        message = decode(data)
        self.assertEqual(message.get(Username), Username("alice:bob"))
        self.assertEqual(message.transaction_id, b"\x07" * 12)
        self.assertTrue(verify_integrity(data, b"secret"))
        self.assertTrue(check_fingerprint(data))
