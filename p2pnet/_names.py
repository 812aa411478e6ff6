"""
What a peer id or session name may hold.
"""

from __future__ import annotations

import unicodedata


#: Peer ids and session names: at most this many bytes of UTF-8.
MAX_NAME_BYTES = 64

#: Bidirectional overrides and isolates: they reorder the rest of a log line.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def name_problem(name: str, what: str = "name", max_bytes: int = MAX_NAME_BYTES) -> str | None:
    """
    What is wrong with a peer id or session name (empty, longer than
    C{max_bytes} bytes of UTF-8, or holding a control character such as
    a newline, which would let it forge log lines), or None if nothing.
    """
    if not name:
        return f"{what} must not be empty"
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        return f"{what} is {size} bytes long; at most {max_bytes} bytes of UTF-8 are allowed"
    for c in name:
        if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in _BIDI_CONTROLS:
            return f"{what} must not contain control characters such as newlines ({c!r})"
    return None
