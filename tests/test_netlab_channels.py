"""
Channels through real Linux NATs with real packet loss: a file sent as one
reliable message with C{p2pnet peer --send-file} arrives intact (sha256)
between two NATed peers, through nftables random drop rules.

Needs Linux, root, C{ip} and C{nft}; skips without them, except under CI
(C{CI=true}), where a missing prerequisite fails the test.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from tests import test_netlab


class FileTransferScenarios(test_netlab.PeerScenarioMixin, SynchronousTestCase):
    start_introducer = test_netlab.TraversalScenarios.start_introducer

    def transfer(self, size: int, loss: int, timeout: float) -> None:
        self.lab.add_site("left", "cone", loss=loss)
        self.lab.add_site("right", "cone", loss=loss)
        self.lab.add_host("left", "alice")
        self.lab.add_host("right", "bob")
        directory = tempfile.mkdtemp(prefix="p2pnet-lab-files-")
        self.addCleanup(shutil.rmtree, directory)
        blob = b"".join(hashlib.sha256(n.to_bytes(4, "big")).digest() for n in range(size // 32))
        path = os.path.join(directory, "level.bin")
        with open(path, "wb") as f:
            f.write(blob)
        inbox = os.path.join(directory, "inbox")
        os.makedirs(inbox)
        self.start_introducer()
        bob = self.start_peer("bob", "--save-dir", inbox)
        alice = self.start_peer("alice", "--connect", "bob", "--send-file", path)
        self.check(alice.wait_for_event("connected", 2 * test_netlab.CONNECT_TIMEOUT, peer="bob"), "alice did not connect")
        digest = hashlib.sha256(blob).hexdigest()
        message = bob.wait_for_event("message", timeout, peer="alice")
        self.check(message, f"bob did not receive the {size}-byte file through {loss}% loss")
        self.assertEqual((message["size"], message["sha256"]), (len(blob), digest))
        with open(os.path.join(inbox, digest + ".bin"), "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), digest)

    def test_16_mib_through_5_percent_loss(self) -> None:
        """
        16 MiB through 5% loss each way on both sites' links arrive intact.
        """
        self.transfer(16 * 1024 * 1024, 5, 240.0)

    def test_4_mib_through_20_percent_loss(self) -> None:
        """
        4 MiB through 20% loss each way on both sites' links arrive intact.
        """
        self.transfer(4 * 1024 * 1024, 20, 240.0)
