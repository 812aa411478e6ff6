"""
Fast failure on an active connection: while we send, the peer must answer.

The handshake machine's heartbeat (L{p2pnet._handshake}) suits an idle
path: a keepalive every C{keepalive_interval} (15 s) and the connection
lost after C{dead_after} (45 s) of silence, so an idle path costs at most
4 keepalives a minute.  That is far too slow to notice a dead peer while
the game is talking to it.  This module adds the other half, after
LiteNetLib's default (a peer that sends and hears nothing for 5 s is
disconnected):

  - the connection is I{owed} an answer from the first application
    packet it sends after it last heard from the peer (raw datagrams and
    ack-eliciting channel packets count; keepalives and acks do not);
  - while owed, every C{probe_interval} (1 s) of silence sends an echo
    request (a sealed C{PATH_CHALLENGE} on the current path, which every
    peer answers with a C{PATH_RESPONSE}; a plain keepalive with
    C{sequence} 1 on an insecure connection), so a peer that only
    receives still proves it is alive;
  - halfway through C{answer_timeout}, a direct path moves to the relay
    (the machine's C{path_silent}): at once when a relay route is at hand,
    else as soon as the introducer offers one (asked for then), so the
    relay gets the second half to carry the answers.  The peer takes the
    relay too once it asked for one itself: when it sends as well (a
    game), its own answer clock does that; a peer that only listens
    moves after its idle C{fallback_after}, too late, and the connection
    is lost;
  - after C{answer_timeout} (5 s) owed and silent, the connection is
    lost (L{p2pnet.errors.PeerLost}, "no answer ... while sending").

Silence counts from the peer's last packet when that came less than two
probe intervals before our send (we were talking and the peer stopped:
a game that sends once a second sees gaps just over one), else from the
send (an idle peer sends nothing for up to 15 s).  Either way the peer
has at least C{answer_timeout} less two probe intervals, and three echo
requests, to answer.  Anything
authentic from the peer ends the debt.

L{AnswerClock} is the pure bookkeeping (times in, verdicts out, no
clock); L{Liveness} is its owner on a connection: it holds the one timer
and turns verdicts into probes, a fallback and the loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from p2pnet.address import is_relayed

if TYPE_CHECKING:
    from p2pnet.connection import PeerConnection

#: Slack for comparing times computed two ways.
_EPSILON = 1e-9

PROBE = "probe"
FALL_BACK = "fall-back"
LOST = "lost"


class AnswerClock:
    """
    Whether the peer owes us an answer, since when, and what is due.

    @ivar owed_since: the start of the silence we count, or None when
        nothing is owed.
    """

    def __init__(self, answer_timeout: float, probe_interval: float) -> None:
        if not 0 < probe_interval < answer_timeout:
            raise ValueError("probe_interval must be positive and shorter than answer_timeout")
        self.answer_timeout = answer_timeout
        self.probe_interval = probe_interval
        self.owed_since: float | None = None
        self._probes = 0
        self._fell_back = False

    def sent(self, now: float, heard: float) -> bool:
        """
        We sent application data at C{now}; the peer was last heard at
        C{heard}.  True when this starts a debt (the owner arms its timer).
        """
        if self.owed_since is not None and heard <= self.owed_since:
            return False
        # Talking and the peer stopped: its silence began at its last
        # packet.  An idle peer was silent by right: count from now.
        self.owed_since = heard if now - heard < 2 * self.probe_interval else now
        self._probes = 0
        self._fell_back = False
        return True

    def next_deadline(self) -> float | None:
        """
        When L{due} has something to say, or None when nothing is owed.
        """
        if self.owed_since is None:
            return None
        start = self.owed_since
        times = [start + self.answer_timeout, start + (self._probes + 1) * self.probe_interval]
        if not self._fell_back:
            times.append(start + self.answer_timeout / 2)
        return min(times)

    def due(self, now: float, heard: float) -> list[str]:
        """
        What to do at C{now} (L{PROBE}, L{FALL_BACK}, L{LOST}), given the
        peer's last packet at C{heard}.
        """
        start = self.owed_since
        if start is None:
            return []
        if heard > start:
            self.owed_since = None
            return []
        silence = now - start
        if silence >= self.answer_timeout - _EPSILON:
            self.owed_since = None
            return [LOST]
        actions = []
        if not self._fell_back and silence >= self.answer_timeout / 2 - _EPSILON:
            self._fell_back = True
            actions.append(FALL_BACK)
        probes = int((silence + _EPSILON) // self.probe_interval)
        if probes > self._probes:
            self._probes = probes
            actions.append(PROBE)
        return actions


class Liveness:
    """
    A connection's L{AnswerClock}, its timer and its actions.
    """

    def __init__(self, connection: PeerConnection, answer_timeout: float, probe_interval: float) -> None:
        self._connection = connection
        self._clock = connection._clock
        self._core = connection._core
        self.answers = AnswerClock(answer_timeout, probe_interval)
        self._timer = None
        # A fallback to the relay restarts the machine's silence window
        # (core.last_heard); that is not the peer speaking.
        self._bumped: tuple[float, float] | None = None
        # Silent for half the timeout: move to the relay when we can.
        self._moving = False

    def _heard(self) -> float:
        heard = self._core.last_heard
        if self._bumped is not None and heard == self._bumped[1]:
            return self._bumped[0]
        return heard

    def sent(self, now: float) -> None:
        """
        The game's data went out at C{now}.
        """
        if self.answers.sent(now, self._heard()):
            self._moving = False
            self.stop()
            self._arm()

    def _arm(self) -> None:
        deadline = self.answers.next_deadline()
        if deadline is None:
            self._timer = None
            return
        self._timer = self._clock.callLater(max(0.0, deadline - self._clock.seconds()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        connection = self._connection
        if connection.ended:
            return
        now = self._clock.seconds()
        silence_start = self.answers.owed_since
        actions = self.answers.due(now, self._heard())
        if self.answers.owed_since is None:
            self._moving = False
        for action in actions:
            if action == LOST:
                connection._unanswered(
                    f"no answer from {connection.address} for {now - silence_start:g}s while sending"
                )
                return
            if action == FALL_BACK:
                self._moving = True
            elif action == PROBE and connection.address is not None:
                connection._send_echo_request(connection.address)
                self._core.last_sent = now
        if self._moving:
            self._fall_back()
        self._arm()

    def _fall_back(self) -> None:
        """
        Move a silent direct path to the relay: at once if we have a relay
        route, else ask for one (once per connection) and move when it is
        offered (at the next probe).
        """
        core = self._core
        if core.path is None or is_relayed(core.path):
            self._moving = False
            return
        before = core.last_heard
        if core.relay_route is None and core.relay_requested:
            return
        self._connection._machine.path_silent()
        if core.last_heard != before:
            self._bumped = (before, core.last_heard)
        if is_relayed(core.path):
            self._moving = False

    def stop(self) -> None:
        """
        The connection ended: cancel the timer.
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
