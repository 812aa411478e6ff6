"""
IPv6 in the kernel lab: the core router and the introducer get IPv6
(L{enable_ipv6}), a site's router routes an IPv6 LAN behind a stateful
ip6 firewall with no NAT (L{add_ipv6}), and its hosts get global IPv6
addresses (L{add_ipv6_host}), or IPv6 only.

Every address is in the documentation range C{2001:db8::/32}, inside the
lab's namespaces; the core router has no IPv6 default route, so nothing
routes out::

    introducer 2001:db8:ff::10 --- core ::1 (2001:db8:ff::/64)
    core 2001:db8:0:N::1 --- site N router 2001:db8:0:N::2 (link)
    site N LAN 2001:db8:N::/64, router 2001:db8:N::1, hosts ::10, ::11 ...

The firewall is what home routers do for IPv6: forwarded packets of
established or related flows pass, new ones only from the LAN; ICMPv6
errors pass (path MTU, time exceeded), and the router itself answers
neighbour discovery.
"""

from __future__ import annotations

from p2pnet.testing.netlab import Lab, Site

__all__ = ["INTRODUCER6", "add_ipv6", "add_ipv6_host", "enable_ipv6", "host_address6"]

#: The introducer's IPv6 address.
INTRODUCER6 = "2001:db8:ff::10"
_CORE6 = "2001:db8:ff::1"

_FIREWALL6 = """\
table ip6 p2lab6 {
    chain input {
        type filter hook input priority filter; policy drop;
        iifname "lo" accept
        ct state established,related accept
        iifname "br0" accept
        meta l4proto ipv6-icmp accept
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "br0" accept
        icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem } accept
    }
}
"""


def _address(lab: Lab, namespace: str, interface: str, address: str, link_local: str) -> None:
    """
    Give C{interface} its IPv6 address, and a link-local one in place of
    the kernel's: both without duplicate address detection, which would
    hold a new address back for a second or more (neighbour discovery
    then queues the first packets, and a packet the firewall should see
    at once arrives late).
    """
    lab._sysctl(namespace, f"net.ipv6.conf.{interface}.accept_dad=0")
    lab._ip(namespace, "-6", "addr", "flush", "dev", interface, "scope", "link")
    lab._ip(namespace, "-6", "addr", "add", f"{link_local}/64", "dev", interface, "nodad")
    lab._ip(namespace, "-6", "addr", "add", address, "dev", interface, "nodad")


def _lan(site: Site) -> str:
    return f"2001:db8:{site.index:x}::"


def host_address6(lab: Lab, host: str) -> str:
    """
    The IPv6 address L{add_ipv6_host} gives C{host}.
    """
    found = lab.host(host)
    last = found.address.rsplit(".", 1)[1]
    return f"{_lan(lab.site(found.site))}{last}"


def enable_ipv6(lab: Lab) -> None:
    """
    IPv6 on the core router and the introducer (L{INTRODUCER6}).
    """
    core = lab.core_namespace
    introducer = lab.host("introducer").namespace
    lab._sysctl(core, "net.ipv6.conf.all.forwarding=1")
    _address(lab, core, "intro0", f"{_CORE6}/64", "fe80::1")
    _address(lab, introducer, "eth0", f"{INTRODUCER6}/64", "fe80::10")
    lab._ip(introducer, "-6", "route", "add", "default", "via", _CORE6)


def add_ipv6(lab: Lab, name: str, *, firewall: bool = True) -> None:
    """
    Route an IPv6 LAN (C{2001:db8:N::/64}) behind site C{name}'s router,
    with a stateful firewall (C{firewall}) and no NAT.  Call
    L{enable_ipv6} first, and L{add_ipv6_host} for each host.
    """
    site = lab.site(name)
    index = site.index
    core = lab.core_namespace
    router = site.namespace
    link_core, link_router = f"2001:db8:0:{index:x}::1", f"2001:db8:0:{index:x}::2"
    lab._sysctl(router, "net.ipv6.conf.all.forwarding=1")
    _address(lab, core, f"s{index}", f"{link_core}/64", "fe80::1")
    _address(lab, router, "wan0", f"{link_router}/64", "fe80::2")
    lab._ip(router, "-6", "route", "add", "default", "via", link_core)
    _address(lab, router, "br0", f"{_lan(site)}1/64", "fe80::1")
    lab._ip(core, "-6", "route", "add", f"{_lan(site)}/64", "via", link_router)
    lab._sysctl(router, "net.bridge.bridge-nf-call-ip6tables=0", check=False)
    if firewall:
        lab.nft(router, _FIREWALL6)


def add_ipv6_host(lab: Lab, host: str, *, only: bool = False) -> str:
    """
    Give C{host} (on a site made IPv6 by L{add_ipv6}) its IPv6 address
    and route; with C{only}, take its IPv4 default route away, so that it
    reaches nothing beyond its LAN but over IPv6.

    @return: its IPv6 address.
    """
    found = lab.host(host)
    address = host_address6(lab, host)
    _address(lab, found.namespace, "eth0", f"{address}/64", f"fe80::{address.rsplit(':', 1)[1]}")
    lab._ip(found.namespace, "-6", "route", "add", "default", "via", f"{_lan(lab.site(found.site))}1")
    if only:
        lab._ip(found.namespace, "route", "del", "default")
    return address
