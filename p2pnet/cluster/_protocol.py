"""
The introducer protocol of a cluster node: what L{IntroducerProtocol}
does, plus peers and sessions held by other nodes, found in Redis.

Each side of an introduction (and a reversal, a candidate, a relay offer)
is sent by the node that holds that side's registration: that is the
address the peer's NAT lets in, and the node where its acknowledgement
arrives.  A node that needs another to send publishes the encoded message
on that node's channel; the holder sends it to its registration's
current address, under the same rules as its own pushes (only to
verified addresses, and for an unauthenticated request no more bytes to
the requester than the request paid for).  A join of a session held
elsewhere is decided by the session's node.
"""

from __future__ import annotations

from collections import OrderedDict

from p2pnet import wire
from p2pnet._pushes import Budget
from twisted.python.failure import Failure

from p2pnet._registry import ChallengeNeeded, Registration, RegistryError
from p2pnet.address import Address
from p2pnet.cluster._records import BadRecord, dump, load, peer_record, read_peer
from p2pnet.introducer import IntroducerProtocol, introductions
from p2pnet.wire import ErrorCode

#: Joins of sessions held elsewhere waiting for the joiner's
#: acknowledgement (at most this many).
MAX_REMOTE_JOINS = 65536
#: Seconds before a retransmitted join of a session held elsewhere is
#: forwarded again, and how long a deciding node remembers one it decided.
FORWARD_AGAIN = 2.0
JOIN_MEMORY = 30.0
#: Most joins remembered in each of those two tables.
MAX_JOIN_MEMORY = 65536
_FORWARDABLE = (wire.Introduction, wire.Reverse, wire.Candidate, wire.RelayOffer, wire.Error)


class ClusterIntroducerProtocol(IntroducerProtocol):
    """
    L{IntroducerProtocol} on a L{ClusterRegistry}, with a L{ClusterNode}.
    """

    def __init__(self, clock, registry, node, *args, **kwargs) -> None:
        super().__init__(clock, registry, *args, **kwargs)
        self.node = node
        node.on_message = self._from_node
        # (joiner, txid) -> when its join was forwarded; and, on the
        # deciding node, when a forwarded join was decided.
        self._joins_sent: OrderedDict[tuple, float] = OrderedDict()
        self._joins_decided: OrderedDict[tuple, float] = OrderedDict()
        # intro id -> (session id, deciding node, joiner's address, joiner)
        self._remote_joins: OrderedDict[bytes, tuple[bytes, str, tuple, str]] = OrderedDict()

    # -- requests that may name a peer or session of another node ------------

    def _introduce_request(self, message: wire.Introduce, requester, size, authenticated, now) -> None:
        if message.target is not None and message.session_id is None:
            if self.registry.lookup(message.target, now) is None and message.target != requester.peer_id:
                self._with_remote(message.target, message, requester.public, size, authenticated,
                                  lambda target, node: self._introduce(
                                      requester, target, message.txid, None, size, authenticated, message.flags))
                return
        elif message.session_id is not None and message.target is None:
            if not self.registry.holds_session(message.session_id):
                # Not deduplicated for 30 s like local requests: a
                # retransmission after FORWARD_AGAIN is forwarded again
                # (to the session's node then: its first node may have
                # died); that node ignores what it already decided.
                self._forget_recent(message)
                key = (requester.peer_id, message.txid)
                sent = self._joins_sent.get(key)
                if sent is not None and now - sent < FORWARD_AGAIN:
                    self.stats["introductions-repeated"] += 1
                    return
                _remember(self._joins_sent, key, now)
                self._join_elsewhere(message, requester, size, authenticated)
                return
        super()._introduce_request(message, requester, size, authenticated, now)

    def _with_remote(self, peer_id: str, message, source: Address, size, authenticated, then) -> None:
        """
        Look C{peer_id} up in Redis and call C{then(stand-in, node)}, or
        answer C{UNKNOWN_PEER} to C{source}.
        """
        budget = self._budget

        def found(result) -> None:
            if result is None or not (result[0].verified or authenticated):
                self._forget_recent(message)
                self._error(message.txid, ErrorCode.UNKNOWN_PEER, f"no peer {peer_id!r}", source, size, authenticated)
                return
            self.registry.remember_remote(result[0], result[1], self._clock.seconds())
            self._budget = budget
            try:
                then(*result)
            except RegistryError as e:
                self._error(message.txid, e.code, e.reason, source, size, authenticated)
            finally:
                self._budget = None

        self.node.lookup_peer(peer_id).addCallback(found).addErrback(self._bug)

    def _forget_recent(self, message) -> None:
        self._recent.pop((message.peer_id, message.txid), None)

    def _bug(self, failure) -> None:
        self.stats["internal-error"] += 1
        self.log.failure("bug: a cluster continuation failed", failure)

    def _join_elsewhere(self, message: wire.Introduce, requester: Registration, size, authenticated) -> None:
        source = requester.public

        def found(node) -> None:
            if node is None:
                self._forget_recent(message)
                self._error(message.txid, ErrorCode.UNKNOWN_SESSION, "no such session", source, size, authenticated)
                return
            self.node.publish(node, {
                "o": "join",
                "s": message.session_id.hex(),
                "t": message.txid.hex(),
                "id": requester.peer_id,
                "r": peer_record(requester),
                "from": self.node.node_id,
                "b": None if authenticated else size,
                "f": message.flags or 0,
            })

        self.node.session_node(message.session_id).addCallback(found).addErrback(self._bug)

    def _introduce(self, requester, target, txid, session_id, size, authenticated, flags=None, hide_target=False) -> None:
        r_node = self.registry.node_of(requester)
        t_node = self.registry.node_of(target)
        if r_node is None and t_node is None:
            super()._introduce(requester, target, txid, session_id, size, authenticated, flags, hide_target)
            return
        if not (target.verified or authenticated):
            self.stats["introductions-skipped"] += 1
            return
        _, to_requester, to_target = introductions(
            self._random_bytes, requester, target, txid, session_id, flags, hide_target
        )
        join = (session_id.hex(), self.node.node_id) if session_id is not None else None
        self._deliver(requester, r_node, to_requester, None if authenticated else size, join, target.peer_id)
        self._deliver(target, t_node, to_target, None, None, requester.peer_id)
        self.stats["introductions"] += 1
        self.stats["introductions-cross-node"] += 1

    def _deliver(self, peer: Registration, node: str | None, message, paid: int | None, join, other: str) -> None:
        """
        Send C{message} to C{peer}: from here if we hold it (C{node} is
        None), else through its node.  C{paid}: the size of the
        unauthenticated request this answers (None: authenticated, or
        not an answer).
        """
        if node is not None:
            self.node.publish(node, {
                "o": "push", "to": peer.peer_id, "m": wire.encode(message, None).hex(),
                "b": paid, "j": join, "x": other,
            })
            return
        to = peer.public.as_tuple()
        now = self._clock.seconds()
        if isinstance(message, (wire.Reverse, wire.Error)):
            self._send(message, peer.public, paid, paid is None)
            return
        raw = wire.encode(message, self._secret)
        if paid is not None and len(raw) > paid:
            self.stats["dropped-amplification"] += 1
            return
        if isinstance(message, wire.Introduction):
            push_id = message.intro_id
            self.introductions.remember(message.intro_id, peer.peer_id, other, now)
            if join is not None:
                session_id, decider = bytes.fromhex(join[0]), join[1]
                if decider == self.node.node_id:
                    self.introductions.remember_join(message.intro_id, session_id, peer.peer_id, to)
                else:
                    joins = self._remote_joins
                    while len(joins) >= MAX_REMOTE_JOINS:
                        joins.popitem(last=False)
                    joins[message.intro_id] = (session_id, decider, to, peer.peer_id)
        else:
            push_id = message.allocation
        self._pusher.push(push_id, raw, to, Budget(paid, to) if paid is not None else None)

    # -- hosting again after moving here ---------------------------------------

    def _on_host_session(self, message: wire.HostSession, source, size, authenticated, now) -> None:
        """
        As L{IntroducerProtocol}'s, but while this node is still reading
        which sessions the host held through another node, the request
        waits for that answer (so the session keeps its id).
        """
        fetching = self.node.fetching.get(message.peer_id)
        if fetching is None:
            super()._on_host_session(message, source, size, authenticated, now)
            return
        budget = self._budget

        def go(result):
            self._budget = budget
            try:
                IntroducerProtocol._on_host_session(self, message, source, size, authenticated, self._clock.seconds())
            except ChallengeNeeded as e:
                self._challenge(message.txid, e, source, size, authenticated, self._clock.seconds())
            except RegistryError as e:
                self._error(message.txid, e.code, e.reason, source, size, authenticated)
            except Exception:
                self._bug(Failure())
            finally:
                self._budget = None
            return result

        fetching.addBoth(go)

    # -- acknowledgements of joins decided elsewhere -------------------------

    def _on_intro_ack(self, message: wire.IntroAck, source, size, authenticated, now) -> None:
        join = self._remote_joins.get(message.intro_id)
        if join is not None and join[2] == source.as_tuple():
            del self._remote_joins[message.intro_id]
            self.node.publish(join[1], {"o": "confirm", "s": join[0].hex(), "id": join[3]})
        super()._on_intro_ack(message, source, size, authenticated, now)

    # -- reversals, candidates, relay offers ---------------------------------

    def _on_reverse_request(self, message: wire.ReverseRequest, source, size, authenticated, now) -> None:
        requester = self.registry.authenticate(message.peer_id, message.cookie, source, now)
        if self.registry.lookup(message.target, now) is not None:
            super()._on_reverse_request(message, source, size, authenticated, now)
            return

        def then(target, node) -> None:
            reverse = wire.Reverse(self._random_bytes(wire.TXID_SIZE), requester.peer_id, message.intro_id,
                                   requester.public)
            self._deliver(target, node, reverse, None, None, requester.peer_id)
            self.stats["reversals"] += 1

        self._with_remote(message.target, message, source, size, authenticated, then)

    def _on_candidate_offer(self, message: wire.CandidateOffer, source, size, authenticated, now) -> None:
        requester = self.registry.authenticate(message.peer_id, message.cookie, source, now)
        if self.registry.lookup(message.target, now) is not None or message.target == requester.peer_id:
            super()._on_candidate_offer(message, source, size, authenticated, now)
            return

        def then(target, node) -> None:
            self._send(wire.IntroAck(message.txid, message.intro_id), source, size, authenticated)
            forward = wire.Candidate(self._random_bytes(wire.TXID_SIZE), message.intro_id, requester.peer_id,
                                     message.candidate, self._random_bytes(8))
            self._deliver(target, node, forward, None, None, requester.peer_id)
            self.stats["candidates-forwarded"] += 1

        self._with_remote(message.target, message, source, size, authenticated, then)

    def _on_relay_request(self, message: wire.RelayRequest, source, size, authenticated, now) -> None:
        requester = self.registry.authenticate(message.peer_id, message.cookie, source, now)
        if self.relays is None or self.registry.lookup(message.target, now) is not None:
            super()._on_relay_request(message, source, size, authenticated, now)
            return

        def then(target, node) -> None:
            if self.relays.choose() is None:
                raise RegistryError(ErrorCode.BAD_REQUEST, "no relay is answering")
            allocation, fresh = self.introductions.relay_allocation(
                message.intro_id, requester.peer_id, target.peer_id, self._random_bytes
            )
            chosen = None if fresh else self.relays.relay_of(allocation)
            if chosen is None:
                chosen = self.relays.assign(allocation, message.intro_id, (requester.peer_id, target.peer_id))
            relay = chosen.settings.offer_address()
            ours = dump({"a": allocation.hex(), "h": relay.host, "p": relay.port,
                         "k": wire.relay_key(chosen.settings.secret, allocation).hex()})
            budget = self._budget

            def shared(result) -> None:
                offer, first = result
                try:
                    record = load(offer)
                    allocation_, key = bytes.fromhex(record["a"]), bytes.fromhex(record["k"])
                    relay_ = Address(record["h"], int(record["p"]))
                except (BadRecord, KeyError, ValueError, TypeError):
                    self.node.stats["bad-records"] += 1
                    return
                mine, theirs = (0, 1) if requester.peer_id < target.peer_id else (1, 0)
                self._budget = budget
                try:
                    self._send(wire.RelayOffer(message.txid, message.intro_id, allocation_, relay_, key, mine),
                               source, size, authenticated)
                finally:
                    self._budget = None
                if first:
                    offer_ = wire.RelayOffer(self._random_bytes(wire.TXID_SIZE), message.intro_id, allocation_,
                                             relay_, key, theirs)
                    self._deliver(target, node, offer_, None, None, requester.peer_id)
                    self.stats["relay-allocations"] += 1

            self.node.shared_offer(message.intro_id, ours).addCallback(shared).addErrback(self._bug)

        self._with_remote(message.target, message, source, size, authenticated, then)

    # -- messages from other nodes ---------------------------------------------

    def _from_node(self, message: dict) -> None:
        kind = message.get("o")
        now = self._clock.seconds()
        try:
            if kind == "push":
                self._forwarded_push(message, now)
            elif kind == "join":
                self._forwarded_join(message, now)
            elif kind == "confirm":
                if self.registry.confirm_join(bytes.fromhex(message["s"]), str(message["id"]), now):
                    self.stats["joins-confirmed"] += 1
            else:
                self.stats["dropped-node-message"] += 1
        except (KeyError, ValueError, TypeError, BadRecord, wire.MalformedMessage):
            self.stats["dropped-node-message"] += 1

    def _forwarded_push(self, message: dict, now: float) -> None:
        peer = self.registry.lookup(str(message["to"]), now)
        if peer is None:
            self.stats["dropped-forward-unknown-peer"] += 1
            return
        decoded = wire.decode(bytes.fromhex(message["m"]))
        if not isinstance(decoded, _FORWARDABLE):
            self.stats["dropped-node-message"] += 1
            return
        paid = message.get("b")
        if paid is not None and not isinstance(paid, int):
            raise TypeError("bad budget")
        if not isinstance(decoded, wire.Error) and not peer.verified and paid is None:
            # Unasked pushes only go to addresses that proved themselves.
            self.stats["introductions-skipped"] += 1
            return
        join = message.get("j")
        if join is not None and not (isinstance(join, list) and len(join) == 2):
            raise TypeError("bad join")
        self._deliver(peer, None, decoded, paid, join, str(message.get("x", "")))

    def _forwarded_join(self, message: dict, now: float) -> None:
        peer_id = str(message["id"])
        joiner = read_peer(peer_id, message["r"], now)
        origin = str(message["from"])
        paid = message.get("b")
        if paid is not None and not isinstance(paid, int):
            raise TypeError("bad budget")
        txid = bytes.fromhex(message["t"])
        session_id = bytes.fromhex(message["s"])
        decided = self._joins_decided.get((peer_id, txid))
        if decided is not None and now - decided < JOIN_MEMORY:
            # Forwarded again: the introductions made are being pushed.
            self.stats["introductions-repeated"] += 1
            return
        _remember(self._joins_decided, (peer_id, txid), now)
        self.registry.remember_remote(joiner, origin, now)
        try:
            session, targets = self.registry.join(joiner, session_id, now)
        except RegistryError as e:
            error = wire.Error(txid, int(e.code), e.reason)
            self._deliver(joiner, origin, error, paid, None, "")
            return
        flags = message.get("f", 0)
        if not isinstance(flags, int):
            raise TypeError("bad flags")
        for target in targets:
            hide_target = session.relay_only and target.peer_id == session.host
            self._introduce(joiner, target, txid, session.session_id, paid or 0, paid is None, flags, hide_target)


def _remember(table: OrderedDict, key, now: float) -> None:
    """
    Keep C{key -> now} in a capped table of recent joins (oldest out).
    """
    table.pop(key, None)
    while len(table) >= MAX_JOIN_MEMORY or (table and next(iter(table.values())) < now - JOIN_MEMORY):
        table.popitem(last=False)
    table[key] = now
