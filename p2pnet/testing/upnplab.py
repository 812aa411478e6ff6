"""
A kernel-lab router that runs the real miniupnpd (Debian's
C{miniupnpd-nftables}) and so offers NAT-PMP, PCP and UPnP-IGD port
mapping: L{add_upnp_site}.

miniupnpd 2.3.1 refuses to map when its WAN address is in a reserved
range (private, 100.64/10, 198.18/15, the documentation ranges), so such
a site's WAN is moved to C{11.0.<index>.2/24} (the core side
C{11.0.<index>.1}).  The core router still has no default route, so
nothing leaves the lab.

The site is a C{symmetric} NAT (C{masquerade fully-random}) whose filter
also accepts forwarded flows that miniupnpd's mappings DNAT to the LAN
(C{ct status dnat accept}, as a home router does for port forwards).
"""

from __future__ import annotations

import os
import shutil
import tempfile

from p2pnet.testing.netlab import Lab, LabProcess, Site

__all__ = ["MINIUPNPD", "add_upnp_site", "missing_miniupnpd", "wan_address"]

#: The daemon's path (Debian: miniupnpd-nftables or miniupnpd).
MINIUPNPD = "/usr/sbin/miniupnpd"


def missing_miniupnpd() -> str | None:
    """
    Why miniupnpd cannot run here, or None.
    """
    if not (os.path.exists(MINIUPNPD) or shutil.which("miniupnpd")):
        return "miniupnpd is not installed (apt-get install miniupnpd-nftables)"
    return None


def wan_address(site: Site) -> str:
    """
    The WAN (public) address of a site made by L{add_upnp_site}.
    """
    return f"11.0.{site.index}.2"


#: The chains miniupnpd fills (what Debian's nft_init.sh makes, with an
#: accepting forward chain: the lab's own filter decides).
_TABLES = """\
table inet p2lab_upnp {
    chain forward {
        type filter hook forward priority 0; policy accept;
        jump miniupnpd
    }
    chain miniupnpd {
    }
    chain prerouting {
        type nat hook prerouting priority -100; policy accept;
        jump prerouting_miniupnpd
    }
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        jump postrouting_miniupnpd
    }
    chain prerouting_miniupnpd {
    }
    chain postrouting_miniupnpd {
    }
}
"""


def _config(site: Site, *, natpmp: bool, upnp: bool, refuse: bool, directory: str) -> str:
    rules = "deny 0-65535 0.0.0.0/0 0-65535\n" if refuse else (
        f"allow 1024-65535 {site.lan_network} 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n"
    )
    return (
        "ext_ifname=wan0\n"
        "listening_ip=br0\n"
        "port=0\n"
        f"enable_natpmp={'yes' if natpmp else 'no'}\n"
        f"enable_upnp={'yes' if upnp else 'no'}\n"
        "secure_mode=yes\n"
        "system_uptime=no\n"
        "notify_interval=60\n"
        "clean_ruleset_interval=600\n"
        "min_lifetime=120\n"
        "max_lifetime=86400\n"
        f"lease_file={directory}/leases\n"
        "uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b\n"
        "upnp_table_name=p2lab_upnp\n"
        "upnp_nat_table_name=p2lab_upnp\n"
        + rules
    )


def add_upnp_site(
    lab: Lab,
    name: str,
    *,
    natpmp: bool = True,
    upnp: bool = True,
    refuse: bool = False,
) -> tuple[Site, LabProcess]:
    """
    Add a symmetric-NAT site whose router runs miniupnpd.

    @param natpmp: serve NAT-PMP and PCP (miniupnpd's C{enable_natpmp}
        switches both; port 5351).
    @param upnp: serve UPnP-IGD (SSDP on the LAN, HTTP/SOAP).
    @param refuse: permission rules that deny every mapping.
    @return: the site and the running daemon (stopped with the lab).
    """
    site = lab.add_site(name, "symmetric")
    index = site.index
    core = lab.core_namespace
    router = site.namespace
    lab._ip(core, "addr", "add", f"11.0.{index}.1/24", "dev", f"s{index}")
    lab._ip(router, "addr", "add", f"11.0.{index}.2/24", "dev", "wan0")
    lab._ip(router, "route", "replace", "default", "via", f"11.0.{index}.1")
    # Only 11.0.<index>.2 on wan0: masquerade and miniupnpd use it.
    lab._ip(router, "addr", "del", f"198.18.{index}.2/24", "dev", "wan0")
    lab.nft(router, "add rule ip p2lab forward ct status dnat accept\n" + _TABLES)
    directory = tempfile.mkdtemp(prefix="p2lab-upnp-")
    lab._upnp_directories = getattr(lab, "_upnp_directories", []) + [directory]
    path = os.path.join(directory, "miniupnpd.conf")
    with open(path, "w") as config:
        config.write(_config(site, natpmp=natpmp, upnp=upnp, refuse=refuse, directory=directory))
    host = lab.add_host(name, f"{name}gw", on_router=True)
    daemon = lab.spawn(
        host.name,
        [MINIUPNPD, "-d", "-f", path, "-P", os.path.join(directory, "pid"), "-4"],
    )
    # Peers start once the daemon has set up its tables and sockets: its
    # start-up rewrites nftables state on the router, and a mapping made
    # through it meanwhile can be lost (a peer's first registration
    # answer then never arrives).  Its last start-up line says it listens.
    # (miniupnpd logs to its standard error.)
    ready = "HTTP listening" if upnp else "Listening for NAT-PMP/PCP"
    daemon.wait_for_line(lambda line: ready in line, 10.0, stderr=True)
    return site, daemon
