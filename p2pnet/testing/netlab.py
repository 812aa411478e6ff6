"""
A kernel NAT lab: real Linux netfilter NATs and firewalls in network
namespaces, for testing traversal with real processes.

Needs Linux, root, C{ip} (iproute2) and C{nft} (nftables); C{conntrack}
(conntrack-tools) for L{Lab.flush}.  Everything the lab builds lives in
network namespaces whose names start with L{PREFIX}; no interface, route or
ruleset of the namespace the lab is started from is touched, no veth end is
ever created outside a lab namespace, and the core router has no default
route, so nothing can route out.

Topology::

                       introducer (192.0.2.10)
                              | 192.0.2.0/24
    site 1 router ---- core router ---- site 2 router
    198.18.1.2/24   .1  (no default)  .1  198.18.2.2/24
        | LAN bridge                        | LAN bridge
    10.1.0.10, .11...                   198.19.2.10, .11...
    (NAT kinds)                         (firewall / none kinds)

Typical use::

    with Lab() as lab:
        lab.add_site("left", "cone")
        lab.add_site("right", "symmetric")
        lab.add_host("left", "alice")
        lab.add_host("right", "bob")
        intro = lab.spawn("introducer", lab.p2pnet_argv(
            "introducer", "--port", "9000", "--interface", "0.0.0.0"))
        ...

Router kinds (see L{KINDS} and C{docs/netlab.md}):

  - C{cone}: C{masquerade} (port-preserving; filtering follows conntrack,
    so it behaves as a port-restricted cone).
  - C{symmetric}: C{masquerade fully-random} (a new random port for every
    new flow, so every destination sees a different port).
  - C{firewall}: no NAT, hosts have public addresses; established/related
    inbound is allowed, new inbound is dropped.
  - C{none}: a plain router, hosts have public addresses.
  - C{race-prone}: C{masquerade}, but the router accepts unsolicited
    inbound UDP to itself.  A peer's first packet arriving before the local
    host has sent anything becomes a confirmed conntrack entry for the
    router itself; the local host's own outbound flow then collides with it
    and is remapped to another port, so plain simultaneous open fails.  A
    short-TTL packet sent first (warm-up) creates the right entry and
    avoids the race.
"""

from __future__ import annotations

import atexit
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import attrs

__all__ = [
    "PREFIX",
    "KINDS",
    "LabError",
    "Lab",
    "Site",
    "Host",
    "LabProcess",
    "UDPAgent",
    "missing_prerequisites",
    "cleanup_stale",
    "main",
]

#: Every namespace the lab creates has a name starting with this.
PREFIX = "p2lab-"

#: The router kinds L{Lab.add_site} accepts.
KINDS = ("cone", "symmetric", "firewall", "none", "race-prone")

_NAT_KINDS = frozenset({"cone", "symmetric", "race-prone"})

#: The introducer segment.
INTRODUCER_NETWORK = ipaddress.ip_network("192.0.2.0/24")
INTRODUCER_ADDRESS = "192.0.2.10"
_CORE_INTRODUCER_ADDRESS = "192.0.2.1"

_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
_COMMAND_TIMEOUT = 20.0
_counter = itertools.count(1)
_live_labs: "weakref.WeakSet[Lab]" = weakref.WeakSet()
_handlers_installed = False


class LabError(Exception):
    """
    The lab could not be built or a lab command failed.
    """


def missing_prerequisites(conntrack: bool = False) -> str | None:
    """
    Say why the lab cannot run here, or return C{None} if it can.

    @param conntrack: also require the C{conntrack} tool (for L{Lab.flush}).
    @return: a human-readable reason, or C{None}.
    """
    if not sys.platform.startswith("linux"):
        return "the kernel NAT lab needs Linux network namespaces"
    if os.geteuid() != 0:
        return "the kernel NAT lab needs root (network namespaces, nftables)"
    tools = ["ip", "nft"] + (["conntrack"] if conntrack else [])
    missing = [tool for tool in tools if _which(tool) is None]
    if missing:
        return ("the kernel NAT lab needs {} (Debian: apt-get install "
                "nftables iproute2 conntrack)".format(", ".join(missing)))
    return None


def _which(tool: str) -> str | None:
    found = shutil.which(tool)
    if found is None:
        for directory in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
            candidate = os.path.join(directory, tool)
            if os.access(candidate, os.X_OK):
                return candidate
    return found


def _command(argv: Sequence[str], *, stdin: str | None = None,
             check: bool = True,
             timeout: float = _COMMAND_TIMEOUT) -> subprocess.CompletedProcess:
    tool = _which(argv[0]) or argv[0]
    try:
        result = subprocess.run(
            [tool, *argv[1:]], input=stdin, capture_output=True, text=True,
            timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise LabError(f"{' '.join(argv)}: timed out after {timeout}s") from e
    if check and result.returncode != 0:
        raise LabError("{} failed ({}): {}".format(
            " ".join(argv), result.returncode, result.stderr.strip()))
    return result


def _namespaces() -> list[str]:
    result = _command(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in result.stdout.splitlines()
            if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_namespace_processes(namespace: str) -> None:
    result = _command(["ip", "netns", "pids", namespace], check=False)
    for word in result.stdout.split():
        try:
            os.kill(int(word), signal.SIGKILL)
        except (ValueError, ProcessLookupError, PermissionError):
            pass


def _delete_namespace(namespace: str) -> None:
    _kill_namespace_processes(namespace)
    _command(["ip", "netns", "delete", namespace], check=False)


def cleanup_stale(everything: bool = False) -> list[str]:
    """
    Remove lab namespaces left behind by runs that crashed.

    A lab namespace is named C{p2lab-PID-N-ROLE}; it is stale when process
    PID no longer exists.  Processes still running inside a stale namespace
    are killed first.

    @param everything: remove every namespace starting with L{PREFIX}, even
        those of labs that are still running.
    @return: the names of the namespaces removed.
    """
    removed = []
    for namespace in _namespaces():
        if not namespace.startswith(PREFIX):
            continue
        if not everything:
            owner = namespace[len(PREFIX):].split("-", 1)[0]
            if owner.isdigit() and _pid_alive(int(owner)):
                continue
        _delete_namespace(namespace)
        removed.append(namespace)
    return removed


def _close_live_labs() -> None:
    for lab in list(_live_labs):
        lab.close()


def _on_sigterm(signum: int, frame: Any) -> None:
    _close_live_labs()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_cleanup_handlers() -> None:
    """
    Close every open lab at interpreter exit and on SIGTERM/SIGHUP.

    SIGINT raises C{KeyboardInterrupt}, which unwinds C{with Lab()} blocks;
    a signal handler someone else installed is left alone.
    """
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_close_live_labs)
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) == signal.SIG_DFL:
            signal.signal(signum, _on_sigterm)


@attrs.frozen
class Host:
    """
    A host in the lab.

    @ivar name: the lab-wide host name (C{"introducer"} for the introducer).
    @ivar namespace: the network namespace it runs in.
    @ivar address: its own IPv4 address (for a host on a router, the
        router's public address).
    @ivar site: the name of its site, or C{None} for the introducer.
    @ivar on_router: whether it runs on the site's router itself.
    """

    name: str
    namespace: str
    address: str
    site: str | None
    on_router: bool = False


@attrs.define
class Site:
    """
    A site: a router of one L{KINDS} kind with a LAN behind it.

    @ivar public_address: the router's address on the core.
    @ivar lan_network: the LAN's network (10.N.0.0/24 behind a NAT,
        198.19.N.0/24 for public kinds).
    @ivar router_lan_address: the router's address on the LAN.
    """

    name: str
    kind: str
    index: int
    namespace: str
    public_address: str
    lan_network: ipaddress.IPv4Network
    router_lan_address: str
    hosts: list[Host] = attrs.Factory(list)
    loss: int = 0


def _ruleset(kind: str) -> str:
    """
    The nftables ruleset for a router of C{kind}: C{wan0} faces the core,
    C{br0} is the LAN bridge.
    """
    if kind == "none":
        return "table ip p2lab {\n}\n"
    if kind == "firewall":
        return _FILTER.format(extra_input="")
    masquerade = "masquerade fully-random" if kind == "symmetric" else "masquerade"
    extra_input = ""
    if kind == "race-prone":
        extra_input = ('        # race-prone: unsolicited inbound UDP to the '
                       'router itself is accepted (and conntrack confirms it)\n'
                       '        iifname "wan0" meta l4proto udp accept\n')
    return _FILTER.format(extra_input=extra_input) + _NAT.format(
        masquerade=masquerade)


_FILTER = """\
table ip p2lab {{
    chain input {{
        type filter hook input priority filter; policy drop;
        iifname "lo" accept
        ct state established,related accept
        iifname "br0" accept
        icmp type echo-request accept
{extra_input}    }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "br0" accept
    }}
}}
"""

_NAT = """\
table ip p2lab_nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan0" {masquerade}
    }}
}}
"""


def _loss_ruleset(links: dict[str, int]) -> str:
    lines = ["table ip p2lab_loss", "delete table ip p2lab_loss",
             "table ip p2lab_loss {", "    chain forward {",
             "        type filter hook forward priority mangle; policy accept;"]
    for interface, percent in sorted(links.items()):
        if percent > 0:
            lines.append(f'        iifname "{interface}" numgen random mod 100 '
                         f'< {percent} drop')
            lines.append(f'        oifname "{interface}" numgen random mod 100 '
                         f'< {percent} drop')
    lines += ["    }", "}", ""]
    return "\n".join(lines)


class Lab:
    """
    A set of network namespaces: a core router, the introducer host on
    192.0.2.0/24, and sites added with L{add_site}.

    Use it as a context manager, or call L{close}; labs still open at
    interpreter exit or on SIGTERM are closed too, and L{cleanup_stale}
    removes what a killed run left behind.
    """

    def __init__(self) -> None:
        reason = missing_prerequisites()
        if reason is not None:
            raise LabError(reason)
        self._tag = f"{PREFIX}{os.getpid()}-{next(_counter)}"
        self._namespaces: list[str] = []
        self._sites: dict[str, Site] = {}
        self._hosts: dict[str, Host] = {}
        self._processes: list[subprocess.Popen] = []
        self._loss: dict[str, int] = {}
        self._closed = False
        _install_cleanup_handlers()
        _live_labs.add(self)
        try:
            self._build_core()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- building ---------------------------------------------------------

    @property
    def core_namespace(self) -> str:
        return f"{self._tag}-core"

    @property
    def namespaces(self) -> list[str]:
        """
        The names of the namespaces this lab created and still holds.
        """
        return list(self._namespaces)

    def _ip(self, namespace: str, *args: str) -> None:
        _command(["ip", "-n", namespace, *args])

    def _add_namespace(self, role: str) -> str:
        namespace = f"{self._tag}-{role}"
        _command(["ip", "netns", "add", namespace])
        self._namespaces.append(namespace)
        self._ip(namespace, "link", "set", "lo", "up")
        return namespace

    def _sysctl(self, namespace: str, setting: str, check: bool = True) -> None:
        _command(["ip", "netns", "exec", namespace, "sysctl", "-qw", setting],
                 check=check)

    def _link(self, first: str, first_name: str, second: str,
              second_name: str) -> None:
        """
        Create a veth pair with one end in each of two lab namespaces: it
        is created inside C{first} so that no end ever exists outside the
        lab.
        """
        self._ip(first, "link", "add", first_name, "type", "veth", "peer",
                 "name", second_name, "netns", second)

    def _build_core(self) -> None:
        core = self._add_namespace("core")
        self._sysctl(core, "net.ipv4.ip_forward=1")
        introducer = self._add_namespace("intro")
        self._link(core, "intro0", introducer, "eth0")
        self._ip(core, "addr", "add", f"{_CORE_INTRODUCER_ADDRESS}/24",
                 "dev", "intro0")
        self._ip(core, "link", "set", "intro0", "up")
        self._ip(introducer, "addr", "add", f"{INTRODUCER_ADDRESS}/24",
                 "dev", "eth0")
        self._ip(introducer, "link", "set", "eth0", "up")
        self._ip(introducer, "route", "add", "default", "via",
                 _CORE_INTRODUCER_ADDRESS)
        self._hosts["introducer"] = Host(
            name="introducer", namespace=introducer,
            address=INTRODUCER_ADDRESS, site=None)
        self._hosts["core"] = Host(name="core", namespace=core,
                                   address=_CORE_INTRODUCER_ADDRESS, site=None)

    def add_site(self, name: str, kind: str = "cone", *,
                 hairpin: bool = False, loss: int = 0) -> Site:
        """
        Add a site: a router of C{kind} joined to the core, with an empty
        LAN (a bridge) behind it.

        @param name: lower-case letters and digits, at most 12.
        @param kind: one of L{KINDS}.
        @param hairpin: must be C{False} for the NAT kinds: Linux
            masquerade cannot loop a LAN host's packet to the router's
            public address back to another LAN host (the mapping is only
            known to conntrack).  Hosts of C{firewall} and C{none} sites
            have public addresses, so they always reach each other.
        @param loss: percent of packets dropped each way on the site's link
            to the core (see L{set_loss}).
        """
        if not _NAME.match(name) or name in self._sites or name == "core":
            raise ValueError(f"bad or duplicate site name {name!r}")
        if kind not in KINDS:
            raise ValueError(f"unknown router kind {kind!r}; one of {KINDS}")
        if hairpin and kind in _NAT_KINDS:
            raise ValueError("Linux masquerade cannot hairpin; a NAT site "
                             "always has hairpin off")
        index = len(self._sites) + 1
        if index > 250:
            raise ValueError("at most 250 sites")
        if kind in _NAT_KINDS:
            lan = ipaddress.ip_network(f"10.{index}.0.0/24")
        else:
            lan = ipaddress.ip_network(f"198.19.{index}.0/24")
        wan_core = f"198.18.{index}.1"
        wan_router = f"198.18.{index}.2"
        router_lan = str(lan.network_address + 1)
        core = self.core_namespace
        router = self._add_namespace(name)
        site = Site(name=name, kind=kind, index=index, namespace=router,
                    public_address=wan_router, lan_network=lan,
                    router_lan_address=router_lan)
        self._sites[name] = site
        self._sysctl(router, "net.ipv4.ip_forward=1")
        core_side = f"s{index}"
        self._link(core, core_side, router, "wan0")
        self._ip(core, "addr", "add", f"{wan_core}/24", "dev", core_side)
        self._ip(core, "link", "set", core_side, "up")
        if kind not in _NAT_KINDS:
            self._ip(core, "route", "add", str(lan), "via", wan_router)
        self._ip(router, "addr", "add", f"{wan_router}/24", "dev", "wan0")
        self._ip(router, "link", "set", "wan0", "up")
        self._ip(router, "route", "add", "default", "via", wan_core)
        self._ip(router, "link", "add", "br0", "type", "bridge")
        self._ip(router, "addr", "add", f"{router_lan}/24", "dev", "br0")
        self._ip(router, "link", "set", "br0", "up")
        # A LAN is a switch: traffic between LAN hosts must not pass
        # through the router's IP hooks (br_netfilter may be loaded).
        self._sysctl(router, "net.bridge.bridge-nf-call-iptables=0",
                     check=False)
        self.nft(router, _ruleset(kind))
        if loss:
            self.set_loss(name, loss)
        return site

    def add_host(self, site: str, name: str, *, on_router: bool = False) -> Host:
        """
        Add a host to C{site}'s LAN, or (C{on_router}) a host name for
        processes running on the site's router itself (the "IP MASQ
        shortcut": a client on the NAT gateway).

        @param name: a lab-wide unique name, lower-case letters and digits.
        """
        if not _NAME.match(name) or name in self._hosts:
            raise ValueError(f"bad or duplicate host name {name!r}")
        owner = self._site(site)
        if on_router:
            host = Host(name=name, namespace=owner.namespace,
                        address=owner.public_address, site=site,
                        on_router=True)
        else:
            number = sum(1 for h in owner.hosts if not h.on_router)
            address = str(owner.lan_network.network_address + 10 + number)
            namespace = self._add_namespace(f"{site}-{name}")
            port = f"lan{number}"
            self._link(owner.namespace, port, namespace, "eth0")
            self._ip(owner.namespace, "link", "set", port, "master", "br0")
            self._ip(owner.namespace, "link", "set", port, "up")
            self._ip(namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            self._ip(namespace, "link", "set", "eth0", "up")
            self._ip(namespace, "route", "add", "default", "via",
                     owner.router_lan_address)
            host = Host(name=name, namespace=namespace, address=address,
                        site=site)
        owner.hosts.append(host)
        self._hosts[name] = host
        return host

    def set_loss(self, link: str, percent: int) -> None:
        """
        Drop C{percent}% of the packets crossing a link, in each direction
        independently, with an nftables C{numgen random} rule in the core.

        @param link: a site name (its link to the core) or C{"introducer"}.
        """
        if not 0 <= percent <= 100:
            raise ValueError("loss is a percentage")
        if link == "introducer":
            interface = "intro0"
        else:
            owner = self._site(link)
            owner.loss = percent
            interface = f"s{owner.index}"
        self._loss[interface] = percent
        self.nft(self.core_namespace, _loss_ruleset(self._loss))

    def nft(self, namespace: str, ruleset: str) -> None:
        """
        Load an nftables ruleset (C{nft -f -}) inside a lab namespace.
        """
        self._check_namespace(namespace)
        _command(["ip", "netns", "exec", namespace, "nft", "-f", "-"],
                 stdin=ruleset)

    def ruleset(self, site: str) -> str:
        """
        The nftables ruleset currently loaded in C{site}'s router.
        """
        return _command(["ip", "netns", "exec", self._site(site).namespace,
                         "nft", "list", "ruleset"]).stdout

    # -- looking up -------------------------------------------------------

    def _site(self, name: str) -> Site:
        try:
            return self._sites[name]
        except KeyError:
            raise ValueError(f"no site {name!r}") from None

    def _check_namespace(self, namespace: str) -> None:
        if namespace not in self._namespaces:
            raise ValueError(f"{namespace!r} is not a namespace of this lab")

    def site(self, name: str) -> Site:
        return self._site(name)

    def host(self, name: str) -> Host:
        try:
            return self._hosts[name]
        except KeyError:
            raise ValueError(f"no host {name!r}") from None

    def address_of(self, host: str) -> str:
        """
        The IPv4 address of C{host} (C{"introducer"} included); for a host
        on a router, the router's public address.
        """
        return self.host(host).address

    def public_address_of(self, site: str) -> str:
        """
        The address of C{site}'s router on the core (the address a NAT
        maps its hosts to).
        """
        return self._site(site).public_address

    # -- running ----------------------------------------------------------

    def command_argv(self, host: str, argv: Sequence[str]) -> list[str]:
        """
        The argument vector that runs C{argv} in C{host}'s namespace.
        """
        return [_which("ip") or "ip", "netns", "exec",
                self.host(host).namespace, *argv]

    @staticmethod
    def p2pnet_argv(*args: str) -> list[str]:
        """
        C{[sys.executable, "-m", "p2pnet", *args]}.
        """
        return [sys.executable, "-m", "p2pnet", *args]

    @staticmethod
    def _environment(env: dict[str, str] | None) -> dict[str, str]:
        result = dict(os.environ if env is None else env)
        # Make this copy of p2pnet importable even when it is not
        # installed (running from a checkout).
        import p2pnet
        root = os.path.dirname(os.path.dirname(os.path.abspath(p2pnet.__file__)))
        paths = [root] + [p for p in result.get("PYTHONPATH", "").split(
            os.pathsep) if p]
        result["PYTHONPATH"] = os.pathsep.join(paths)
        result.setdefault("PYTHONUNBUFFERED", "1")
        return result

    def run(self, host: str, argv: Sequence[str], *,
            env: dict[str, str] | None = None,
            **popen_arguments: Any) -> subprocess.Popen:
        """
        Start C{argv} in C{host}'s namespace (C{ip netns exec}).  The lab
        kills it when it closes.

        @param popen_arguments: passed to L{subprocess.Popen}.
        """
        if self._closed:
            raise LabError("the lab is closed")
        process = subprocess.Popen(self.command_argv(host, argv),
                                   env=self._environment(env),
                                   **popen_arguments)
        self._processes.append(process)
        return process

    def execute(self, host: str, argv: Sequence[str], *,
                timeout: float = _COMMAND_TIMEOUT,
                check: bool = False) -> subprocess.CompletedProcess:
        """
        Run C{argv} in C{host}'s namespace to completion and return its
        result (text output captured).
        """
        return _command(self.command_argv(host, argv), timeout=timeout,
                        check=check)

    def spawn(self, host: str, argv: Sequence[str], *,
              env: dict[str, str] | None = None) -> "LabProcess":
        """
        Start C{argv} in C{host}'s namespace with its output read line by
        line into a L{LabProcess}.
        """
        process = self.run(host, argv, env=env, stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, bufsize=1)
        return LabProcess(host, process)

    def udp_agent(self, host: str, port: int = 0, *,
                  reflect: bool = False) -> "UDPAgent":
        """
        Start a plain UDP socket program on C{host} (see L{UDPAgent}).

        @param reflect: answer every datagram with C{"seen IP:PORT"}, the
            source address it came from (a minimal introducer).
        """
        argv = [sys.executable, "-c", _AGENT_SOURCE, str(port)]
        if reflect:
            argv.append("reflect")
        agent = UDPAgent(host, self.run(
            host, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, bufsize=1))
        return agent

    def flush(self, site: str) -> None:
        """
        Forget every connection (and so every NAT mapping) of C{site}'s
        router: C{conntrack -F}.
        """
        _command(["ip", "netns", "exec", self._site(site).namespace,
                  "conntrack", "-F"])

    def conntrack(self, site: str) -> str:
        """
        C{conntrack -L} in C{site}'s router: its connection table.
        """
        return _command(["ip", "netns", "exec", self._site(site).namespace,
                         "conntrack", "-L"]).stdout

    # -- closing ----------------------------------------------------------

    def close(self) -> None:
        """
        Stop every process the lab started and delete all its namespaces.
        Safe to call more than once.
        """
        if self._closed:
            return
        self._closed = True
        for process in self._processes:
            if process.poll() is None:
                try:
                    process.kill()
                except OSError:
                    pass
        for process in self._processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
        for namespace in reversed(self._namespaces):
            _delete_namespace(namespace)
        self._namespaces.clear()
        _live_labs.discard(self)


class LabProcess:
    """
    A process running in the lab, its standard output and error read by
    background threads into lists of lines.

    @ivar host: the host it runs on.
    @ivar process: the L{subprocess.Popen}.
    """

    def __init__(self, host: str, process: subprocess.Popen) -> None:
        self.host = host
        self.process = process
        self._lines: list[str] = []
        self._errors: list[str] = []
        self._changed = threading.Condition()
        self._stdout_closed = False
        self._stderr_closed = False
        for stream, sink in ((process.stdout, self._lines),
                             (process.stderr, self._errors)):
            thread = threading.Thread(target=self._read, args=(stream, sink),
                                      daemon=True)
            thread.start()

    def _read(self, stream: Any, sink: list[str]) -> None:
        try:
            for line in stream:
                with self._changed:
                    sink.append(line.rstrip("\n"))
                    self._changed.notify_all()
        except (OSError, ValueError):
            pass
        with self._changed:
            if sink is self._lines:
                self._stdout_closed = True
            else:
                self._stderr_closed = True
            self._changed.notify_all()

    @property
    def lines(self) -> list[str]:
        """
        The standard output lines so far.
        """
        with self._changed:
            return list(self._lines)

    @property
    def errors(self) -> list[str]:
        """
        The standard error lines so far.
        """
        with self._changed:
            return list(self._errors)

    @property
    def events(self) -> list[dict[str, Any]]:
        """
        The standard output lines that are JSON objects, decoded.
        """
        events = []
        for line in self.lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events

    def wait_for_line(self, predicate: Callable[[str], bool],
                      timeout: float, start: int = 0,
                      stderr: bool = False) -> str | None:
        """
        Wait until an output line (a standard error line, with C{stderr})
        from index C{start} on satisfies C{predicate}; return it, or
        C{None} after C{timeout} seconds or once that output has ended
        without one.
        """
        deadline = time.monotonic() + timeout
        index = start
        lines = self._errors if stderr else self._lines
        with self._changed:
            while True:
                while index < len(lines):
                    line = lines[index]
                    index += 1
                    if predicate(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self._stderr_closed if stderr else self._stdout_closed):
                    return None
                self._changed.wait(remaining)

    def wait_for_event(self, event: str, timeout: float, *, start: int = 0,
                       **fields: Any) -> dict[str, Any] | None:
        """
        Wait for a JSON line C{{"event": event, ...}} whose other fields
        include C{fields}; return it decoded, or C{None} on timeout.
        """
        def matches(line: str) -> bool:
            try:
                decoded = json.loads(line)
            except ValueError:
                return False
            return (isinstance(decoded, dict)
                    and decoded.get("event") == event
                    and all(decoded.get(k) == v for k, v in fields.items()))

        line = self.wait_for_line(matches, timeout, start)
        return None if line is None else json.loads(line)

    def wait_exit(self, timeout: float) -> int | None:
        """
        Wait up to C{timeout} seconds for the process to exit; return its
        exit code or C{None}.
        """
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 5.0) -> int | None:
        """
        Terminate the process (SIGTERM, then SIGKILL after C{timeout}).
        """
        if self.process.poll() is None:
            self.process.terminate()
            if self.wait_exit(timeout) is None:
                self.process.kill()
        return self.wait_exit(timeout)

    def kill(self) -> None:
        """
        Kill the process at once (SIGKILL), as a crash would.
        """
        if self.process.poll() is None:
            self.process.kill()
        self.wait_exit(5.0)

    def transcript(self, limit: int | None = None) -> str:
        """
        What the process printed, for failure messages: everything, or
        the last C{limit} lines of each stream (with a note of how many
        were left out).
        """
        parts = []
        for name, lines in (("stdout", self.lines), ("stderr", self.errors)):
            lines = list(lines)
            if limit is not None and len(lines) > limit:
                parts.append(f"[{self.host} {name}] ... {len(lines) - limit} earlier lines left out")
                lines = lines[-limit:]
            parts.extend(f"[{self.host} {name}] {line}" for line in lines)
        return "\n".join(parts)


class UDPAgent(LabProcess):
    """
    A plain UDP socket on a lab host, driven through its standard input.

    It prints C{ready PORT} once bound, C{recv IP PORT TEXT} for every
    datagram, and C{sent IP PORT TEXT TTL} after each send.
    """

    def __init__(self, host: str, process: subprocess.Popen) -> None:
        super().__init__(host, process)
        line = self.wait_for_line(lambda l: l.startswith("ready "), 20.0)
        if line is None:
            raise LabError(f"UDP agent on {host} did not start:\n"
                           + self.transcript())
        self.port = int(line.split()[1])

    def send(self, address: str, port: int, text: str, *, ttl: int = 64,
             count: int = 1, timeout: float = 20.0) -> None:
        """
        Send C{text} (no spaces) C{count} times to C{address:port} with IP
        TTL C{ttl}; return once the agent has sent it.  With C{count} > 1
        the datagrams are numbered C{text-0}, C{text-1}, ...
        """
        if not text or any(c.isspace() for c in text):
            raise ValueError("text must be one word")
        start = len(self.lines)
        assert self.process.stdin is not None
        self.process.stdin.write(f"send {address} {port} {text} {ttl} {count}\n")
        self.process.stdin.flush()
        if self.wait_for_line(lambda l: l.startswith("sent "), timeout,
                              start) is None:
            raise LabError(f"UDP agent on {self.host} did not send:\n"
                           + self.transcript())

    def received(self, prefix: str = "") -> list[tuple[str, int, str]]:
        """
        The datagrams received so far whose text starts with C{prefix}:
        C{(source address, source port, text)}.
        """
        result = []
        for line in self.lines:
            parts = line.split(" ", 3)
            if len(parts) == 4 and parts[0] == "recv" and parts[3].startswith(
                    prefix):
                result.append((parts[1], int(parts[2]), parts[3]))
        return result

    def wait_received(self, prefix: str, timeout: float, *,
                      start: int = 0) -> tuple[str, int, str] | None:
        """
        Wait for a datagram whose text starts with C{prefix}.
        """
        def matches(line: str) -> bool:
            parts = line.split(" ", 3)
            return (len(parts) == 4 and parts[0] == "recv"
                    and parts[3].startswith(prefix))

        line = self.wait_for_line(matches, timeout, start)
        if line is None:
            return None
        parts = line.split(" ", 3)
        return (parts[1], int(parts[2]), parts[3])

    def whoami(self, reflector: str, port: int, *,
               timeout: float = 5.0) -> tuple[str, int]:
        """
        Ask a reflecting agent which source address our datagrams arrive
        from (our public address), retrying once a second.
        """
        deadline = time.monotonic() + timeout
        start = len(self.lines)
        while time.monotonic() < deadline:
            self.send(reflector, port, "whoami")
            answer = self.wait_received("seen ", 1.0, start=start)
            if answer is not None:
                address, _, seen_port = answer[2].split()[1].rpartition(":")
                return address, int(seen_port)
        raise LabError(f"no answer from the reflector {reflector}:{port}:\n"
                       + self.transcript())


_AGENT_SOURCE = r"""
import os, select, socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 1 << 22)
except OSError:
    pass
sock.bind(("0.0.0.0", int(sys.argv[1])))
reflect = "reflect" in sys.argv[2:]
print("ready", sock.getsockname()[1], flush=True)
pending = b""
while True:
    readable, _, _ = select.select([sock, 0], [], [])
    if sock in readable:
        try:
            data, (ip, port) = sock.recvfrom(65535)
        except OSError:
            data = None
        if data is not None:
            text = data.decode("utf-8", "replace")
            print("recv", ip, port, text, flush=True)
            if reflect and text.startswith("whoami"):
                sock.sendto(("seen %s:%d" % (ip, port)).encode(), (ip, port))
    if 0 in readable:
        chunk = os.read(0, 65536)
        if not chunk:
            break
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            words = line.decode().split()
            if len(words) == 6 and words[0] == "send":
                ip, port, text, ttl, count = (
                    words[1], int(words[2]), words[3], int(words[4]),
                    int(words[5]))
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
                for n in range(count):
                    payload = text if count == 1 else "%s-%d" % (text, n)
                    try:
                        sock.sendto(payload.encode(), (ip, port))
                    except OSError as e:
                        print("error", e, flush=True)
                    if count > 1:
                        time.sleep(0.0005)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 64)
                print("sent", ip, port, text, ttl, flush=True)
"""


def main(argv: list[str] | None = None) -> int:
    """
    C{python -m p2pnet.testing.netlab --cleanup [--all]}: remove lab
    namespaces left behind by crashed runs.
    """
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "--cleanup" or set(argv[1:]) - {"--all"}:
        print("usage: python -m p2pnet.testing.netlab --cleanup [--all]\n"
              "  remove p2lab-* namespaces of runs that are gone "
              "(--all: every p2lab-* namespace)", file=sys.stderr)
        return 2
    reason = missing_prerequisites()
    if reason is not None:
        print(reason, file=sys.stderr)
        return 1
    for namespace in cleanup_stale(everything="--all" in argv[1:]):
        print(f"removed {namespace}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
