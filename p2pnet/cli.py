"""
The C{p2pnet} command line.

Each subcommand lives in its own module and exposes C{main(argv) -> int};
this module only dispatches, so that importing one tool never drags in the
others (or the global reactor).
"""

from __future__ import annotations

import importlib
import sys

#: subcommand name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("p2pnet._demo", "run an introducer and peers behind simulated NATs, "
             "and show how they connect"),
    "introducer": ("p2pnet.introducer_tap", "run an introducer (same options as "
                   "'twistd -n p2pnet-introducer')"),
    "peer": ("p2pnet._peercli", "register with an introducer, host/join/connect, "
             "send and print datagrams"),
    "sessions": ("p2pnet._sessionscli", "list the sessions an introducer offers"),
    "natcheck": ("p2pnet.natcheck", "find out what kind of NAT you are behind"),
}


def usage() -> str:
    lines = ["usage: p2pnet COMMAND [OPTIONS]", "", "commands:"]
    for name, (_, text) in SUBCOMMANDS.items():
        lines.append(f"  {name:<12} {text}")
    lines.append("")
    lines.append("'p2pnet COMMAND --help' describes each command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """
    Run the subcommand named by C{argv[0]}; without one, print the usage
    to stderr and exit 2 (a usage error, as for an unknown command).
    """
    if argv is None:
        argv = sys.argv[1:]
    if not argv:
        print(f"p2pnet: which command?\n\n{usage()}", file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"p2pnet: unknown command {name!r} (one of: {', '.join(SUBCOMMANDS)}; see 'p2pnet --help')",
              file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return module.main(rest)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
