"""
Tests for L{p2pnet.secure.identity}.
"""

from __future__ import annotations

import os
import stat

from twisted.trial.unittest import SynchronousTestCase

from p2pnet.errors import KeyFileError, P2PError
from p2pnet.secure.identity import Identity, fingerprint, parse_fingerprint

# RFC 7748 section 6.1: Alice's private and public X25519 keys.
ALICE_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")


class IdentityTests(SynchronousTestCase):
    def test_public_key(self) -> None:
        """
        The public key is the X25519 public key of the private key (RFC 7748
        test values), and the fingerprint is its standard base64.
        """
        identity = Identity.from_private_bytes(ALICE_PRIVATE)
        self.assertEqual(identity.public, ALICE_PUBLIC)
        self.assertEqual(identity.fingerprint, "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=")
        self.assertEqual(parse_fingerprint(identity.fingerprint), ALICE_PUBLIC)
        self.assertEqual(fingerprint(ALICE_PUBLIC), identity.fingerprint)

    def test_repr_hides_private_key(self) -> None:
        identity = Identity.from_private_bytes(ALICE_PRIVATE)
        self.assertNotIn(ALICE_PRIVATE.hex(), repr(identity))
        self.assertNotIn("dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo", repr(identity))
        self.assertIn(identity.fingerprint, repr(identity))

    def test_generate(self) -> None:
        """
        Two generated identities differ and have 32-byte public keys.
        """
        one, two = Identity.generate(), Identity.generate()
        self.assertEqual(len(one.public), 32)
        self.assertNotEqual(one, two)

    def test_parse_fingerprint_refuses(self) -> None:
        for bad in ("", "abc", fingerprint(bytes(31)), fingerprint(bytes(33)), "!" * 44):
            self.assertRaises(ValueError, parse_fingerprint, bad)

    def test_text_format(self) -> None:
        """
        The file's text is the magic word and the base64 private key.
        """
        identity = Identity.from_private_bytes(ALICE_PRIVATE)
        self.assertEqual(
            identity.to_text(),
            "p2pnet-identity-1 dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=\n",
        )
        self.assertEqual(Identity.from_text(identity.to_text()).public, ALICE_PUBLIC)


class IdentityFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "identity")

    def write(self, data: bytes, mode: int = 0o600) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        os.write(fd, data)
        os.close(fd)
        os.chmod(self.path, mode)

    def test_created_0600_and_reloaded(self) -> None:
        """
        load_or_create makes the file with mode 0600 (no temporary file
        left beside it), and loading it again gives the same identity.
        """
        old_umask = os.umask(0)
        try:
            created = Identity.load_or_create(self.path)
        finally:
            os.umask(old_umask)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual(os.listdir(self.directory), ["identity"])
        self.assertEqual(Identity.load_or_create(self.path), created)
        self.assertEqual(Identity.load(self.path).public, created.public)

    def test_existing_file_used(self) -> None:
        """
        An existing identity file is read, not replaced.
        """
        self.write(b"p2pnet-identity-1 dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=\n")
        self.assertEqual(Identity.load_or_create(self.path).public, ALICE_PUBLIC)

    def test_readable_by_others_refused(self) -> None:
        """
        A file that group or others can read (or write) is refused with a
        message naming the file, its mode and the fix.
        """
        text = Identity.from_private_bytes(ALICE_PRIVATE).to_text().encode()
        for mode in (0o644, 0o640, 0o604, 0o620, 0o602):
            self.write(text, mode)
            error = self.assertRaises(KeyFileError, Identity.load_or_create, self.path)
            self.assertIn(self.path, str(error))
            self.assertIn(f"{mode:04o}", str(error))
            self.assertIn("chmod 600", str(error))
        self.write(text, 0o400)
        self.assertEqual(Identity.load(self.path).public, ALICE_PUBLIC)

    def test_corrupt_refused(self) -> None:
        """
        A file that is not an identity file is a clear L{KeyFileError} (a
        L{P2PError}) and is left alone.
        """
        for data in (
            b"",
            b"hello\n",
            b"p2pnet-identity-1\n",
            b"p2pnet-identity-2 dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=\n",
            b"p2pnet-identity-1 dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LC==\n",
            b"p2pnet-identity-1 AAAA\n",
            b"p2pnet-identity-1 \xff\xfe\n",
            b"p2pnet-identity-1 dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo= extra\n",
            b"x" * 5000,
        ):
            self.write(data)
            error = self.assertRaises(KeyFileError, Identity.load_or_create, self.path)
            self.assertIsInstance(error, P2PError)
            self.assertIn(self.path, str(error))
            with open(self.path, "rb") as f:
                self.assertEqual(f.read(), data)

    def test_not_a_regular_file(self) -> None:
        os.mkdir(self.path, 0o700)
        self.assertRaises(KeyFileError, Identity.load, self.path)

    def test_symlink_refused(self) -> None:
        """
        The identity file is not followed through a symbolic link.
        """
        target = os.path.join(self.directory, "target")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, Identity.from_private_bytes(ALICE_PRIVATE).to_text().encode())
        os.close(fd)
        os.symlink(target, self.path)
        error = self.assertRaises(KeyFileError, Identity.load_or_create, self.path)
        self.assertIn("symbolic link", str(error))

    def test_lost_race(self) -> None:
        """
        If another process creates the file between our check and our
        link, its identity is used and our temporary file is removed.
        """
        other = Identity.from_private_bytes(ALICE_PRIVATE)
        real_generate = Identity.generate

        def generate_and_race() -> Identity:
            self.write(other.to_text().encode())
            return real_generate()

        self.patch(Identity, "generate", staticmethod(generate_and_race))
        self.assertEqual(Identity.load_or_create(self.path).public, ALICE_PUBLIC)
        self.assertEqual(os.listdir(self.directory), ["identity"])
