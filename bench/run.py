"""Run the benchmarks: deploy a copy of the project, measure each figure and its floor in
the same run, print the table, write bench/results/NAME.json and NAME.png, tear down.

    .venv/bin/pip install -r bench/requirements.txt      # once: matplotlib for the plot
    .venv/bin/python -m bench.run                         # the full run (10-15 min, quiet machine)
    .venv/bin/python -m bench.run --quick                 # small counts, for development
    .venv/bin/python -m bench.run --only P1,P4 --spawns 10
    .venv/bin/python -m bench.run --only class,noisy,footprint --name classroom
    .venv/bin/python -m bench.run --only soak --name proxy_soak

Every count has a flag; --quick only changes the defaults. The classroom benchmarks (class,
noisy, footprint) run only when named: together they take 25 minutes; so does the proxy soak
(soak), which deploys a second copy with the old proxy.
"""
import argparse
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from bench import benchmarks, classroom, deployment, proxy_soak
from bench.report import plot, table, write_json
from tasks.limits import DEFAULTS as LIMIT_DEFAULTS

RESULTS = Path(__file__).resolve().parent / "results"

# name -> (function, the option holding its count, or a tuple of them); run in this order.
# P11 builds an image, so it goes first; the hub restart (P6) last.
BENCHMARKS = {
    "CLI": (benchmarks.cli_start, "cli_runs"),
    "noop": (benchmarks.noop_up, "noop_runs"),
    "P11": (benchmarks.p11_image_start, "image_starts"),
    "P1": (benchmarks.p1_single_spawn, "spawns"),
    "P4": (benchmarks.p4_proxy, "requests"),
    "P2": (benchmarks.p2_sessions, "sessions"),
    "P3": (benchmarks.p3_bursts, "bursts"),
    "P6": (benchmarks.p6_restart, "restart_servers"),
    "class": (classroom.class_start, "class_users"),
    "noisy": (classroom.noisy_neighbour, ("noisy_users", "noisy_window")),
    "footprint": (classroom.footprint, ("footprint_servers", "api_requests")),
    "soak": (proxy_soak.proxy_soak, ("soak_cycles", "soak_requests", "soak_users", "soak_minutes")),
}
CLASSROOM = ("class", "noisy", "footprint")
WHEN_NAMED = (*CLASSROOM, "soak")
DEFAULT = [name for name in BENCHMARKS if name not in WHEN_NAMED]
FULL = dict(cli_runs=20, noop_runs=5, image_starts=10, spawns=20, requests=500, sessions=20,
            bursts=[10, 20], restart_servers=5, class_users=30, noisy_users=20, noisy_window=120,
            footprint_servers=50, api_requests=500, soak_cycles=300, soak_requests=10_000, soak_users=4,
            soak_minutes=12)
QUICK = dict(cli_runs=5, noop_runs=2, image_starts=3, spawns=5, requests=200, sessions=3,
             bursts=[3, 5], restart_servers=3, class_users=5, noisy_users=4, noisy_window=30,
             footprint_servers=5, api_requests=200, soak_cycles=8, soak_requests=200, soak_users=2,
             soak_minutes=3)
# Every run measures the product's default per-user limits, whatever the .env it copies says.
LIMITS = {key: LIMIT_DEFAULTS[key] for key in ("USER_MEM_LIMIT", "USER_CPU_LIMIT", "USER_PIDS_LIMIT")}


def options(name: str) -> tuple:
    """The options holding a benchmark's counts, in the order its function takes them."""
    option = BENCHMARKS[name][1]
    return (option,) if isinstance(option, str) else option


def sizes(text: str) -> list:
    return [int(n) for n in text.split(",") if n]


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"small counts: {QUICK}")
    parser.add_argument("--only", help=f"comma-separated, of {', '.join(BENCHMARKS)} "
                                       f"(default: all but {', '.join(WHEN_NAMED)})")
    parser.add_argument("--spawns", type=int, help="P1: spawns through the hub (and as many floors)")
    parser.add_argument("--sessions", type=int, help="P2: driver sessions (and as many floors)")
    parser.add_argument("--bursts", type=sizes, help="P3: burst sizes, e.g. 10,20")
    parser.add_argument("--requests", type=int, help="P4: requests each way")
    parser.add_argument("--restart-servers", type=int, help="P6: servers running during the restart")
    parser.add_argument("--image-starts", type=int, help="P11: starts of each image")
    parser.add_argument("--cli-runs", type=int, help="CLI: runs of each listing")
    parser.add_argument("--noop-runs", type=int, help="no-op: runs of each command")
    parser.add_argument("--class-users", type=int, help="class: people starting at once")
    parser.add_argument("--noisy-users", type=int, help="noisy: people at work beside the bad neighbour")
    parser.add_argument("--noisy-window", type=float, help="noisy: seconds of each window")
    parser.add_argument("--footprint-servers", type=int, help="footprint: servers running")
    parser.add_argument("--api-requests", type=int, help="footprint: hub API requests each way")
    parser.add_argument("--soak-cycles", type=int, help="soak: server start/stops, each proxy")
    parser.add_argument("--soak-requests", type=int, help="soak: requests through the proxy, each proxy")
    parser.add_argument("--soak-users", type=int, help="soak: users cycling at once")
    parser.add_argument("--soak-minutes", type=float, help="soak: most minutes of cycles, each proxy")
    parser.add_argument("--name", help="results file name (default: latest, or quick with --quick)")
    parser.add_argument("--keep", action="store_true", help="leave the deployment up (to look at it)")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.selected = [n.strip() for n in args.only.split(",")] if args.only else list(DEFAULT)
    unknown = [n for n in args.selected if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    args.name = args.name or ("quick" if args.quick else "latest")
    return args


def bench_users(args) -> list:
    classroom_needs = {"class": args.class_users, "noisy": args.noisy_users + 1,  # + the neighbour
                       "footprint": args.footprint_servers, "soak": args.soak_users}
    needed = max([1, args.restart_servers, *args.bursts,
                  *(n for name, n in classroom_needs.items() if name in args.selected)])
    return [f"b{i:02d}" for i in range(1, needed + 1)]


def git_revision() -> str:
    def git(*argv):
        return subprocess.run(["git", *argv], cwd=RESULTS.parent.parent, capture_output=True,
                              text=True).stdout.strip()

    revision = git("rev-parse", "--short", "HEAD") or "unknown"
    return revision + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def image_ids(bench) -> dict:
    images = {}
    for name in (bench.d.image("hub"), bench.d.image("notebook")):
        try:
            images[name] = bench.client.images.get(name).id
        except Exception:  # noqa: BLE001
            images[name] = None
    return images


def meta(args, bench, started: float, images_at_start: dict, load_at_start: tuple) -> dict:
    images = image_ids(bench)
    if images != images_at_start:
        print("warning: the image tags moved during the run (another deployment's `inv build` "
              "on this machine?): the hub may have spawned another image than the floors ran",
              file=sys.stderr)
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick, "revision": git_revision(), "host": platform.node(),
        "cores": os.cpu_count(), "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(), "limits": LIMITS,
        "docker": bench.client.version().get("Version"), "images": images,
        "images_at_start": images_at_start,
        "counts": {opt: getattr(args, opt) for name in BENCHMARKS for opt in options(name)},
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    load_at_start = os.getloadavg()
    print(f"load average now: {' '.join(f'{x:.2f}' for x in load_at_start)} "
          f"on {os.cpu_count()} cores{' (quick: small counts, noisy)' if args.quick else ''}", flush=True)
    try:
        bench = deployment.up(bench_users(args), env=LIMITS)
    except deployment.BenchError as error:
        print(f"cannot benchmark: {error}", file=sys.stderr)
        return 2
    rows, distributions, details = [], {}, {}
    images_at_start = image_ids(bench)
    try:
        for name in args.selected:
            counts = [getattr(args, option) for option in options(name)]
            print(f"{name}: {', '.join(map(str, counts))}...", flush=True)
            begun = time.monotonic()
            try:
                outcome = BENCHMARKS[name][0](bench, *counts)
            except Exception as error:  # noqa: BLE001  (one broken benchmark should not void the rest)
                traceback.print_exc()
                details[name] = {"error": f"{type(error).__name__}: {error}"}
                continue
            rows += outcome.rows
            distributions.update(outcome.distributions)
            details[name] = {**outcome.details, "seconds": round(time.monotonic() - begun, 1)}
            print(table(outcome.rows).split("\n", 2)[2], flush=True)
        info = meta(args, bench, started, images_at_start, load_at_start)
    finally:
        if args.keep:
            print(f"left up: project {bench.project}, {bench.d.url}, files in {bench.d.root}")
        else:
            deployment.teardown(bench)
    json_path, png_path = RESULTS / f"{args.name}.json", RESULTS / f"{args.name}.png"
    write_json(json_path, info, rows, details)
    plot(png_path, distributions,
         f"{info['date']} {info['revision']}, {info['cores']} cores"
         + (" (quick: small counts)" if args.quick else ""))
    print()
    print(table(rows))
    failed = [n for n, d in details.items() if "error" in d]
    missed = [f"{r.bench} {r.figure}" for r in rows if r.ok is False]
    print(f"\n{len(rows)} figures; targets missed: {len(missed)}; benchmarks failed: "
          f"{', '.join(failed) or 'none'}; {time.monotonic() - started:.0f} s")
    print(f"wrote {json_path.relative_to(Path.cwd()) if json_path.is_relative_to(Path.cwd()) else json_path}"
          f" and {png_path.name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
