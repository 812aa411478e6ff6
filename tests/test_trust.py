"""
Tests for L{p2pnet.secure.trust}.
"""

from __future__ import annotations

import json
import os
import stat

from twisted.trial.unittest import SynchronousTestCase

from p2pnet.errors import KeyFileError, P2PError, PeerKeyMismatch
from p2pnet.secure.trust import TrustStore

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
# Standard base64 of KEY_A and KEY_B.
PRINT_A = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
PRINT_B = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="


class MemoryStoreTests(SynchronousTestCase):
    def test_first_use_then_match(self) -> None:
        """
        A new peer's key is pinned; the same key again matches.
        """
        store = TrustStore()
        self.assertTrue(store.check("host", KEY_A))
        self.assertFalse(store.check("host", KEY_A))
        self.assertEqual(store.get("host"), KEY_A)
        self.assertEqual(len(store), 1)

    def test_mismatch(self) -> None:
        """
        A different key for a pinned peer raises L{PeerKeyMismatch} naming
        the peer, both fingerprints and how to forget the old key, and
        pins nothing new.
        """
        store = TrustStore()
        store.check("host", KEY_A)
        error = self.assertRaises(PeerKeyMismatch, store.check, "host", KEY_B)
        self.assertIsInstance(error, P2PError)
        self.assertEqual((error.peer_id, error.expected, error.got), ("host", KEY_A, KEY_B))
        message = str(error)
        self.assertIn("'host'", message)
        self.assertIn(PRINT_A, message)
        self.assertIn(PRINT_B, message)
        self.assertIn("forget", message)
        self.assertEqual(store.get("host"), KEY_A)

    def test_forget(self) -> None:
        """
        After forget, the peer's next key is pinned as new.
        """
        store = TrustStore()
        store.check("host", KEY_A)
        self.assertTrue(store.forget("host"))
        self.assertFalse(store.forget("host"))
        self.assertTrue(store.check("host", KEY_B))

    def test_cap(self) -> None:
        """
        A full store refuses to pin a new peer (with a L{KeyFileError})
        but still checks the peers it holds.
        """
        store = TrustStore(max_entries=2)
        store.check("a", KEY_A)
        store.check("b", KEY_B)
        self.assertRaises(KeyFileError, store.check, "c", KEY_A)
        self.assertNotIn("c", store)
        self.assertFalse(store.check("a", KEY_A))
        self.assertRaises(PeerKeyMismatch, store.check, "b", KEY_A)

    def test_bad_arguments(self) -> None:
        store = TrustStore()
        for peer_id, key in (("", KEY_A), ("x" * 256, KEY_A), ("host", KEY_A[:31]), (7, KEY_A), ("\udc80", KEY_A)):
            self.assertRaises(ValueError, store.check, peer_id, key)
        self.assertEqual(len(store), 0)


class FileStoreTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "known_peers")

    def write(self, document, mode: int = 0o600) -> None:
        data = document if isinstance(document, bytes) else json.dumps(document).encode()
        with open(self.path, "wb") as f:
            f.write(data)
        os.chmod(self.path, mode)

    def test_persists(self) -> None:
        """
        A pinned key is in the file at once (mode 0600, no temporary file
        left) and a new store on the same file enforces it.
        """
        TrustStore(self.path).check("host 1 ünï", KEY_A)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual(os.listdir(self.directory), ["known_peers"])
        with open(self.path, encoding="utf-8") as f:
            self.assertEqual(
                json.load(f),
                {"format": "p2pnet-known-peers-1", "peers": {"host 1 ünï": PRINT_A}},
            )
        again = TrustStore(self.path)
        self.assertFalse(again.check("host 1 ünï", KEY_A))
        error = self.assertRaises(PeerKeyMismatch, again.check, "host 1 ünï", KEY_B)
        self.assertIn(self.path, str(error))

    def test_missing_file_is_empty(self) -> None:
        store = TrustStore(self.path)
        self.assertEqual(len(store), 0)
        self.assertFalse(os.path.exists(self.path))

    def test_forget_persists(self) -> None:
        store = TrustStore(self.path)
        store.check("a", KEY_A)
        store.check("b", KEY_B)
        store.forget("a")
        again = TrustStore(self.path)
        self.assertIsNone(again.get("a"))
        self.assertEqual(again.get("b"), KEY_B)

    def test_hand_written_file(self) -> None:
        """
        A file written by hand in the documented format is read.
        """
        self.write({"format": "p2pnet-known-peers-1", "peers": {"host": PRINT_B}})
        self.assertRaises(PeerKeyMismatch, TrustStore(self.path).check, "host", KEY_A)

    def test_corrupt(self) -> None:
        """
        A file that is not a known-peers file is a L{KeyFileError} naming
        it, and is left alone.
        """
        for document in (
            b"",
            b"not json",
            b"\xff\xfe",
            [],
            {"peers": {}},
            {"format": "p2pnet-known-peers-2", "peers": {}},
            {"format": "p2pnet-known-peers-1", "peers": []},
            {"format": "p2pnet-known-peers-1", "peers": {"host": "AAAA"}},
            {"format": "p2pnet-known-peers-1", "peers": {"host": 7}},
            {"format": "p2pnet-known-peers-1", "peers": {"": PRINT_A}},
        ):
            self.write(document)
            with open(self.path, "rb") as f:
                before = f.read()
            error = self.assertRaises(KeyFileError, TrustStore, self.path)
            self.assertIn(self.path, str(error))
            with open(self.path, "rb") as f:
                self.assertEqual(f.read(), before)

    def test_writable_by_others(self) -> None:
        """
        A file group or others could write is refused; one they can only
        read is accepted.
        """
        document = {"format": "p2pnet-known-peers-1", "peers": {"host": PRINT_A}}
        for mode in (0o620, 0o602, 0o666):
            self.write(document, mode)
            error = self.assertRaises(KeyFileError, TrustStore, self.path)
            self.assertIn("chmod 600", str(error))
        self.write(document, 0o644)
        self.assertEqual(TrustStore(self.path).get("host"), KEY_A)

    def test_entry_cap_on_load(self) -> None:
        """
        A file holding more peers than the cap is refused.
        """
        peers = {f"peer{n}": PRINT_A for n in range(3)}
        self.write({"format": "p2pnet-known-peers-1", "peers": peers})
        self.assertRaises(KeyFileError, TrustStore, self.path, max_entries=2)
        self.assertEqual(len(TrustStore(self.path, max_entries=3)), 3)

    def test_size_cap(self) -> None:
        """
        A file larger than 8 MiB is refused without parsing it.
        """
        with open(self.path, "wb") as f:
            f.truncate(8 * 1024 * 1024 + 1)
        os.chmod(self.path, 0o600)
        error = self.assertRaises(KeyFileError, TrustStore, self.path)
        self.assertIn("larger", str(error))

    def test_failed_save_pins_nothing(self) -> None:
        """
        If the file cannot be written, the new key is not pinned in memory
        either and the error surfaces.
        """
        store = TrustStore(os.path.join(self.directory, "missing-dir", "known_peers"))
        self.assertRaises(OSError, store.check, "host", KEY_A)
        self.assertIsNone(store.get("host"))
