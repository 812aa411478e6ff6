"""
Known peers: the public keys pinned for peer ids, trust on first use.

The first time a peer id connects, its key is recorded; afterwards a
different key for that id raises L{PeerKeyMismatch} instead of connecting.
This is what C{p2pnet peer --trust-file FILE} keeps: with it, even a
malicious introducer or relay cannot make us talk to someone else under a
known peer's name (see docs/security.md).

File format: a JSON object,

    {"format": "p2pnet-known-peers-1",
     "peers": {"<peer id>": "<public key, standard base64>", ...}}

written atomically (a temporary file in the same directory, synced, then
renamed over the old one) with mode 0600.  To forget a peer's key, delete
its entry.  The file is refused if group or others can write to it, if it
is larger than L{MAX_FILE_SIZE} or holds more than L{MAX_ENTRIES} peers.
One process at a time should use a given file: each store writes its
whole table, so two processes sharing a file could lose each other's new
entries (never change an existing one).
"""

from __future__ import annotations

import hmac
import json
import os
import stat

from p2pnet.errors import KeyFileError, PeerKeyMismatch
from p2pnet.secure._noise import DHLEN
from p2pnet.secure.identity import fingerprint, parse_fingerprint

FILE_FORMAT = "p2pnet-known-peers-1"
MAX_ENTRIES = 4096
MAX_PEER_ID = 255  # bytes of UTF-8, the wire's string limit
MAX_FILE_SIZE = 8 * 1024 * 1024


class TrustStore:
    """
    Pinned peer keys, in memory or backed by a known-peers file.

    @ivar path: the file, or C{None} for an in-memory store.
    """

    def __init__(self, path: str | None = None, *, max_entries: int = MAX_ENTRIES) -> None:
        """
        @param path: the known-peers file (created on the first new peer);
            C{None} keeps the keys in memory only.
        @param max_entries: how many peers the store may hold.
        @raise KeyFileError: if the file exists and cannot be used.
        """
        self.path = path
        self._max_entries = max_entries
        self._peers: dict[str, bytes] = {}
        if path is not None:
            self._peers = self._load(path)

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._peers

    def get(self, peer_id: str) -> bytes | None:
        """
        The key pinned for C{peer_id}, or C{None}.
        """
        return self._peers.get(peer_id)

    def check(self, peer_id: str, key: bytes) -> bool:
        """
        Accept C{key} for C{peer_id} if it is the pinned key, or pin it if
        the peer is new (and save the file).

        @return: C{True} if the key was new and is now pinned, C{False} if
            it matched the pinned key.
        @raise PeerKeyMismatch: if a different key is pinned for the peer.
        @raise KeyFileError: if the store is full or the file cannot be
            written.
        @raise ValueError: if C{peer_id} or C{key} is malformed.
        """
        _check_peer_id(peer_id)
        if len(key) != DHLEN:
            raise ValueError(f"a peer key is {DHLEN} bytes, not {len(key)}")
        pinned = self._peers.get(peer_id)
        if pinned is not None:
            if hmac.compare_digest(pinned, key):
                return False
            raise PeerKeyMismatch(peer_id, pinned, bytes(key), self._forget_hint(peer_id))
        if len(self._peers) >= self._max_entries:
            raise KeyFileError(
                f"{self._where()} already holds {len(self._peers)} peers, its cap; "
                f"remove peers you no longer connect to"
            )
        self._peers[peer_id] = bytes(key)
        if self.path is not None:
            try:
                self._save()
            except BaseException:
                del self._peers[peer_id]
                raise
        return True

    def forget(self, peer_id: str) -> bool:
        """
        Remove the key pinned for C{peer_id} (and save the file).

        @return: whether there was one.
        """
        if peer_id not in self._peers:
            return False
        key = self._peers.pop(peer_id)
        if self.path is not None:
            try:
                self._save()
            except BaseException:
                self._peers[peer_id] = key
                raise
        return True

    def _where(self) -> str:
        if self.path is None:
            return "the in-memory known-peers store"
        return f"known-peers file {self.path}"

    def _forget_hint(self, peer_id: str) -> str:
        if self.path is None:
            return f"call TrustStore.forget({peer_id!r}) to forget the old key."
        return f"delete the entry for {peer_id!r} from {self.path} to forget the old key."

    def _load(self, path: str) -> dict[str, bytes]:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return {}
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise KeyFileError(f"known-peers file {path} is not a regular file")
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o022:
                raise KeyFileError(
                    f"known-peers file {path} has mode {mode:04o}: group or others could "
                    f"change the pinned keys. Check it, then run 'chmod 600 {path}'"
                )
            chunks = []
            size = 0
            while size <= MAX_FILE_SIZE:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
        if size > MAX_FILE_SIZE:
            raise KeyFileError(f"known-peers file {path} is larger than {MAX_FILE_SIZE} bytes")
        return self._parse(path, b"".join(chunks))

    def _parse(self, path: str, data: bytes) -> dict[str, bytes]:
        corrupt = f"known-peers file {path} is corrupt"
        try:
            document = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise KeyFileError(f"{corrupt}: not JSON") from None
        if not isinstance(document, dict) or document.get("format") != FILE_FORMAT:
            raise KeyFileError(f"{corrupt}: not a {FILE_FORMAT} file")
        peers = document.get("peers")
        if not isinstance(peers, dict):
            raise KeyFileError(f"{corrupt}: 'peers' is not an object")
        if len(peers) > self._max_entries:
            raise KeyFileError(
                f"known-peers file {path} holds {len(peers)} peers, more than the cap "
                f"of {self._max_entries}; remove peers you no longer connect to"
            )
        table = {}
        for peer_id, text in peers.items():
            try:
                _check_peer_id(peer_id)
                if not isinstance(text, str):
                    raise ValueError("key is not a string")
                table[peer_id] = parse_fingerprint(text)
            except ValueError as error:
                raise KeyFileError(f"{corrupt}: entry {peer_id!r}: {error}") from None
        return table

    def _save(self) -> None:
        assert self.path is not None
        document = {
            "format": FILE_FORMAT,
            "peers": {peer_id: fingerprint(key) for peer_id, key in sorted(self._peers.items())},
        }
        data = (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
        if len(data) > MAX_FILE_SIZE:
            raise KeyFileError(f"known-peers file {self.path} would be larger than {MAX_FILE_SIZE} bytes")
        directory = os.path.dirname(os.path.abspath(self.path))
        name = os.path.basename(self.path)
        temporary = os.path.join(directory, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
        except BaseException:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
            raise


def _check_peer_id(peer_id: object) -> None:
    if not isinstance(peer_id, str) or not peer_id:
        raise ValueError("a peer id is a non-empty string")
    if len(peer_id.encode("utf-8")) > MAX_PEER_ID:
        raise ValueError(f"a peer id is at most {MAX_PEER_ID} bytes of UTF-8")
