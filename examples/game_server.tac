"""
A game server run by twistd: it hosts a session of examples/game.py's game
and sends every position a player sends back to every player (a real
server would run the game's world here).

    p2pnet introducer --port 3478 --interface 127.0.0.1
    P2PNET_INTRODUCER=127.0.0.1:3478 twistd -ny examples/game_server.tac
    python examples/game.py join --introducer 127.0.0.1:3478 --name ann --title "Twisted Server"

PeerService does the work a game server would otherwise write itself: it
registers (retrying with back-off while the introducer is away), hosts the
session and keeps it hosted (after an introducer restart too), and on
shutdown withdraws the session and closes the socket.

Settings (environment variables): P2PNET_INTRODUCER (default
127.0.0.1:3478), P2PNET_NAME (peer id, default game-server), P2PNET_TITLE
(session title, default "Twisted Server"), P2PNET_PORT (UDP port, default
any), P2PNET_MAX_PLAYERS (default 8).
"""

import os

from twisted.application import service
from twisted.internet import reactor

from p2pnet import PeerEndpoint, PeerFactory, PeerProtocol, PeerService, SessionSpec

#: The game of examples/game.py (its players find this session).
GAME_ID = "p2pnet-example-race"


class Player(PeerProtocol):
    """
    One connected player: what it sends goes to every player.
    """

    def __init__(self, players: set) -> None:
        self.players = players

    def connection_made(self, connection) -> None:
        super().connection_made(connection)
        self.players.add(self)

    def datagram_received(self, data: bytes) -> None:
        for player in list(self.players):
            player.connection.send(data)

    def connection_lost(self, reason) -> None:
        self.players.discard(self)


class Players(PeerFactory):
    def __init__(self) -> None:
        self.players: set = set()

    def build_protocol(self, peer_id: str) -> PeerProtocol:
        return Player(self.players)


endpoint = PeerEndpoint(
    reactor,
    os.environ.get("P2PNET_INTRODUCER", "127.0.0.1:3478"),
    os.environ.get("P2PNET_NAME", "game-server"),
    port=int(os.environ.get("P2PNET_PORT", "0")),
    factory=Players(),
)
session = SessionSpec(
    os.environ.get("P2PNET_TITLE", "Twisted Server"),
    GAME_ID,
    max_players=int(os.environ.get("P2PNET_MAX_PLAYERS", "8")),
    properties={"map": "harbour", "mode": "race"},
)

application = service.Application("p2pnet game server")
PeerService(endpoint, session).setServiceParent(application)
