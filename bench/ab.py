"""`python -m bench.ab KIND[@DIR][:IDS] ... [--rounds N] [--seconds S]`: interleaved A/B.

Starts each server kind of `bench.servers` (pinned to the server core, like `make bench`) and
runs the closed-loop client against them in turn, forward then reverse each round, printing
server µs/call (server CPU ÷ calls answered) and req/s per run and the median per kind. The
quick way to price one change: run the two kinds side by side, or one kind from two checkouts
(`gw-mem gw-mem@/tmp/base`: the second runs `bench.servers` from that directory); `:IDS`
sets how many applicants that kind's load cycles through (`gw-mem:1 gw-mem:512`); a `+uvloop`
suffix runs that server on uvloop (`gw-mem gw-mem+uvloop`; `--uvloop` puts every server on it);
`~STAGE` replaces one stage of a gateway server by its `bench.inproc` stand-in, to price it in
served calls (`gw-mem gw-mem~audit gw-mem~signature`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from bench.procs import CLIENT_CORE, SERVER_CORE, Server, run_client, start_server
from bench.setup import prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kinds", nargs="+")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rpc", default="household")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--mode", choices=("closed", "open"), default="closed")
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: calls per second")
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--ids", type=int, default=512, help="applicants cycled through")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="proofless-ab-") as tmp:
        print(tmp, flush=True)
        work = Path(tmp)
        prepare(work)
        sims = start_server("sims", "sims", work, core=CLIENT_CORE)
        extra = ["--sims", json.dumps(sims.info)] + (["--uvloop"] if args.uvloop else [])
        servers: dict[str, Server] = {}
        us: dict[str, list[float]] = {k: [] for k in args.kinds}
        p50: dict[str, list[float]] = {k: [] for k in args.kinds}
        try:
            for kind in args.kinds:
                if kind.rpartition(":")[0] in servers:  # the same server, another load
                    servers[kind] = servers[kind.rpartition(":")[0]]
                    continue
                name, on_uvloop, _ = kind.partition(":")[0].partition("+uvloop")
                name, *without = name.split("~")
                server_kind, _, tree = name.partition("@")
                servers[kind] = start_server(
                    f"s{len(servers)}",
                    server_kind,
                    work,
                    core=SERVER_CORE,
                    extra=extra
                    + (["--uvloop"] if on_uvloop and not args.uvloop else [])
                    + [arg for stage in without for arg in ("--without", stage)],
                    cwd=Path(tree) if tree else None,
                )
            for r in range(args.rounds):
                for kind in args.kinds if r % 2 == 0 else list(reversed(args.kinds)):
                    server = servers[kind]
                    options: dict[str, object] = dict(
                        rpc=args.rpc,
                        seconds=args.seconds,
                        warmup=args.warmup,
                        channels=args.channels,
                        mode=args.mode,
                        ids=int(kind.partition(":")[2] or args.ids),
                    )
                    if args.mode == "closed":
                        options["concurrency"] = args.concurrency
                    else:
                        options["rate"] = f"{args.rate:.1f}"
                    res = run_client(
                        work, server.port, {"server": server.pid, "sims": sims.pid}, **options
                    )
                    us[kind].append(res["server_us_per_call"])
                    p50[kind].append(res["p50_ms"])
                    print(
                        f"round {r + 1} {kind:10s} {res['rps']:7.0f} req/s "
                        f"{res['server_us_per_call']:7.0f} µs/call  server "
                        f"{res['cpu']['server']:.2f} client {res['cpu']['client']:.2f}  "
                        f"p50 {res['p50_ms']:.2f} ms p99 {res['p99_ms']:.2f} ms  "
                        f"errors {sum(res['errors'].values())}",
                        flush=True,
                    )
        finally:
            for server in servers.values():
                server.stop()
            sims.stop()
    for kind in args.kinds:
        print(
            f"median {kind:10s} {statistics.median(us[kind]):7.0f} µs/call  "
            f"p50 {statistics.median(p50[kind]):.2f} ms"
        )


if __name__ == "__main__":
    main()
