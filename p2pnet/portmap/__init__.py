"""
Port mapping: ask the home router for an inbound UDP mapping with
NAT-PMP (RFC 6886), PCP (RFC 6887, MAP) or UPnP-IGD, so a peer behind a
hard (symmetric) NAT gets a reachable address to advertise.

L{PortMapper} probes the three at once, maps with the first that
answers, renews at half the lifetime and deletes the mapping on stop.
The codecs (C{_natpmp}, C{_pcp}, the SSDP/SOAP parts of C{_upnp}) are
pure; the rest is Twisted I/O with an injected reactor.
"""

from p2pnet.portmap._gateway import default_gateway, local_address_towards, parse_route_table
from p2pnet.portmap._mapper import Mapping, PortMapper, probe_router

__all__ = ["Mapping", "PortMapper", "default_gateway", "local_address_towards", "parse_route_table", "probe_router"]
