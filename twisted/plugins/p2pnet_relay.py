"""
twistd plugin: C{twistd -n p2pnet-relay --port 3479 --secret-file PATH}.
"""

from twisted.application.service import ServiceMaker

p2pnet_relay = ServiceMaker(
    "p2pnet relay",
    "p2pnet.relay_tap",
    "A p2pnet relay: forwards traffic for peers that cannot reach each other directly.",
    "p2pnet-relay",
)
