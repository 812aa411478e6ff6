"""
Introducer nodes sharing one Redis: a peer registered on one node can be
introduced to, and join sessions hosted through, any other.

The introducer's storage stays the in-memory registry for the peers each
node holds; L{ClusterNode} mirrors it into Redis and forwards messages to
the node holding the other side (see docs/operations.md, "A cluster of
introducers").  Without C{--redis} none of this is used.
"""

from __future__ import annotations

import os

from twisted.application.service import Service

from p2pnet.cluster._lobby import RedisLobby
from p2pnet.cluster._node import ClusterNode
from p2pnet.cluster._protocol import ClusterIntroducerProtocol
from p2pnet.cluster._registry import ClusterRegistry
from p2pnet.cluster._store import parse_url


def cluster_protocol(
    reactor, url: str, lifetime: float, registry_options: dict, node_id: str | None = None, random_bytes=os.urandom,
    **protocol_options,
) -> ClusterIntroducerProtocol:
    """
    An introducer protocol that is a node of the cluster on Redis C{url}
    (start its C{node} with L{NodeService}).
    """
    lobby = RedisLobby()
    registry = ClusterRegistry(lifetime, random_bytes, lobby=lobby, **registry_options)
    node = ClusterNode(reactor, url, registry, node_id)
    lobby.node = node
    return ClusterIntroducerProtocol(reactor, registry, node, random_bytes, **protocol_options)


class NodeService(Service):
    """
    Runs a protocol's L{ClusterNode} (connects to Redis, keeps it in sync).
    """

    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    def startService(self) -> None:
        super().startService()
        self.node.start()

    def stopService(self):
        super().stopService()
        return self.node.stop()


__all__ = ["ClusterIntroducerProtocol", "ClusterNode", "ClusterRegistry", "NodeService", "RedisLobby",
           "cluster_protocol", "parse_url"]
