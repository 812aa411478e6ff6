"""
Time from C{connect()} to a direct connection, in the simulator, in units of
(introducer RTT + peer RTT), with the peers behind port-restricted NATs
(the common home NAT).

  - a latency grid with no loss;
  - a loss curve (0-30% loss on both hosts' links, each direction) over
    seeded trials at one realistic latency set: median and p90 of the
    ratio, and how many trials did not connect.

    python -m benchmarks.connect_time [--trials 40] [--plot docs/connect_time.png]
    python -m benchmarks.connect_time --nat-check-cost

C{--nat-check-cost}: what the default NAT check costs.  Over the same
latency grid, with everything as out of the box (C{run_pair(...,
defaults=True)}: the introducer on one IP address with its relay and
second STUN port, default peers), A's C{start()} time and its
C{connect()} time with the check (the default) and without
(C{PeerConfig(nat_check=False)}), for port-restricted, cone <->
symmetric and symmetric pairs.

With one-way host-link latencies la, lb and introducer link latency li:
introducer RTT = 2(la + li) (as seen by A), peer RTT = 2(la + lb).
"""

from __future__ import annotations

import argparse
import statistics

from p2pnet.testing.scenarios import run_pair
from benchmarks._common import table, write_result

GRID = [
    # (la, lb, li) one-way seconds
    (0.001, 0.001, 0.0),
    (0.005, 0.010, 0.0),
    (0.010, 0.015, 0.005),
    (0.020, 0.030, 0.010),
    (0.040, 0.060, 0.020),
    (0.080, 0.100, 0.040),
]


def base(la, lb, li) -> float:
    return 2 * (la + li) + 2 * (la + lb)


def pct(values, q):
    values = sorted(values)
    if not values:
        return None
    k = max(0, min(len(values) - 1, int(round(q * (len(values) - 1)))))
    return values[k]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--kind", default="port-restricted")
    parser.add_argument("--loss-latency", default="0.02,0.03,0.01", help="la,lb,li for the loss curve")
    parser.add_argument("--plot", default=None, help="write a PNG of the loss curve here")
    parser.add_argument("--name", default="connect_time")
    parser.add_argument("--nat-check-cost", action="store_true", help="measure the default NAT check's cost")
    args = parser.parse_args()
    if args.nat_check_cost:
        nat_check_cost()
        return

    grid = []
    for la, lb, li in GRID:
        r = run_pair(args.kind, args.kind, latency_a=la, latency_b=lb, introducer_latency=li, step=0.0005, seed=1)
        b = base(la, lb, li)
        grid.append({
            "latency_a": la, "latency_b": lb, "introducer_latency": li,
            "introducer_rtt": 2 * (la + li), "peer_rtt": 2 * (la + lb),
            "connect_time": r.connect_time, "ratio": r.connect_time / b if r.connect_time else None,
            "path": r.path,
        })
    print("No loss (default HandshakeConfig: the early side pauses the lag + 1 ms):")
    print(table(
        ["intro RTT ms", "peer RTT ms", "connect ms", "ratio", "path"],
        [[g["introducer_rtt"] * 1e3, g["peer_rtt"] * 1e3, g["connect_time"] * 1e3, g["ratio"], g["path"]] for g in grid],
    ))

    la, lb, li = (float(x) for x in args.loss_latency.split(","))
    b = base(la, lb, li)
    curve = []
    for loss in (0.0, 0.05, 0.10, 0.15, 0.20, 0.25, 0.30):
        ratios, failed = [], 0
        for seed in range(args.trials):
            r = run_pair(args.kind, args.kind, latency_a=la, latency_b=lb, introducer_latency=li,
                         loss=loss, seed=seed, step=0.001)
            if r.connected and r.connect_time is not None:
                ratios.append(r.connect_time / b)
            else:
                failed += 1
        curve.append({
            "loss": loss, "trials": args.trials, "failed": failed,
            "median_ratio": statistics.median(ratios) if ratios else None,
            "p90_ratio": pct(ratios, 0.9), "max_ratio": max(ratios) if ratios else None,
            "ratios": ratios,
        })
    print(f"\nLoss curve at la={la*1e3:g} ms, lb={lb*1e3:g} ms, li={li*1e3:g} ms (base {b*1e3:g} ms), {args.trials} seeds:")
    print(table(
        ["loss", "median ratio", "p90 ratio", "max ratio", "not connected"],
        [[f"{c['loss']:.0%}", c["median_ratio"], c["p90_ratio"], c["max_ratio"], f"{c['failed']}/{c['trials']}"] for c in curve],
    ))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.6))
        xs = [c["loss"] * 100 for c in curve]
        ax.plot(xs, [c["median_ratio"] for c in curve], "o-", label="median")
        ax.plot(xs, [c["p90_ratio"] for c in curve], "s--", label="p90")
        ax.axhline(1.25, color="grey", lw=0.8, ls=":", label="budget at 0% loss (1.25)")
        ax.set_xlabel("loss on each host link, each direction (%)")
        ax.set_ylabel("connect time / (intro RTT + peer RTT)")
        ax.set_title(f"Time to direct connection ({args.kind}, base {b*1e3:g} ms, {args.trials} seeds)", fontsize=9)
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"plot: {args.plot}")
    print(f"wrote {write_result(args.name, {'settings': vars(args), 'grid': grid, 'loss_curve': curve})}")


def nat_check_cost() -> None:
    from p2pnet import PeerConfig

    rows = []
    for kinds in [("port-restricted", "port-restricted"), ("port-restricted", "symmetric"), ("symmetric", "symmetric")]:
        for la, lb, li in GRID:
            row = {"kinds": "-".join(kinds), "introducer_rtt": 2 * (la + li), "peer_rtt": 2 * (la + lb)}
            for label, config in (("on", None), ("off", PeerConfig(nat_check=False))):
                r = run_pair(*kinds, latency_a=la, latency_b=lb, introducer_latency=li, step=0.0005, seed=1,
                             defaults=True, peer_config=config)
                row[f"start_{label}"] = r.start_time
                row[f"connect_{label}"] = r.connect_time
                row[f"path_{label}"] = r.path
            rows.append(row)

    def ms(value):
        return None if value is None else value * 1e3

    print("NAT check on (default) vs off, everything else default (seed 1):")
    print(table(
        ["pair", "intro RTT ms", "peer RTT ms", "start on", "start off", "connect on", "connect off",
         "path on", "path off"],
        [[r["kinds"], ms(r["introducer_rtt"]), ms(r["peer_rtt"]), ms(r["start_on"]), ms(r["start_off"]),
          ms(r["connect_on"]), ms(r["connect_off"]), r["path_on"], r["path_off"]] for r in rows],
    ))
    print(f"wrote {write_result('connect_time_nat_check', {'rows': rows})}")


if __name__ == "__main__":
    main()
