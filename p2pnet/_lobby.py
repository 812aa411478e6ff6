"""
The lobby's pages: which hosted sessions one L{wire.SessionList} answer
holds.
"""

from __future__ import annotations

from p2pnet import wire
from p2pnet._registry import Registry, RegistryError
from p2pnet.wire import ErrorCode


def session_page(
    registry: Registry, game_id: str | None, offset: int, budget: int
) -> tuple[tuple[wire.SessionInfo, ...], int, int]:
    """
    The sessions (of C{game_id}, if given) from C{offset} on whose entries
    fit in C{budget} bytes, where the next page starts, and how many there
    are in all.

    @raise RegistryError: C{BAD_REQUEST} if not even the first one fits
        while sessions remain: an empty page would read as the end.
    """
    remaining, total = registry.session_slice(game_id, offset)
    position = min(offset, total)
    page = []
    for session in remaining:
        info = wire.SessionInfo(
            session.session_id,
            session.name,
            session.game_id,
            session.host,
            session.players,
            session.max_players,
            session.mesh,
            session.properties,
        )
        cost = 3 + len(info.encode_value())
        if cost > budget:
            break
        budget -= cost
        page.append(info)
        position += 1
    if not page and position < total:
        raise RegistryError(
            ErrorCode.BAD_REQUEST,
            f"the session at offset {position} does not fit this request's answer: pad it to 1200 bytes",
        )
    return tuple(page), position, total
