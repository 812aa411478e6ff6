"""
An endpoint's identity: a static X25519 key pair.

The public half travels in the introduction and is what peers pin
(L{p2pnet.secure.trust}); the private half never leaves the endpoint.
Without an identity file an endpoint makes a fresh identity each run;
with one (C{p2pnet peer --identity FILE}) it keeps the same key across
restarts.

Identity file format: one line of ASCII text,

    p2pnet-identity-1 <private key, 32 bytes in standard base64>

followed by a newline.  The file is created with mode 0600 and is refused
if group or others can read or write it.
"""

from __future__ import annotations

import base64
import binascii
import errno
import os
import stat

from p2pnet.errors import KeyFileError
from p2pnet.secure._noise import DHLEN, KeyPair, dh

FILE_MAGIC = "p2pnet-identity-1"
MAX_FILE_SIZE = 4096


def fingerprint(public_key: bytes) -> str:
    """
    The printable form of a public key: standard base64 of its 32 bytes
    (44 characters, as WireGuard prints keys).  Compare fingerprints out of
    band to check a peer's identity.
    """
    return base64.b64encode(public_key).decode("ascii")


def parse_fingerprint(text: str) -> bytes:
    """
    The public key printed as C{text} by L{fingerprint}.

    @raise ValueError: if C{text} is not the base64 of 32 bytes.
    """
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"not a key fingerprint: {text!r}") from None
    if len(raw) != DHLEN:
        raise ValueError(f"a key fingerprint is the base64 of {DHLEN} bytes: {text!r}")
    return raw


class Identity:
    """
    A static X25519 key pair.

    @ivar key_pair: the L{KeyPair} the Noise handshake uses.
    @ivar public: the 32-byte public key.
    """

    __slots__ = ("key_pair", "public")

    def __init__(self, key_pair: KeyPair) -> None:
        self.key_pair = key_pair
        self.public = key_pair.public

    @classmethod
    def generate(cls) -> Identity:
        """
        A fresh identity from the operating system's random source.
        """
        return cls(KeyPair.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> Identity:
        """
        The identity whose private key is the 32 bytes C{raw}.
        """
        return cls(KeyPair.from_private_bytes(raw))

    def exchange(self, peer_public: bytes) -> bytes:
        """
        The X25519 shared secret with C{peer_public} (what proves this
        identity to the introducer, see L{p2pnet._introclient.Prover}).

        @raise HandshakeFailed: if C{peer_public} is not a usable key.
        """
        return dh(self.key_pair, peer_public)

    @property
    def fingerprint(self) -> str:
        """
        The public key's printable form (L{fingerprint}).
        """
        return fingerprint(self.public)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Identity):
            return NotImplemented
        return self.public == other.public

    def __hash__(self) -> int:
        return hash(self.public)

    def __repr__(self) -> str:
        # Never the private key.
        return f"<Identity {self.fingerprint}>"

    def to_text(self) -> str:
        """
        The identity file's contents for this identity.
        """
        private = base64.b64encode(self.key_pair.private_bytes()).decode("ascii")
        return f"{FILE_MAGIC} {private}\n"

    @classmethod
    def from_text(cls, text: str, source: str = "identity file") -> Identity:
        """
        Parse an identity file's contents.

        @raise KeyFileError: if C{text} is not in the format.
        """
        fields = text.split()
        if len(fields) != 2 or fields[0] != FILE_MAGIC:
            raise KeyFileError(
                f"{source} is not a p2pnet identity file (expected one line "
                f"'{FILE_MAGIC} <base64 private key>'); move it away to make a new identity"
            )
        try:
            raw = parse_fingerprint(fields[1])
        except ValueError:
            raise KeyFileError(
                f"{source}: the private key is not the base64 of {DHLEN} bytes; "
                f"the file is corrupt (move it away to make a new identity)"
            ) from None
        return cls.from_private_bytes(raw)

    @classmethod
    def load(cls, path: str) -> Identity:
        """
        Read the identity stored in C{path}.

        @raise KeyFileError: if the file is readable or writable by group
            or others, is a symbolic link or not a regular file, is too
            large, or is corrupt.
        @raise FileNotFoundError: if it does not exist.
        """
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError as error:
            if error.errno != errno.ELOOP:
                raise
            raise KeyFileError(
                f"identity file {path} is a symbolic link; give the path of the file itself"
            ) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise KeyFileError(f"identity file {path} is not a regular file")
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o077:
                raise KeyFileError(
                    f"identity file {path} has mode {mode:04o}: group or others can "
                    f"access the private key. Run 'chmod 600 {path}' if nobody else "
                    f"could have read it, otherwise make a new identity"
                )
            if info.st_size > MAX_FILE_SIZE:
                raise KeyFileError(f"identity file {path} is {info.st_size} bytes: not an identity file")
            data = os.read(fd, MAX_FILE_SIZE + 1)
        finally:
            os.close(fd)
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise KeyFileError(f"identity file {path} is not ASCII text: the file is corrupt") from None
        return cls.from_text(text, f"identity file {path}")

    @classmethod
    def load_or_create(cls, path: str) -> Identity:
        """
        Read the identity in C{path}, or make a new one and store it there
        if the file does not exist.

        The new file appears complete or not at all: the key is written to
        a temporary file created with C{O_CREAT | O_EXCL} and mode 0600 in
        the same directory, synced, and linked to C{path}, which fails if
        another process created C{path} first (then its identity is used).

        @raise KeyFileError: see L{load}.
        """
        try:
            return cls.load(path)
        except FileNotFoundError:
            pass
        identity = cls.generate()
        directory = os.path.dirname(os.path.abspath(path))
        temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            try:
                os.write(fd, identity.to_text().encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(temporary, path)
            except FileExistsError:
                return cls.load(path)
        finally:
            os.unlink(temporary)
        return identity
