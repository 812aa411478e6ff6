"""
How registrations, sessions and forwarded messages are written in Redis:
compact JSON, read back with every field checked.

Pure: no I/O.  What Redis holds is trusted only as much as the cluster
(any client that can write there can make a node introduce or list what
it likes), but a record that does not parse, or breaks a cap, is read as
absent rather than raising.
"""

from __future__ import annotations

import json

from p2pnet._registry import MAX_LOCAL_ADDRESSES, MAX_PEER_ID, MAX_PROPERTIES, Registration, Session
from p2pnet.address import Address
from p2pnet.wire import MAX_STRING

#: The largest record read back from Redis (a registration or session
#: record is well under 2 KiB; a forwarded message under 4 KiB).
MAX_RECORD = 8192


class BadRecord(ValueError):
    """
    A record or message from Redis that does not parse or breaks a cap.
    """


def _address(value) -> Address:
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)):
        raise BadRecord("bad address")
    try:
        return Address(value[0], value[1])
    except (ValueError, TypeError) as e:
        raise BadRecord(f"bad address: {e}") from None


def _text(value, limit: int = MAX_STRING) -> str:
    if not isinstance(value, str) or len(value.encode("utf-8")) > limit:
        raise BadRecord("bad string")
    return value


def _hex(value, size: int | None = None) -> bytes:
    if not isinstance(value, str) or len(value) > 128:
        raise BadRecord("bad hex")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise BadRecord("bad hex") from None
    if size is not None and len(raw) != size:
        raise BadRecord("bad length")
    return raw


def load(raw) -> dict:
    """
    A JSON object from Redis (bytes or str).

    @raise BadRecord: if it is not one, or too large.
    """
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str) or len(raw) > MAX_RECORD:
        raise BadRecord("not a record")
    try:
        value = json.loads(raw)
    except ValueError:
        raise BadRecord("not JSON") from None
    if not isinstance(value, dict):
        raise BadRecord("not an object")
    return value


def dump(value: dict) -> str:
    return json.dumps(value, separators=(",", ":"))


def peer_record(registration: Registration) -> str:
    """
    What other nodes need to introduce a registration (never its cookie).
    """
    record = {
        "p": [registration.public.host, registration.public.port],
        "v": 1 if registration.verified else 0,
    }
    if registration.local:
        record["l"] = [[a.host, a.port] for a in registration.local]
    if registration.nat is not None:
        record["t"] = registration.nat
    if registration.rtt is not None:
        record["r"] = round(registration.rtt, 6)
    if registration.peer_key is not None:
        record["k"] = registration.peer_key.hex()
    return dump(record)


def read_peer(peer_id: str, raw, refreshed: float) -> Registration:
    """
    The L{Registration} a peer record describes: a stand-in for a peer
    registered on another node (no cookie: it cannot authenticate here).

    @raise BadRecord: for a record that does not parse.
    """
    record = load(raw)
    local = record.get("l", [])
    if not isinstance(local, list) or len(local) > MAX_LOCAL_ADDRESSES:
        raise BadRecord("bad local addresses")
    nat = record.get("t")
    rtt = record.get("r")
    if nat is not None and not (isinstance(nat, int) and 0 <= nat <= 255):
        raise BadRecord("bad nat")
    if rtt is not None and not (isinstance(rtt, (int, float)) and 0 <= rtt <= 10):
        raise BadRecord("bad rtt")
    key = record.get("k")
    return Registration(
        peer_id=_text(peer_id, MAX_PEER_ID),
        public=_address(record.get("p")),
        local=tuple(_address(a) for a in local),
        cookie=b"",
        refreshed=refreshed,
        verified=record.get("v") == 1,
        nat=nat,
        rtt=float(rtt) if rtt is not None else None,
        peer_key=_hex(key, 32) if key is not None else None,
    )


def session_record(session: Session, host_key: bytes | None) -> str:
    """
    What the lobby lists, and what a node needs to adopt a session whose
    host moved to it.
    """
    record = {
        "n": session.name,
        "g": session.game_id,
        "h": session.host,
        "m": session.max_players,
        "x": 1 if session.mesh else 0,
        "c": session.players,
        "q": len(session.pending),
        "p": [list(pair) for pair in session.properties],
    }
    if host_key is not None:
        record["k"] = host_key.hex()
    return dump(record)


def read_session(session_id: bytes, raw) -> tuple[Session, bytes | None]:
    """
    A L{Session} as listed (its players counted in C{members} as
    placeholders) and its host's key.

    @raise BadRecord: for a record that does not parse.
    """
    record = load(raw)
    properties = record.get("p", [])
    if not isinstance(properties, list) or len(properties) > MAX_PROPERTIES:
        raise BadRecord("bad properties")
    pairs = []
    for pair in properties:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise BadRecord("bad property")
        pairs.append((_text(pair[0]), _text(pair[1])))
    max_players = record.get("m")
    players = record.get("c")
    if not (isinstance(max_players, int) and 2 <= max_players <= 1024):
        raise BadRecord("bad max players")
    if not (isinstance(players, int) and 1 <= players <= max_players):
        raise BadRecord("bad players")
    pending = record.get("q", 0)
    if not (isinstance(pending, int) and 0 <= pending <= max_players):
        raise BadRecord("bad pending")
    key = record.get("k")
    session = Session(
        session_id,
        _text(record.get("h"), MAX_PEER_ID),
        _text(record.get("n")),
        _text(record.get("g")),
        max_players,
        record.get("x") == 1,
        tuple(pairs),
        members=[""] * (players - 1),
    )
    # Reservations are listed as counts: open-only filters see them (they
    # never lapse here; the record is rewritten at the next sync).
    session.pending = {f"pending-{i}": float("inf") for i in range(pending)}
    return session, (_hex(key, 32) if key is not None else None)
