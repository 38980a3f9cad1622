"""The proxy soak (issue 12): does configurable-http-proxy keep sockets or memory after user
servers stop under their users' open websockets?

    .venv/bin/python -m bench.run --only soak --name proxy_soak     # 300 cycles, 10,000 requests, each proxy
    .venv/bin/python -m bench.run --only soak --soak-cycles 20 --soak-requests 500   # a short look

The same soak runs against two proxies in one run: the one the hub image ships (CHP 5.1.0
from npm), in the run's deployment, then the one it shipped before (Debian's CHP 4.5.3
behind the keep-alive wrapper of then, taken from git), in a second deployment of the same
project whose hub image adds only that proxy on top (`old_proxy_copy`). The product's
default is not touched.

A cycle is one user's server: started through the hub, a kernel started and its websocket
opened through the proxy (code run over it), a terminal's websocket too, a share of the
requests sent through the proxy to the server, then the server stopped while both websockets
are still open: through the hub, or, every third cycle, its container killed (the server
died; the hub hears of it only later). Then the tab tries to get each websocket back, as
JupyterLab does (the proxy now sends these to the hub, or answers 503 through the hub's
error page: where upstream's leak was found, configurable-http-proxy#557), the hub is told to
stop a killed server, and only then are the websockets closed. USERS people cycle at once,
in rounds. The proxy's process in the hub container is read before
(after a warm-up round, once it settles), after every block of rounds (all servers stopped
then) and every few seconds during them (the peak), and at the end once it settles: its open
sockets (/proc/PID/fd), of them those to user servers and those half-closed by the other end
(CLOSE_WAIT: a leak's mark), and its RSS.
"""
import json
import math
import subprocess
import threading
import time
from pathlib import Path

from bench.benchmarks import Outcome
from bench.deployment import BenchError, teardown, up
from bench.floors import PORT
from bench.report import Row
from bench.soak_sockets import closed_by_proxy, open_terminal, reconnect, run_on, ws_connect

REPO = Path(__file__).resolve().parents[1]
OLD_WRAPPER = "hub/chp-keepalive.js"

# The hub's proxy command now passes --keep-alive-timeout, an option of CHP 5 that 4.5.3's
# option parser refuses; the hub config of the 4.5.3 days passed nothing of the kind.
OLD_PROXY_SHIM = """#!/usr/bin/env node
// bench/proxy_soak.py: the proxy the hub image shipped before CHP 5 (Debian's 4.5.3 behind
// the keep-alive wrapper of then), started with today's options less the one it lacks.
"use strict";
const at = process.argv.indexOf("--keep-alive-timeout");
if (at !== -1) process.argv.splice(at, 2);
require("/usr/local/lib/chp-keepalive.js");
"""
# Appended to the copy's hub/Dockerfile: only the proxy JupyterHub starts differs.
OLD_PROXY_LAYERS = """
# bench/proxy_soak.py: Debian's configurable-http-proxy 4.5.3 in place of CHP 5.1.0.
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends node-configurable-http-proxy \\
 && rm -rf /var/lib/apt/lists/*
COPY --chmod=644 chp-keepalive.js /usr/local/lib/chp-keepalive.js
COPY --chmod=755 bench-old-proxy.js /usr/local/bin/configurable-http-proxy
"""

# Run by python3 in the hub container: the proxy's process, its sockets by the inodes of its
# descriptors (states from this network namespace's TCP tables), its RSS.
MEASURE = r"""
import json, os
pids = []
for p in filter(str.isdigit, os.listdir('/proc')):
    try: argv = open(f'/proc/{p}/cmdline', 'rb').read().split(b'\0')
    except OSError: continue
    if argv[0].endswith(b'node') and any(a.endswith(b'configurable-http-proxy') for a in argv):
        pids.append(p)
if len(pids) != 1: raise SystemExit(f'proxy processes: {pids}')
pid = pids[0]
inodes = set()
for fd in os.listdir(f'/proc/{pid}/fd'):
    try: link = os.readlink(f'/proc/{pid}/fd/{fd}')
    except OSError: continue
    if link.startswith('socket:['): inodes.add(link[8:-1])
states, ends = {}, {'from_clients': 0, 'api': 0, 'to_hub': 0, 'to_servers': 0}
for table in ('/proc/net/tcp', '/proc/net/tcp6'):
    for line in open(table).read().splitlines()[1:]:
        f = line.split()
        if f[9] not in inodes: continue
        states[f[3]] = states.get(f[3], 0) + 1
        if f[3] == '0A': continue  # listening
        local, remote = (int(a.rsplit(':', 1)[1], 16) for a in (f[1], f[2]))
        ends['from_clients'] += local == 8443
        ends['api'] += local == 8001
        ends['to_hub'] += remote == 8081
        ends['to_servers'] += remote == SERVER_PORT
rss = next(int(l.split()[1]) for l in open(f'/proc/{pid}/status') if l.startswith('VmRSS:'))
print(json.dumps({'pid': int(pid), 'sockets': len(inodes), 'listening': states.get('0A', 0),
                  'established': states.get('01', 0), 'close_wait': states.get('08', 0), **ends,
                  'rss_mib': round(rss / 1024, 1)}))
""".replace("SERVER_PORT", str(PORT))
FIGURES = ("sockets", "listening", "established", "close_wait", "from_clients", "api", "to_hub",
           "to_servers", "rss_mib")
RECONNECTS = 2  # a tab's attempts to get each websocket back after its server stopped
CRASH_EVERY = 3  # every third cycle the server dies instead of being stopped through the hub


def old_wrapper_source() -> str:
    """The keep-alive wrapper as it was the day CHP 5 replaced it (from git)."""
    def git(*argv):
        return subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True)

    removed = git("rev-list", "-n", "1", "HEAD", "--", OLD_WRAPPER).stdout.strip()
    shown = git("show", f"{removed}^:{OLD_WRAPPER}") if removed else None
    if shown is None or shown.returncode != 0:
        raise BenchError(f"{OLD_WRAPPER} is in no commit of this checkout's history "
                         "(a shallow clone?): the old proxy cannot be built")
    return shown.stdout


def old_proxy_copy(root: Path) -> None:
    """Make the project copy at `root` build its hub image with the old proxy on top."""
    hub = root / "hub"
    (hub / "chp-keepalive.js").write_text(old_wrapper_source())
    (hub / "bench-old-proxy.js").write_text(OLD_PROXY_SHIM)
    dockerfile = hub / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + OLD_PROXY_LAYERS)


# --- reading the proxy -------------------------------------------------------------------
def measure(hub) -> dict:
    found = hub.exec_run(["python3", "-c", MEASURE])
    if found.exit_code != 0:
        raise BenchError(f"could not read the proxy's process: {found.output[-400:]!r}")
    return {**json.loads(found.output.decode().strip().splitlines()[-1]), "t": time.monotonic()}


def settle(hub, least_s: float = 15, most_s: float = 120, every_s: float = 5) -> list:
    """Samples until the socket count has not moved for `least_s` (sockets closing late:
    keep-alive timeouts), at most `most_s`; the last is the settled figure."""
    samples = [measure(hub)]
    alike = int(least_s // every_s) + 1
    end = time.monotonic() + most_s
    while time.monotonic() < end:
        time.sleep(every_s)
        samples.append(measure(hub))
        if len(samples) >= alike and len({s["sockets"] for s in samples[-alike:]}) == 1:
            break
    return samples


def version_of(hub) -> str:
    found = hub.exec_run(["configurable-http-proxy", "--version"])
    return found.output.decode().strip().splitlines()[-1] if found.exit_code == 0 else "unknown"


# --- a person's cycle ----------------------------------------------------------------------
def cycle(bench, client, name: str, requests: int, crash: bool = False) -> dict:
    """Start, kernel and terminal websockets open, code, requests, then the server stopped
    under the open websockets (through the hub; or, with `crash`, its container killed and
    the hub told only afterwards); which websockets the proxy ended; the tab's attempts to
    get them back, as JupyterLab makes them; and only then are they closed."""
    client.spawn(name)
    opened, paths, answers = [], [], {}
    try:
        kernel = client.start_kernel(name)
        paths.append(f"/user/{name}/api/kernels/{kernel}/channels")
        opened.append(ws_connect(client, paths[0]))
        if run_on(opened[0], client, name, "6*7") != "42":
            raise BenchError(f"{name}'s kernel did not answer 42")
        terminal, path = open_terminal(client, name)
        opened.append(terminal)
        paths.append(path)
        for _ in range(requests):
            response = client.request("GET", f"/user/{name}/api/status")
            if response.status_code != 200:
                raise BenchError(f"{name}: /api/status through the proxy answered {response.status_code}")
        if crash:
            bench.server_container(name).kill()
        else:
            bench.stop_server(name, client)
        by = time.monotonic() + 2.0  # two seconds for the proxy to end them, all together
        ended = sum(closed_by_proxy(ws, by - time.monotonic()) for ws in opened)
        attempts = [threading.Thread(target=lambda p=path: seen.append(reconnect(client, p)))
                    for path in paths for _ in range(RECONNECTS)]
        seen = []
        for attempt in attempts:  # at once: one to a server that died waits out a connect
            attempt.start()
        for attempt in attempts:
            attempt.join()
        for answer in seen:
            answers[answer] = answers.get(answer, 0) + 1
        if crash:
            bench.stop_server(name, client)
        return {"websockets": len(opened), "ended_by_proxy": ended, "requests": requests,
                "crash": crash, "reconnects": answers}
    finally:
        for ws in opened:
            try:
                ws.close(timeout=1)
            except Exception:  # noqa: BLE001  (the server is gone: a close may fail, as a tab's would)
                pass
        client.session.close()  # the tab is closed: its kept-alive connections too


def shares(total: int, parts: int) -> list:
    """`total` split into `parts` whole shares, as even as can be."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def soak_one(bench, label: str, cycles: int, requests: int, users: int, minutes: float) -> dict:
    """The soak of one deployment's proxy; its series and summary."""
    names = bench.users[:users]
    hub = bench.hub_container()
    version = version_of(hub)
    expected = {"new": "5.", "old": "4."}[label]
    if not version.startswith(expected):
        raise BenchError(f"the {label} proxy is configurable-http-proxy {version}, not {expected}x")
    clients = {name: bench.admin_client() for name in names}
    fresh = measure(hub)
    # Warm-up: each person's cycle once, so the baseline holds what stays anyway (code loaded,
    # pools), with clean stops only: a killed server's sockets are what the soak looks for.
    for name in names:
        bench.ensure_volume(name)
    warm = [threading.Thread(target=cycle, args=(bench, clients[n], n, 1)) for n in names]
    for thread in warm:
        thread.start()
    for thread in warm:
        thread.join()
    bench.admin.session.close()
    print(f"  {label} proxy {version}: settling for the baseline...", flush=True)
    baseline_samples = settle(hub, most_s=60)
    baseline = baseline_samples[-1]
    rounds = math.ceil(cycles / users)
    block = max(1, rounds // 10)
    per_cycle = shares(requests, rounds * users)
    outcomes, errors, series, during = [], [], [], []
    stop_watch = threading.Event()

    def watch():
        while not stop_watch.wait(3):
            try:
                during.append(measure(hub))
            except Exception:  # noqa: BLE001  (a missed sample is no result)
                pass

    watcher = threading.Thread(target=watch, daemon=True)
    started = time.monotonic()
    deadline = started + minutes * 60
    watcher.start()
    done_rounds = 0
    try:
        for r in range(rounds):
            if time.monotonic() > deadline:
                print(f"  {label}: time is up after {r} rounds of {rounds}", flush=True)
                break
            people = names[:min(users, cycles - r * users)]

            def person(i, name, r=r):
                try:
                    outcomes.append(cycle(bench, clients[name], name, per_cycle[r * users + i],
                                          crash=(r * users + i) % CRASH_EVERY == CRASH_EVERY - 1))
                except Exception as error:  # noqa: BLE001  (counted, and the soak goes on)
                    errors.append(f"round {r} {name}: {type(error).__name__}: {error}"[:300])
                    try:
                        bench.stop_server(name, clients[name])
                    except Exception:  # noqa: BLE001
                        pass

            threads = [threading.Thread(target=person, args=(i, n)) for i, n in enumerate(people)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            done_rounds += 1
            if done_rounds % block == 0 or r == rounds - 1:
                sample = {**measure(hub), "cycles": len(outcomes) + len(errors),
                          "seconds": round(time.monotonic() - started, 1)}
                series.append(sample)
                print(f"  {label}: {sample['cycles']} cycles, {sample['seconds']:.0f} s: sockets "
                      f"{sample['sockets']} (from clients {sample['from_clients']}, to the hub "
                      f"{sample['to_hub']}, to servers {sample['to_servers']}, CLOSE_WAIT "
                      f"{sample['close_wait']}), RSS {sample['rss_mib']} MiB"
                      + (f", {len(errors)} failed" if errors else ""), flush=True)
        left = requests - sum(o["requests"] for o in outcomes)
        if left > 0:  # cut short by `minutes`: the requests still owed, in one more cycle
            print(f"  {label}: {left} requests left, in one more cycle", flush=True)
            try:
                outcomes.append(cycle(bench, clients[names[0]], names[0], left))
            except Exception as error:  # noqa: BLE001
                errors.append(f"the last cycle: {type(error).__name__}: {error}"[:300])
    finally:
        stop_watch.set()
        watcher.join()
    seconds = time.monotonic() - started
    for client in clients.values():
        client.session.close()
    bench.admin.session.close()
    print(f"  {label}: settling for the end...", flush=True)
    end_samples = settle(hub)
    end = end_samples[-1]
    everything = [baseline, *series, *during, *end_samples]
    peak = {key: max(s[key] for s in everything) for key in FIGURES}
    strip = lambda s: {k: v for k, v in s.items() if k != "t"}  # noqa: E731
    return {
        "proxy": f"configurable-http-proxy {version}", "users_at_once": users,
        "cycles": len(outcomes), "failed_cycles": len(errors), "errors": errors[:20],
        "requests": sum(o["requests"] for o in outcomes),
        "websockets_open_at_stop": sum(o["websockets"] for o in outcomes),
        "websockets_ended_by_proxy": sum(o["ended_by_proxy"] for o in outcomes),
        "servers_killed": sum(o["crash"] for o in outcomes),
        "reconnect_answers": {answer: sum(o["reconnects"].get(answer, 0) for o in outcomes)
                              for answer in sorted({a for o in outcomes for a in o["reconnects"]})},
        "seconds": round(seconds, 1),
        "cycles_planned": cycles, "requests_planned": requests,
        "fresh": strip(fresh), "baseline": strip(baseline), "peak": peak, "end": strip(end),
        "delta": {key: round(end[key] - baseline[key], 1) for key in FIGURES},
        "after_each_block": series,
        "during": [{**strip(s), "seconds": round(s["t"] - started, 1)} for s in during],
        "settling": {"baseline": [strip(s) for s in baseline_samples],
                     "end": [strip(s) for s in end_samples]},
    }


def rows_of(label: str, found: dict) -> list:
    b, p, e = found["baseline"], found["peak"], found["end"]
    name = f"{label} ({found['proxy'].split()[-1]})"
    n = found["cycles"]
    return [
        Row("soak", f"{name}: open sockets at the end (n={n} cycles)", e["sockets"], "count",
            b["sockets"], "delta", 0, "baseline"),
        Row("soak", f"{name}: peak open sockets", p["sockets"], "count", b["sockets"], "info", floor_figure="baseline"),
        Row("soak", f"{name}: sockets to the hub at the end", e["to_hub"], "count", b["to_hub"], "delta", 0,
            "baseline"),
        Row("soak", f"{name}: sockets to user servers / CLOSE_WAIT at the end",
            e["to_servers"] + e["close_wait"], "count", kind="max", target=0),
        Row("soak", f"{name}: RSS at the end", e["rss_mib"], "MiB", b["rss_mib"], "delta", math.nan, "baseline"),
        Row("soak", f"{name}: peak RSS", p["rss_mib"], "MiB", b["rss_mib"], "info", floor_figure="baseline"),
        Row("soak", f"{name}: failed cycles", found["failed_cycles"], "count", kind="max", target=0),
    ]


def proxy_soak(bench, cycles: int, requests: int, users: int, minutes: float):
    """Both proxies, one after the other: the new in the run's deployment, the old in a second
    deployment whose hub image carries it; each with `cycles` server start/stops (`users` at
    once), `requests` requests through the proxy, at most `minutes` of cycles."""
    found = {"new": soak_one(bench, "new", cycles, requests, users, minutes)}
    env = {k: v for k, v in bench.d.env.items() if k not in ("COMPOSE_PROJECT_NAME", "HUB_PORT")}
    print("  the old proxy: a second deployment, its hub image with Debian's CHP 4.5.3...", flush=True)
    old = up(bench.users, driver_user=bench.driver_user, env=env, prepare=old_proxy_copy)
    try:
        found["old"] = soak_one(old, "old", cycles, requests, users, minutes)
    finally:
        teardown(old)
    rows = rows_of("new", found["new"]) + rows_of("old", found["old"])
    return Outcome(rows=rows, details=found)
