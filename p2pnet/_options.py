"""
Option converters and helpers shared by the twistd taps and the
C{p2pnet} command-line tools.
"""

from __future__ import annotations

import ipaddress
import sys

from twisted.application.service import MultiService
from twisted.internet.error import CannotListenError
from twisted.python import usage

from p2pnet.address import Address


def port(text: str) -> int:
    """
    A UDP port, 0-65535.
    """
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"port must be a number, not {text!r}") from None
    if not 0 <= value <= 65535:
        raise ValueError(f"port must be 0-65535, not {value}")
    return value


def positive(text: str) -> float:
    """
    A number of seconds (or a rate) greater than 0.
    """
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number of seconds, not {text!r}") from None
    if value <= 0:
        raise ValueError(f"must be greater than 0, not {text}")
    return value


def non_negative(text: str) -> float:
    """
    A number of seconds that may be 0.
    """
    value = float(text)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def address(text: str) -> Address:
    """
    C{HOST:PORT} with an IP literal host.
    """
    return Address.parse(text)


def ip(text: str) -> str:
    """
    An IPv4 or IPv6 address literal, normalised.
    """
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise ValueError(f"expected an IP address, not {text!r}") from None


def metrics_options() -> list[list]:
    """
    The C{--metrics-port} and C{--metrics-interface} option parameters.
    """
    return [
        ["metrics-port", None, None,
         "Serve Prometheus metrics at http://INTERFACE:PORT/metrics (TCP; 0 picks a free port).", port],
        ["metrics-interface", None, "127.0.0.1",
         "Address the metrics port binds (default: loopback only).", ip],
    ]


def read_secret(path: str, option: str) -> bytes:
    """
    Read a secret file, refusing missing, unreadable and empty ones.
    """
    try:
        with open(path, "rb") as f:
            secret = f.read().strip()
    except OSError as e:
        raise usage.UsageError(f"cannot read {option} {path}: {e.strerror}")
    if not secret:
        raise usage.UsageError(f"{option} {path} is empty")
    return secret


def parse(options: usage.Options, argv: list[str], command: str) -> bool:
    """
    Parse C{argv} into C{options}; on a usage error print one line naming
    C{command} and the mistake, and a hint where the options are described,
    to stderr (not the whole help), and return False.
    """
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        print(f"{command}: {e}\n(see '{command} --help')", file=sys.stderr)
        return False
    return True



class ListeningServices(MultiService):
    """
    A tap's MultiService whose start turns a port that cannot be bound (in
    use, or not ours to bind) into one line and exit status 1, instead of
    twistd's traceback.

    @param command: names the program in the message (C{p2pnet introducer}).
    """

    def __init__(self, command: str) -> None:
        super().__init__()
        self.command = command

    def startService(self) -> None:
        try:
            super().startService()
        except CannotListenError as e:
            self.running = 0
            raise SystemExit(f"{self.command}: {listen_error(e)}") from None


def listen_error(error: CannotListenError) -> str:
    """
    What a C{CannotListenError} means, in one line.
    """
    reason = getattr(error.socketError, "strerror", None) or str(error.socketError)
    where = f"{error.interface}:{error.port}" if error.interface else f"port {error.port}"
    return f"cannot listen on UDP {where}: {reason}"
