"""
One introducer node's link to the cluster: it mirrors the registrations
and sessions it holds into Redis (written at the end of the reactor turn
that changed them, extended every third of a lifetime), reads other
nodes' peers and sessions back, and publishes messages to other nodes.
When Redis comes back after an outage it writes everything it holds again.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from p2pnet.cluster import _scripts as S
from p2pnet.cluster._records import BadRecord, dump, load, peer_record, read_peer, read_session, session_record
from p2pnet.cluster._registry import ClusterRegistry
from p2pnet.cluster._store import RedisDown, RedisStore

#: Keys per script call when writing or extending in bulk.
BATCH = 500


def new_node_id() -> str:
    return os.urandom(6).hex()


class ClusterNode:
    """
    Mirrors a L{ClusterRegistry} into Redis and forwards messages.

    @param on_message: called with each decoded message (a dict) other
        nodes publish to this one.
    """

    log = Logger()

    def __init__(self, reactor, url: str, registry: ClusterRegistry, node_id: str | None = None) -> None:
        self._reactor = reactor
        self.node_id = node_id or new_node_id()
        self.registry = registry
        self.ttl_ms = int(registry.lifetime * 1000)
        self.on_message: Callable[[dict], None] = lambda message: None
        self.store = RedisStore(reactor, url, S.CHANNEL + self.node_id, self._received, self.resync)
        self._dirty: OrderedDict[str, object] = OrderedDict()
        #: peer id -> the Deferred of its sessions-to-take-over lookup.
        self.fetching: dict[str, Deferred] = {}
        self._flush_call = None
        self._sync_call = None
        self.stats = {"redis-writes": 0, "redis-reads": 0, "forwarded": 0, "forwards-received": 0, "bad-records": 0}
        registry.observer = self

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        self.store.startService()
        self._sync_call = self._reactor.callLater(self.registry.lifetime / 3, self._sync)

    def stop(self) -> Deferred:
        for call in (self._sync_call, self._flush_call):
            if call is not None and call.active():
                call.cancel()
        self._sync_call = self._flush_call = None
        return self.store.stopService()

    # -- writing what this node holds ----------------------------------------

    def peer_changed(self, registration) -> None:
        self._mark(registration.peer_id, registration)

    def peer_gone(self, registration) -> None:
        self._mark(registration.peer_id, None)

    def _mark(self, peer_id: str, registration) -> None:
        self._dirty.pop(peer_id, None)
        self._dirty[peer_id] = registration
        if self._flush_call is None:
            self._flush_call = self._reactor.callLater(0, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        dirty, self._dirty = self._dirty, OrderedDict()
        if not self.store.up:
            return  # written again in full when Redis is back
        put = [(pid, r) for pid, r in dirty.items() if r is not None and self.registry.holds(r)]
        gone = [pid for pid, r in dirty.items() if r is None]
        for i in range(0, len(put), BATCH):
            chunk = put[i : i + BATCH]
            self._run(
                S.PUT_PEERS,
                [S.PEER + pid for pid, _ in chunk],
                [self.node_id, self.ttl_ms, *(peer_record(r) for _, r in chunk)],
            )
        for i in range(0, len(gone), BATCH):
            self._run(S.DROP_PEERS, [S.PEER + pid for pid in gone[i : i + BATCH]], [self.node_id])
        for registration in (r for _, r in put):
            if registration.peer_key is not None and registration.sessions is None:
                self._fetch_adoptable(registration.peer_id)

    def _run(self, script: str, keys: list, args: list) -> Deferred:
        self.stats["redis-writes"] += 1
        d = self.store.eval(script, keys, args)
        d.addErrback(lambda f: f.trap(RedisDown))
        return d

    def session_changed(self, session) -> None:
        if not self.store.up:
            return
        host = self.registry.lookup(session.host, self._reactor.seconds())
        key = host.peer_key if host is not None else None
        self._run(
            S.PUT_SESSION,
            [S.SESSION + session.session_id.hex(), S.LOBBY_ALL, S.LOBBY_GAME + session.game_id, S.LOBBY_SEQ,
             S.HOSTED + session.host],
            [self.node_id, self.ttl_ms, session_record(session, key), session.session_id.hex(), ""],
        )

    def session_gone(self, session) -> None:
        if not self.store.up:
            return
        sid = session.session_id.hex()
        self._run(
            S.DROP_SESSION,
            [S.SESSION + sid, S.LOBBY_ALL, S.LOBBY_GAME + session.game_id, S.HOSTED + session.host],
            [self.node_id, sid],
        )

    def _sync(self) -> None:
        """
        Extend what this node holds (every third of a lifetime), and
        rewrite its sessions (player counts change).
        """
        self._sync_call = self._reactor.callLater(self.registry.lifetime / 3, self._sync)
        if not self.store.up:
            return
        peers = [S.PEER + r.peer_id for r in self.registry.local_peers()]
        for i in range(0, len(peers), BATCH):
            self._run(S.REFRESH_PEERS, peers[i : i + BATCH], [self.node_id, self.ttl_ms])
        for session in self.registry.local_sessions():
            self.session_changed(session)

    def resync(self) -> None:
        """
        Write everything this node holds (Redis came up or came back).
        """
        for registration in self.registry.local_peers():
            self._mark(registration.peer_id, registration)
        for session in self.registry.local_sessions():
            self.session_changed(session)

    def _fetch_adoptable(self, peer_id: str) -> None:
        if peer_id in self.fetching:
            return
        self.stats["redis-reads"] += 1
        d = self.store.eval(S.READ_HOSTED, [S.HOSTED + peer_id], [S.SESSION])
        # Session requests from this peer wait for the answer (bounded:
        # one fetch per registration, each failing within the command
        # timeout).
        self.fetching[peer_id] = d
        d.addBoth(lambda result: (self.fetching.pop(peer_id, None), result)[1])

        def found(flat) -> None:
            sessions = []
            for i in range(0, len(flat or ()) - 2, 3):
                try:
                    session_id = bytes.fromhex(flat[i].decode())
                    session, key = read_session(session_id, flat[i + 2])
                except (BadRecord, ValueError, UnicodeDecodeError):
                    self.stats["bad-records"] += 1
                    continue
                if session.host == peer_id and key is not None:
                    sessions.append((session_id, session, key))
            if sessions:
                self.registry.offer_adoption(peer_id, sessions, self._reactor.seconds())

        d.addCallback(found)
        d.addErrback(lambda f: f.trap(RedisDown))

    # -- reading other nodes' state ------------------------------------------

    def lookup_peer(self, peer_id: str) -> Deferred:
        """
        A stand-in for C{peer_id} as registered on another node and that
        node's id, or None (unknown, held here, or Redis down).
        """
        self.stats["redis-reads"] += 1
        d = self.store.execute("HMGET", S.PEER + peer_id, "n", "d")

        def found(values):
            node, record = values
            if node is None or record is None or node.decode() == self.node_id:
                return None
            try:
                return read_peer(peer_id, record, self._reactor.seconds()), node.decode()
            except BadRecord:
                self.stats["bad-records"] += 1
                return None

        return d.addCallbacks(found, lambda f: f.trap(RedisDown) and None)

    def session_node(self, session_id: bytes) -> Deferred:
        """
        The node holding session C{session_id}, or None.
        """
        if self.registry.holds_session(session_id):
            return succeed(self.node_id)
        self.stats["redis-reads"] += 1
        d = self.store.execute("HGET", S.SESSION + session_id.hex(), "n")
        d.addCallback(lambda node: node.decode() if node is not None else None)
        return d.addErrback(lambda f: f.trap(RedisDown) and None)

    def shared_offer(self, intro_id: bytes, offer: str) -> Deferred:
        """
        The relay offer both nodes of introduction C{intro_id} hand out:
        C{offer} if this node is first, else the one stored first (and
        whether ours was stored).
        """
        key = S.ALLOC + intro_id.hex()
        d = self.store.execute("SET", key, offer, "NX", "PX", 300_000)

        def stored(result):
            if result is not None:
                return offer, True
            return self.store.execute("GET", key).addCallback(lambda raw: (raw.decode() if raw else offer, False))

        return d.addCallback(stored)

    # -- messages between nodes ------------------------------------------------

    def publish(self, node: str, message: dict) -> None:
        """
        Send C{message} to node C{node} (at most once: a node that is gone
        loses it, and the peers' retransmissions ask again).
        """
        self.stats["forwarded"] += 1
        d = self.store.execute("PUBLISH", S.CHANNEL + node, dump(message))
        d.addErrback(lambda f: f.trap(RedisDown))

    def _received(self, raw) -> None:
        self.stats["forwards-received"] += 1
        try:
            message = load(raw)
        except BadRecord:
            self.stats["bad-records"] += 1
            return
        try:
            self.on_message(message)
        except Exception:
            self.log.failure("bug: handling a message from another node")
