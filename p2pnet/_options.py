"""
Option converters and helpers shared by the twistd taps and the
C{p2pnet} command-line tools.
"""

from __future__ import annotations

import ipaddress
import sys

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
    Parse C{argv} into C{options}; on a usage error print the usage and the
    error (naming C{command}) to stderr and return False.
    """
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        print(f"{options}\n{command}: {e}", file=sys.stderr)
        return False
    return True
