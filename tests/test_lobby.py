"""
The lobby at scale: the ordered index, cursor paging, server-side filters
and hostile queries (p2pnet/_lobby.py, p2pnet/_ordered.py).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from p2pnet import wire
from p2pnet._lobby import LobbyError, LobbyPage, LobbyQuery, MemoryLobby
from p2pnet._ordered import OrderedIndex
from p2pnet._registry import Registry, Session
from p2pnet.wire import ErrorCode

from .helpers import seeded_bytes
from .test_introducer import A, B, C, IntroducerTestCase


def session(n: int, game: str = "g", name: str | None = None, players: int = 4, properties=()) -> Session:
    return Session(n.to_bytes(8, "big"), f"host{n}", name or f"s{n}", game, players, False, tuple(properties))


class OrderedIndexTests(SynchronousTestCase):
    @given(
        st.lists(
            st.tuples(st.sampled_from(["insert", "remove", "after"]), st.integers(0, 200)),
            max_size=300,
        )
    )
    def test_agrees_with_a_sorted_dict(self, operations):
        """
        Any mix of inserts (in any order, splitting chunks of 2), removals
        (emptying chunks) and seeks agrees with a plain dict sorted on
        every read.
        """
        index: OrderedIndex = OrderedIndex(chunk=2)
        model: dict[int, str] = {}
        for operation, key in operations:
            if operation == "insert":
                if key in model:
                    self.assertRaises(KeyError, index.insert, key, "again")
                else:
                    index.insert(key, f"v{key}")
                    model[key] = f"v{key}"
            elif operation == "remove":
                if key in model:
                    self.assertEqual(index.remove(key), model.pop(key))
                else:
                    self.assertRaises(KeyError, index.remove, key)
            else:
                self.assertEqual(list(index.after(key)), sorted((k, v) for k, v in model.items() if k > key))
            self.assertEqual(len(index), len(model))
        self.assertEqual(index.keys(), sorted(model))
        self.assertEqual(list(index.after(None)), sorted(model.items()))

    def test_tiny_chunks_refused(self):
        self.assertRaises(ValueError, OrderedIndex, 1)


class EntryTests(SynchronousTestCase):
    @given(
        st.text(min_size=1, max_size=60),
        st.text(max_size=60),
        st.text(min_size=1, max_size=64),
        st.integers(0, 1023),
        st.booleans(),
        st.lists(st.tuples(st.text(alphabet="abc", max_size=5), st.text(max_size=20)), max_size=4),
    )
    def test_entry_as_if_encoded_now(self, name, game, host, members, mesh, properties):
        """
        A page's entry, made once when the session is listed with only the
        player count filled in later, is the encoding of the session as it
        is at the time of the page.
        """
        lobby = MemoryLobby()
        listed = Session(b"s" * 8, host, name, game, 1024, mesh, tuple(properties))
        lobby.add(listed)
        listed.members.extend(f"m{n}" for n in range(members))
        [entry] = lobby.page(LobbyQuery(game), 1200, 0.0).sessions
        expected = wire.SessionInfo(b"s" * 8, name, game, host, 1 + members, 1024, mesh, tuple(properties))
        self.assertEqual(entry.encode_value(), expected.encode_value())
        self.assertEqual(entry.info, expected)


class MemoryLobbyTests(SynchronousTestCase):
    def page_all(self, lobby, query, budget=1100):
        names, cursor, pages = [], None, 0
        while True:
            page = lobby.page(LobbyQuery(query.game_id, cursor, query.properties, query.name_prefix,
                                         query.open_only, query.limit), budget, 0.0)
            names.extend(entry.info.name for entry in page.sessions)
            pages += 1
            cursor = page.cursor
            if cursor is None:
                return names, pages

    @given(
        st.integers(0, 40),
        st.lists(st.tuples(st.integers(0, 5), st.lists(st.integers(0, 200), max_size=5)), max_size=30),
        st.integers(1, 5),
    )
    def test_paging_while_the_lobby_changes(self, initial, changes, limit):
        """
        Paging through a lobby while sessions are added and removed between
        pages lists every session that existed throughout exactly once,
        in creation order, and nothing twice.
        """
        lobby = MemoryLobby(chunk=3)
        live: dict[int, Session] = {}
        made = 0
        for _ in range(initial):
            live[made] = session(made)
            lobby.add(live[made])
            made += 1
        throughout = set(live)
        seen: list[int] = []
        cursor = None
        steps = iter(changes)
        for _ in range(1000):
            page = lobby.page(LobbyQuery("g", cursor, limit=limit), 1100, 0.0)
            seen.extend(int.from_bytes(entry.info.session_id, "big") for entry in page.sessions)
            cursor = page.cursor
            if cursor is None:
                break
            adds, removals = next(steps, (0, []))
            for _ in range(adds):
                live[made] = session(made)
                lobby.add(live[made])
                made += 1
            for pick in removals:
                if live:
                    gone = sorted(live)[pick % len(live)]
                    lobby.remove(live.pop(gone))
                    throughout.discard(gone)
        self.assertIsNone(cursor)
        self.assertEqual(len(seen), len(set(seen)))
        self.assertEqual(seen, sorted(seen))
        self.assertLessEqual(throughout, set(seen))

    def test_bounded_work_per_page(self):
        """
        When no session matches, a page looks at 256 sessions and says
        where to go on: 1,000 sessions take four empty pages, the last
        without a cursor; the one match at the end is found.
        """
        lobby = MemoryLobby()
        for n in range(1000):
            lobby.add(session(n, name="needle" if n == 999 else f"hay{n}"))
        self.assertEqual(self.page_all(lobby, LobbyQuery("g", name_prefix="nothing")), ([], 4))
        self.assertEqual(self.page_all(lobby, LobbyQuery("g", name_prefix="needle")), (["needle"], 4))

    def test_total_before_filtering(self):
        lobby = MemoryLobby()
        for n in range(5):
            lobby.add(session(n))
        lobby.add(session(9, game="other"))
        page = lobby.page(LobbyQuery("g", name_prefix="s1"), 1100, 0.0)
        self.assertEqual(([e.info.name for e in page.sessions], page.cursor, page.total), (["s1"], None, 5))
        self.assertEqual(lobby.page(LobbyQuery(None), 1100, 0.0).total, 6)
        self.assertEqual(lobby.page(LobbyQuery("nobody"), 1100, 0.0), LobbyPage((), None, 0))

    def test_remove_twice_and_unknown(self):
        """
        Removing a session twice, or one never added, changes nothing;
        adding one twice lists it once.
        """
        lobby = MemoryLobby()
        one, two = session(1), session(2)
        lobby.add(one)
        lobby.add(one)
        lobby.remove(two)
        lobby.add(two)
        lobby.remove(one)
        lobby.remove(one)
        self.assertEqual(list(lobby.sessions("g")), [two])
        self.assertEqual(len(lobby), 1)

    def test_cursor_must_parse(self):
        """
        A cursor of the wrong length is refused with BAD_REQUEST; any
        well-formed one only moves the start (past the end: an empty last
        page).
        """
        lobby = MemoryLobby()
        lobby.add(session(1))
        for bad in (b"\x01", bytes(9), bytes(16)):
            error = self.assertRaises(LobbyError, lobby.page, LobbyQuery("g", bad), 1100, 0.0)
            self.assertEqual(error.code, ErrorCode.BAD_REQUEST)
        self.assertEqual(lobby.page(LobbyQuery("g", b"\xff" * 8), 1100, 0.0), LobbyPage((), None, 1))
        self.assertEqual(len(lobby.page(LobbyQuery("g", bytes(8)), 1100, 0.0).sessions), 1)


class IntroducerLobbyTests(IntroducerTestCase):
    """
    ListSessions with cursors and filters, through the introducer.
    """

    def host_named(self, peer, source, name, max_players=4, properties=(), game="game"):
        self.send(
            wire.HostSession(self.next_txid(), peer, self.cookies[peer], name, game, max_players, 0, properties),
            source,
        )
        [(answer, _)] = self.transport.clear()
        return answer.session_id

    def listing(self, **query):
        names, cursor = [], None
        for _ in range(100):
            self.send(wire.ListSessions(self.next_txid(), cursor=cursor, **query), C)
            [page] = [answer for answer, to in self.transport.clear() if to == C]
            names.extend(info.name for info in page.sessions)
            cursor = page.cursor
            if cursor is None:
                return names
        self.fail("the listing did not end")

    def test_removal_between_pages_skips_nothing(self):
        """
        A session withdrawn after the first page does not make the next
        page skip one (paging by position did: every later session moved
        up one place).
        """
        self.register("h", A)
        ids = [self.host_named("h", A, f"s{n}") for n in range(4)]
        self.send(wire.ListSessions(self.next_txid(), "game", limit=2), C)
        [(first, _)] = self.transport.clear()
        self.assertEqual([i.name for i in first.sessions], ["s0", "s1"])
        self.send(wire.Unhost(self.next_txid(), "h", self.cookies["h"], ids[0]), A)
        self.send(wire.ListSessions(self.next_txid(), "game", first.cursor, limit=2), C)
        [(second, _)] = self.transport.clear()
        self.assertEqual([i.name for i in second.sessions], ["s2", "s3"])
        self.assertEqual((second.cursor, second.total), (None, 3))

    def test_filters(self):
        """
        Property equals (all given), name prefix and a result cap are
        applied by the introducer.
        """
        self.register("h", A)
        self.register("k", B)
        self.host_named("h", A, "Oval FFA", properties=(("map", "oval"), ("mode", "ffa")))
        self.host_named("h", A, "Oval Teams", properties=(("map", "oval"), ("mode", "teams")))
        self.host_named("k", B, "Dunes", properties=(("map", "dunes"),))
        self.host_named("k", B, "Oval Chess", game="chess", properties=(("map", "oval"),))
        self.assertEqual(self.listing(game_id="game", properties=(("map", "oval"),)), ["Oval FFA", "Oval Teams"])
        self.assertEqual(self.listing(properties=(("map", "oval"), ("mode", "teams"))), ["Oval Teams"])
        self.assertEqual(self.listing(properties=(("map", "OVAL"),)), [])
        self.assertEqual(self.listing(name_prefix="Oval"), ["Oval FFA", "Oval Teams", "Oval Chess"])
        self.assertEqual(self.listing(game_id="game", name_prefix="Oval T"), ["Oval Teams"])
        self.send(wire.ListSessions(self.next_txid(), limit=3), C)
        [(page, _)] = self.transport.clear()
        self.assertEqual([i.name for i in page.sessions], ["Oval FFA", "Oval Teams", "Dunes"])
        self.assertIsNotNone(page.cursor)

    def test_open_slots_only(self):
        """
        With FLAG_OPEN, a session whose slots are all taken, by members or
        by unexpired join reservations, is left out; it is listed again
        once a reservation lapses.
        """
        self.register("h", A)
        self.host_named("h", A, "roomy", max_players=4)
        duel = self.host_named("h", A, "duel", max_players=2)
        self.register("j", B)
        self.send(wire.Introduce(self.next_txid(), "j", self.cookies["j"], session_id=duel), B)
        self.transport.clear()
        self.assertEqual(self.listing(flags=wire.FLAG_OPEN), ["roomy"])
        self.assertEqual(self.listing(), ["roomy", "duel"])
        self.clock.advance(10.5)
        self.assertEqual(self.listing(flags=wire.FLAG_OPEN), ["roomy", "duel"])

    def test_hostile_queries(self):
        """
        A cursor that is not ours, too many property filters or a limit of
        0 get a small BAD_REQUEST (no larger than the request, even
        unpadded); an over-long cursor is dropped as malformed; nothing
        is lost: the session is still listed.
        """
        self.register("h", A)
        self.host_named("h", A, "still here")
        for query, says in [
            (dict(cursor=b"abc"), "cursor"),
            (dict(properties=tuple((f"k{i}", "v") for i in range(5))), "property filters"),
            (dict(limit=0), "limit"),
        ]:
            for pad in (True, False):
                raw = self.send(wire.ListSessions(self.next_txid(), **query), C, pad=pad)
                answers = self.transport.clear()
                for answer, _ in answers:
                    self.assertIsInstance(answer, wire.Error)
                    self.assertEqual(answer.code, ErrorCode.BAD_REQUEST)
                    self.assertIn(says, answer.reason)
                    self.assertLessEqual(len(wire.encode(answer)), len(raw))
                if pad:
                    self.assertEqual(len(answers), 1)
        long_cursor = wire.encode(wire.padded(wire.ListSessions(self.next_txid(), cursor=b"c"))).replace(
            bytes((0x23, 0, 1)) + b"c", bytes((0x23, 0, 17)) + bytes(17)
        )
        malformed = self.protocol.stats["dropped-malformed"]
        self.protocol.datagramReceived(long_cursor, C)
        self.assertEqual(self.transport.clear(), [])
        self.assertEqual(self.protocol.stats["dropped-malformed"], malformed + 1)
        self.assertEqual(self.listing(), ["still here"])

    def test_unpadded_request_gets_a_small_page(self):
        """
        Without the secret a page is cut to the request's size: a 300-byte
        request gets a page of at most 300 bytes that goes on with a
        cursor.
        """
        self.register("h", A)
        for n in range(4):
            self.host_named("h", A, f"session {n} " + "x" * 60)
        raw = self.send(wire.ListSessions(self.next_txid(), padding=bytes(287)), C, pad=False)
        [(page, _)] = self.transport.clear()
        self.assertLessEqual(len(wire.encode(page)), len(raw))
        self.assertEqual(len(raw), 300)
        self.assertEqual([i.name[:9] for i in page.sessions], ["session 0", "session 1"])
        self.assertIsNotNone(page.cursor)


class SharedLobbyTests(IntroducerTestCase):
    """
    A lobby that answers later (as one on Redis does): the introducer
    sends the page when it comes, within the request's size.
    """

    def setUp(self):
        super().setUp()
        self.asked: list[tuple[LobbyQuery, int, Deferred]] = []
        outer = self

        class LaterLobby:
            def add(self, session):
                pass

            def remove(self, session):
                pass

            def page(self, query, budget, now):
                d: Deferred = Deferred()
                outer.asked.append((query, budget, d))
                return d

        self.protocol.registry = Registry(30.0, seeded_bytes(1), lobby=LaterLobby())

    def test_answer_when_the_page_comes(self):
        raw = self.send(
            wire.ListSessions(self.next_txid(), "game", b"12345678", (("map", "oval"),), "K", wire.FLAG_OPEN, 7), C
        )
        [(query, budget, d)] = self.asked
        self.assertEqual(query, LobbyQuery("game", b"12345678", (("map", "oval"),), "K", True, 7))
        self.assertEqual(self.transport.clear(), [])
        info = wire.SessionInfo(b"s" * 8, "Keith's", "game", "keith", 1, 4)
        d.callback(LobbyPage((info,), b"next", 12))
        [(page, to)] = self.transport.clear()
        self.assertEqual((page.sessions, page.cursor, page.total, to), ((info,), b"next", 12, C))
        self.assertEqual(wire.decode(raw).txid, page.txid)
        self.assertLessEqual(budget, 1200 - 10 - 7 - 19)

    def test_refusal_when_the_page_fails(self):
        self.send(wire.ListSessions(self.next_txid(), cursor=b"?"), C)
        [(_, _, d)] = self.asked
        d.errback(LobbyError(ErrorCode.BAD_REQUEST, "bad cursor"))
        [(error, to)] = self.transport.clear()
        self.assertEqual((error.code, error.reason, to), (ErrorCode.BAD_REQUEST, "bad cursor", C))
