"""
Tests for L{p2pnet.address}.
"""

from __future__ import annotations

import ipaddress

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pnet.address import Address


def _ipaddress_accepts(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


#: Strings close to IP literals: digits, dots, colons, hex, and the odd
#: character that a sloppy parser might let through.
_near_literals = st.text(alphabet="0123456789.:abcdefABCDEF%x \n\x00\u0661", max_size=45)
_ipv4_like = st.lists(st.integers(0, 300).map(str) | st.sampled_from(["00", "01", "007", "", "0x1"]),
                      min_size=3, max_size=5).map(".".join)


class AddressTests(SynchronousTestCase):
    @settings(max_examples=2000, derandomize=True)
    @given(_near_literals | _ipv4_like)
    @example("1.2.3.04")
    @example("01.2.3.4")
    @example("1.2.3.4\x00")
    @example("fe80::1%eth0")
    @example("::ffff:1.2.3.4")
    @example("\u0661.2.3.4")
    def test_same_hosts_as_ipaddress(self, text: str) -> None:
        """
        L{Address} accepts exactly the host literals C{ipaddress} accepts
        (its fast IPv4 check must not widen or narrow that set).
        """
        try:
            Address(text, 1)
        except ValueError:
            accepted = False
        else:
            accepted = True
        self.assertEqual(accepted, _ipaddress_accepts(text), repr(text))

    def test_refuses_non_strings(self) -> None:
        """
        A host must be a string: an integer (which C{ipaddress} would
        take as a packed address) or bytes are refused with a message that
        names the value.
        """
        for host in (3232235521, b"1.2.3.4", None):
            error = self.assertRaises(ValueError, Address, host, 1)
            self.assertIn(repr(host), str(error))
