"""
twistd plugin: C{twistd -n p2pnet-introducer --port 3478}.
"""

from twisted.application.service import ServiceMaker

p2pnet_introducer = ServiceMaker(
    "p2pnet introducer",
    "p2pnet.introducer_tap",
    "A p2pnet introducer: rendezvous for peers behind NATs.",
    "p2pnet-introducer",
)
