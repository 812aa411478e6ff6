"""
The endpoint's NAT check at start: run beside the registration (or taken
from the endpoint's L{NatCache}), its facts sent to the introducer as soon
as the mapping is known and again once the filtering is, so that peers
pick the birthday search or the relay from facts.  A mixin of
L{p2pnet.endpoint.PeerEndpoint}, which holds the state.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.python.failure import Failure

from p2pnet import wire
from p2pnet._peertypes import StatusEvent
from p2pnet.natcache import nat_facts


class NatChecking:
    """
    The NAT check (see the module docstring).
    """

    #: After the registration, wait at most this long for the mapping
    #: facts of a check whose server has answered (normally they come
    #: with the registration: the tests take as many round trips).
    MAPPING_WAIT = 1.0

    def _start_nat_check(self) -> None:
        self._nat = self._nat_found = None
        self.nat_report = None
        self._nat_checking = None
        self._nat_answered = False
        self._nat_mapped = not self.config.nat_check
        self._nat_waiters: list[Deferred] = []
        self._nat_started = False
        if not self.config.nat_check:
            return
        servers = tuple(self.config.stun_servers) or (self.introducer,)
        local = self.local_addresses[0].host if self.local_addresses else ""
        key = (local, servers)
        cached = self.nat_cache.get(key, self.clock.seconds())
        if cached is not None:
            self._nat_checked(cached, "cached")
            return
        from p2pnet.natcheck import check_nat

        d = self._nat_checking = check_nat(
            self.reactor,
            list(servers),
            interface=self._interface or None,
            on_mapping=self._nat_mapping,
            on_answer=lambda: setattr(self, "_nat_answered", True),
        )

        def checked(report) -> None:
            self._nat_checking = None
            self.nat_cache.put(key, report, self.clock.seconds(), self.config.nat_check_lifetime)
            self._nat_checked(report, "checked")

        def failed(reason: Failure) -> None:
            self._nat_checking = None
            if reason.check(CancelledError):
                return
            self.log.info("NAT check failed, going on without: {error}", error=str(reason.value))
            self.emit(StatusEvent("nat-checked", detail=f"check failed: {reason.value}"))
            self._nat_facts_known()

        d.addCallbacks(checked, failed)

    def _nat_mapping(self, mapping, port_dependent) -> None:
        self._nat_found = wire.pack_nat(*nat_facts(mapping, port_dependent=port_dependent))
        self._nat_update()
        self._nat_facts_known()
        self._send_nat_facts()

    def _nat_checked(self, report, how: str) -> None:
        self.nat_report = report
        self._nat_found = wire.pack_nat(*nat_facts(report.mapping, report.filtering, report.mapping_port_dependent))
        self._nat_update()
        self.log.info("NAT check ({how}): {verdict}", how=how, verdict=report.verdict)
        detail = report.verdict if how == "checked" else f"{report.verdict} ({how})"
        self.emit(StatusEvent("nat-checked", detail=detail))
        self._nat_facts_known()
        self._send_nat_facts()

    def _nat_update(self) -> None:
        """
        The facts we tell: unknown while the router maps a port for us (what
        the check saw of the NAT does not hold for the mapped port, which
        takes packets from anyone: plain punching to it works).
        """
        mapped = self.port_mapping is not None and self._nat_found is not None
        # "unknown" explicitly: an absent value would leave the old facts.
        self._nat = wire.pack_nat("unknown", "unknown") if mapped else self._nat_found

    def _send_nat_facts(self) -> None:
        # Until start() has fired, it sends them itself (and waits for
        # the answer).
        if self._nat_started:
            self._refresh_local()

    def _nat_facts_known(self) -> None:
        self._nat_mapped = True
        waiters, self._nat_waiters = self._nat_waiters, []
        for d in waiters:
            self.eventually(d.callback, None)

    def _when_nat_mapped(self) -> Deferred:
        """
        Fires once our mapping facts are known, at once if they are or if
        no STUN server has answered yet (a server that does not speak STUN
        costs no time), and after L{MAPPING_WAIT} at the latest; then
        sends the facts we have (and our local addresses) if the
        registration lacks them, and waits for the answer.  Facts found
        later are sent when found.
        """
        d = self._when_nat_waited()
        d.addCallback(lambda _: setattr(self, "_nat_started", True))
        d.addCallback(lambda _: self._refresh_local())
        return d

    def _when_nat_waited(self) -> Deferred:
        if self._nat_mapped or not self._nat_answered:
            return succeed(None)
        d = Deferred()
        self._nat_waiters.append(d)
        timer = self.clock.callLater(self.MAPPING_WAIT, self._nat_facts_known)
        d.addBoth(lambda result: (timer.cancel() if timer.active() else None, result)[1])
        return d

    def _stop_nat_check(self) -> None:
        checking, self._nat_checking = self._nat_checking, None
        if checking is not None:
            checking.cancel()
        self._nat_facts_known()
