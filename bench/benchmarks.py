"""The benchmarks. Each takes the running deployment (bench.deployment.Bench) and its
count, measures the figure and its floor in the same run, interleaved where both are
sampled so that a machine which gets busier mid-run moves both alike, and returns an
Outcome: table rows, samples for the plot, details for the JSON file."""
import http.client
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import driver
from bench.deployment import BenchError, wait_api
from bench.floors import (
    PORT, direct_session, start_direct, stop_direct, template_of, wait_gone,
)
from bench.report import Row
from bench.stats import cpu_use, host_cpu, percentile, summary
from tasks.names import PROJECT_LABEL, ROLE_LABEL, labels


@dataclass
class Outcome:
    rows: list
    distributions: dict = field(default_factory=dict)  # panel -> (unit, {label: samples})
    details: dict = field(default_factory=dict)


def p50(values):
    return percentile(values, 50)


def floor_name(bench, name: str) -> str:
    return f"{bench.project}-floor-{name}"


def one_floor(bench, name: str, image: str = ""):
    """A server for `name` started straight on the engine and stopped again; the sample."""
    direct = start_direct(bench.client, bench.template(name), floor_name(bench, name),
                          bench.project, image=image)
    stop_direct(bench.client, direct.container_id)
    return direct


# --- P1 -----------------------------------------------------------------------------------
def watch_answer(bench, name: str, network: str, done: threading.Event, seen: dict) -> None:
    """While the hub starts `name`'s server, note when its container runs with an address
    and when its server first answers there (perf_counter times in `seen`)."""
    ip = None
    while not done.is_set() and ip is None:
        container = bench.server_container(name)
        if container is not None:
            ip = container.attrs["NetworkSettings"]["Networks"].get(network, {}).get("IPAddress")
        if ip:
            seen["running"] = time.perf_counter()
        else:
            ip = None
            time.sleep(0.05)
    while not done.is_set() and ip:
        conn = http.client.HTTPConnection(ip, PORT, timeout=1)
        try:
            conn.request("GET", f"/user/{name}/api")
            if conn.getresponse().status < 500:
                seen["answered"] = time.perf_counter()
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.01)


def timed_spawn(bench, name: str) -> dict:
    """One spawn through the hub: seconds from the POST until the hub says ready, and
    where the time went (until its container runs, until its server answers, and the hub's
    own wait after that; the first two as seen by polling the engine and the server)."""
    network = bench.template(name).network
    done, seen = threading.Event(), {}
    watcher = threading.Thread(target=watch_answer, args=(bench, name, network, done, seen))
    started = time.perf_counter()
    watcher.start()
    try:
        bench.admin.spawn(name)
        ready = time.perf_counter()
    finally:
        done.set()
        watcher.join()
    return {"total": ready - started,
            "to_running": seen.get("running", ready) - started,
            "to_answer": seen.get("answered", ready) - started,
            "hub_after_answer": ready - seen.get("answered", ready)}


def p1_single_spawn(bench, spawns: int) -> Outcome:
    """POST /users/NAME/server until the hub says ready, against the same server started
    straight on the engine until it answers (create + start + first answer)."""
    name = bench.users[0]
    bench.template(name)  # one spawn through the hub first: warm image, volume, caches
    one_floor(bench, name)
    spawns_seen, floors = [], []
    for i in range(spawns):
        for order in ((0, 1) if i % 2 == 0 else (1, 0)):  # alternate who goes first
            if order == 0:
                spawns_seen.append(timed_spawn(bench, name))
                bench.stop_server(name)
            else:
                direct = one_floor(bench, name)
                bench.floor_samples.append(direct)
                floors.append(direct.total_s)
    hub = [s["total"] for s in spawns_seen]
    after = [s["hub_after_answer"] for s in spawns_seen]
    return Outcome(
        rows=[Row("P1", f"spawn p50 (n={spawns})", p50(hub), "s", p50(floors), "ratio", 1.15, "p50"),
              Row("P1", f"spawn p95 (n={spawns})", percentile(hub, 95), "s", percentile(floors, 95),
                  "ratio", 1.4, "p95"),
              Row("P1", "hub's wait after the server answered, p50", p50(after), "s")],
        distributions={"P1 single spawn": ("s", {"hub": hub, "floor": floors})},
        details={"hub_s": hub, "floor_s": floors, "hub": summary(hub), "floor": summary(floors),
                 "breakdown": spawns_seen,
                 "floor_parts_p50": {
                     "create_s": p50([f.create_s for f in bench.floor_samples]),
                     "start_s": p50([f.start_s for f in bench.floor_samples]),
                     "answer_s": p50([f.answer_s for f in bench.floor_samples]),
                     "cpu_s": p50([f.cpu_s for f in bench.floor_samples])}},
    )


# --- P2 -----------------------------------------------------------------------------------
def p2_sessions(bench, sessions: int) -> Outcome:
    """The load driver's sessions one after another, against the same session without the
    hub: the server started straight on the engine, Lab, kernel and `5*4` at its address,
    stopped on the engine. The floor has no login: that is the hub's own work."""
    name = bench.driver_user
    who = bench.credentials(name)
    template = bench.template(name)
    response = bench.admin.request("POST", f"/hub/api/users/{name}/tokens",
                                   json={"note": "bench floor", "expires_in": 7200})
    response.raise_for_status()
    token = response.json()["token"]
    results, floors = [], []
    started = time.monotonic()
    for _ in range(sessions):
        results.append(driver.session(bench.d.url, bench.d.cafile, who))
        floors.append(direct_session(bench.client, template, floor_name(bench, name), bench.project, token))
    report = driver.Report(results, time.monotonic() - started, sessions, 1, float("inf"))
    totals = [r.total for r in results if r.ok]
    floor_totals = [sum(f.values()) for f in floors]
    rows = [
        Row("P2", f"session p50 (n={sessions})", p50(totals), "s", p50(floor_totals), "ratio", 1.25, "p50"),
        Row("P2", "sessions failed", report.failed, "count", kind="max", target=0),
    ]
    phases = {p: [r.phases[p] for r in results if p in r.phases] for p in driver.PHASES}
    floor_phases = {p: [f[p] for f in floors if p in f] for p in driver.PHASES}
    return Outcome(
        rows=rows,
        distributions={"P2 user session": ("s", {"hub": totals, "floor": floor_totals})},
        details={"driver": report.to_json(), "floor_sessions": floors,
                 "phases_p50": {p: {"hub": p50(phases[p]), "floor": p50(floor_phases[p])}
                                for p in driver.PHASES}},
    )


# --- P3 -----------------------------------------------------------------------------------
def spawn_all(bench, names: list, deadline_s: float = 300) -> tuple:
    """Start every server at once through the hub; (wall seconds, per-user seconds, errors)."""
    gate = threading.Barrier(len(names))
    ready, errors, begun = {}, {}, []

    def one(name):
        client = bench.admin_client()
        gate.wait()
        started = time.perf_counter()
        begun.append(started)
        try:
            client.spawn(name, deadline_s)
            ready[name] = time.perf_counter()
        except Exception as error:  # noqa: BLE001  (a failed spawn is a result, not a crash)
            errors[name] = f"{type(error).__name__}: {error}"[:300]

    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first = min(begun)
    wall = (max(ready.values()) - first) if ready else float("nan")
    return wall, {n: t - first for n, t in ready.items()}, errors


def stop_all(bench, names: list) -> None:
    threads = [threading.Thread(target=bench.stop_server, args=(n, bench.admin_client()))
               for n in names if bench.server_container(n) is not None]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n in names:  # whatever a failed stop left behind
        container = bench.server_container(n)
        if container is not None:
            container.remove(force=True)
            wait_gone(bench.client, container.id)


def started_spread(bench, names: list) -> float:
    """Seconds between the first and the last of these containers' start, as the engine
    recorded it: how much the hub's single Docker thread spreads a burst out."""
    from datetime import datetime

    times = []
    for name in names:
        container = bench.server_container(name)
        if container is not None:
            stamp = container.attrs["State"]["StartedAt"]  # RFC 3339 with nanoseconds
            times.append(datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp())
    return max(times) - min(times) if times else float("nan")


def direct_burst(bench, names: list) -> float:
    """The same servers started straight on the engine, all at once: seconds until the last
    answers. Polled every 50 ms, so that N polling threads do not take the CPU they measure."""
    templates = {name: bench.template(name) for name in names}
    gate = threading.Barrier(len(names))
    begun, started, errors = [], [], []

    def one(name):
        gate.wait()
        begun.append(time.perf_counter())
        try:
            started.append(start_direct(bench.client, templates[name], floor_name(bench, name),
                                        bench.project, poll_s=0.05))
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for direct in started:
        stop_direct(bench.client, direct.container_id)
    if errors:
        raise BenchError(f"a server started straight on the engine failed: {errors[0]}")
    return max(d.answered_at for d in started) - min(begun)


def p3_bursts(bench, sizes: list) -> Outcome:
    """N servers started at once: wall time from the first POST to the last "ready",
    against F_N = max(N x container create+start, N x CPU-seconds of one server start /
    cores), both from floor samples of this run (the engine's part, and the CPU's). For
    scale, the same burst started straight on the engine, without the hub."""
    while len(bench.floor_samples) < 3:
        bench.floor_samples.append(one_floor(bench, bench.users[0]))
    container_s = p50([f.container_s for f in bench.floor_samples])
    cpu_s = p50([f.cpu_s for f in bench.floor_samples])
    cores = os.cpu_count() or 1
    rows, series, details = [], {}, {"container_s": container_s, "cpu_s": cpu_s, "cores": cores}
    for n in sizes:
        names = bench.users[:n]
        if len(names) < n:
            raise BenchError(f"a burst of {n} needs {n} bench users; there are {len(bench.users)}")
        for name in names:
            bench.ensure_volume(name)
        cpu_before = host_cpu()
        wall, each, errors = spawn_all(bench, names)
        hub_cpu = cpu_use(cpu_before, host_cpu())
        started = started_spread(bench, names)
        for name in names:  # what the burst ran, for the same burst without the hub
            container = bench.server_container(name)
            if container is not None:
                bench.templates.setdefault(name, template_of(container.attrs))
        stop_all(bench, names)
        cpu_before = host_cpu()
        direct = direct_burst(bench, names)
        direct_cpu = cpu_use(cpu_before, host_cpu())
        floor = max(n * container_s, n * cpu_s / cores)
        rows += [Row("P3", f"burst of {n}: wall", wall, "s", floor, "ratio", 1.3, f"F_{n}"),
                 Row("P3", f"burst of {n}: wall", wall, "s", direct, "info", floor_figure="same, no hub"),
                 Row("P3", f"burst of {n}: all cores busy", 100 * hub_cpu["busy_share"], "%"),
                 Row("P3", f"burst of {n}: host CPU / cores", hub_cpu["cpu_s"] / cores, "s", floor,
                     "info", floor_figure=f"F_{n}"),
                 Row("P3", f"burst of {n}: failed spawns", len(errors), "count", kind="max", target=0)]
        series[f"{n} at once"] = sorted(each.values())
        details[f"burst_{n}"] = {"wall_s": wall, "floor_s": floor, "direct_wall_s": direct,
                                 "ready_s": each, "errors": errors,
                                 "containers_started_within_s": started,
                                 # the whole host's CPU during each burst (hub, engine, servers,
                                 # this bench), against the servers' own share of F_N
                                 "host_cpu": hub_cpu, "host_cpu_direct": direct_cpu}
    return Outcome(rows, {"P3 burst: time to ready": ("s", series)}, details)


# --- P4 -----------------------------------------------------------------------------------
def p4_proxy(bench, count: int) -> Outcome:
    """GET /user/NAME/api through the hub's proxy over HTTPS, against the same request sent
    straight to the container; all on kept-alive connections, as a browser does. Through
    the proxy twice: by the published port (as users reach it: the engine's port forwarding,
    then the proxy), and by the hub container's own address (the proxy and TLS alone)."""
    import urllib3

    name = bench.users[0]
    network = bench.template(name).network
    bench.admin.spawn(name)
    try:
        container = bench.server_container(name)
        ip = container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
        hub_ip = bench.hub_container().attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
        tls = dict(cert_reqs="CERT_REQUIRED", ca_certs=bench.d.cafile, server_hostname="localhost",
                   assert_hostname="localhost", maxsize=1)
        path = f"/user/{name}/api"
        node_ip = start_node_proxy(bench, network, f"http://{ip}:8888")
        targets = {
            "proxy": urllib3.HTTPSConnectionPool("127.0.0.1", bench.d.port, **tls),
            "proxy at the hub's address": urllib3.HTTPSConnectionPool(hub_ip, 8443, **tls),
            "bare Node proxy": urllib3.HTTPSConnectionPool(node_ip, NODE_PROXY_PORT, **tls),
            "direct": urllib3.HTTPConnectionPool(ip, 8888, maxsize=1),
        }
        samples = {label: [] for label in targets}
        for i in range(count + 10):  # the first 10 of each warm the connections
            order = list(targets) if i % 2 == 0 else list(reversed(targets))
            for label in order:
                started = time.perf_counter()
                response = targets[label].request("GET", path, timeout=10, retries=False)
                elapsed = time.perf_counter() - started
                if response.status != 200:
                    raise BenchError(f"P4: {label} {path} answered HTTP {response.status}")
                if i >= 10:
                    samples[label].append(elapsed * 1000)
    finally:
        stop_node_proxy(bench)
        bench.stop_server(name)
    proxy, by_ip, straight = samples["proxy"], samples["proxy at the hub's address"], samples["direct"]
    bare = samples["bare Node proxy"]
    return Outcome(
        rows=[Row("P4", f"request p50 (n={count})", p50(proxy), "ms", p50(straight), "delta", 1.0, "direct"),
              Row("P4", f"at the hub's address p50 (n={count})", p50(by_ip), "ms", p50(straight),
                  "delta", math.nan, "direct"),
              Row("P4", f"bare Node proxy p50 (n={count})", p50(bare), "ms", p50(straight),
                  "delta", math.nan, "direct")],
        distributions={"P4 one request (TLS but direct)": ("ms", {"proxy": proxy, "hub addr.": by_ip,
                                                                  "bare Node": bare, "direct": straight})},
        details={"proxy_ms": summary(proxy), "proxy_at_hub_address_ms": summary(by_ip),
                 "bare_node_proxy_ms": summary(bare), "direct_ms": summary(straight)},
    )


NODE_PROXY_PORT = 9443


def node_proxy_name(bench) -> str:
    return f"{bench.project}-bench-node-proxy"


def start_node_proxy(bench, network: str, target: str) -> str:
    """bench/node_proxy.js in a container of the hub's image (its Node and http-proxy-3) on the
    deployment's network, serving the hub's certificate; its address once it answers."""
    import socket

    here = Path(__file__).resolve().parent
    container = bench.client.containers.run(
        bench.d.image("hub"), name=node_proxy_name(bench), detach=True, user="0",
        entrypoint=["node", "/bench/node_proxy.js", "/secrets/jupyterhub.crt",
                    "/secrets/jupyterhub.key", target, str(NODE_PROXY_PORT)],
        environment={"NODE_PATH": "/opt/proxy/node_modules"}, network=network,
        labels=labels(bench.project, "bench-floor"),
        volumes={str(here): {"bind": "/bench", "mode": "ro"},
                 str(bench.d.root / "secrets"): {"bind": "/secrets", "mode": "ro"}},
    )
    end = time.monotonic() + 30
    while True:
        container.reload()
        ip = container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
        try:
            socket.create_connection((ip, NODE_PROXY_PORT), timeout=1).close()
            return ip
        except OSError:
            if container.status != "running" or time.monotonic() > end:
                raise BenchError(f"P4: the bare Node proxy did not listen: {container.logs()[-500:]!r}")
            time.sleep(0.1)


def stop_node_proxy(bench) -> None:
    import docker

    try:
        bench.client.containers.get(node_proxy_name(bench)).remove(force=True)
    except docker.errors.NotFound:
        pass


# --- P6 -----------------------------------------------------------------------------------
def p6_restart(bench, servers: int) -> Outcome:
    """Restart the hub container with servers running: time until the API answers, until
    every server answers through the proxy again, and the containers lost (same IDs)."""
    import requests

    names = bench.users[:servers]
    for name in names:
        bench.ensure_volume(name)
    _, _, errors = spawn_all(bench, names)
    if errors:
        stop_all(bench, names)
        raise BenchError(f"P6: servers did not start: {errors}")
    try:
        before = {n: bench.server_container(n).id for n in names}
        hub = bench.hub_container()
        started = time.perf_counter()
        hub.restart(timeout=10)
        restarted = time.perf_counter() - started
        api = restarted + wait_api(bench)
        waiting = set(names)
        end = time.monotonic() + 120
        while waiting and time.monotonic() < end:
            for name in sorted(waiting):
                try:
                    response = requests.get(f"{bench.d.url}/user/{name}/api", verify=bench.d.cafile,
                                            timeout=2, allow_redirects=False)
                    if response.status_code == 200 and "version" in response.json():
                        waiting.discard(name)
                except (requests.RequestException, ValueError):
                    pass
            time.sleep(0.05)
        routes = time.perf_counter() - started if not waiting else float("nan")
        after = {n: getattr(bench.server_container(n), "id", None) for n in names}
        running = {n for n in names if after[n] == before[n]
                   and bench.client.containers.get(after[n]).status == "running"}
        lost = len(names) - len(running)
    finally:
        stop_all(bench, names)
    return Outcome(
        rows=[Row("P6", f"hub restart, {servers} servers: API answers after", api, "s"),
              Row("P6", "servers answer through the proxy after", routes, "s"),
              Row("P6", "servers lost (same ID, running)", lost, "count", kind="max", target=0)],
        details={"restart_call_s": restarted, "api_s": api, "routes_s": routes,
                 "before": before, "after": after, "not_back": sorted(waiting)},
    )


# --- P11 ----------------------------------------------------------------------------------
def build_unfixed(bench) -> str:
    """The user image built from the same notebook/ with FAST_START=0, under a bench tag
    with the bench's label (removed with everything else); returns its image ID."""
    from invoke import Context

    from tasks.images import ensure_base_image, image_id
    from tasks.project import compose_env
    from tasks.settings import load_settings, resolve_ca_bundle

    root = bench.d.root
    settings = load_settings(root, environ={**os.environ, **bench.d.env})
    tag = f"{bench.project}-notebook:unfixed"
    override = root / "bench-unfixed.yml"
    override.write_text(
        "services:\n  notebook:\n"
        f"    image: {tag}\n"
        "    build:\n      args:\n        FAST_START: \"0\"\n"
        "      labels:\n"
        f"        {PROJECT_LABEL}: {bench.project}\n"
        f"        {ROLE_LABEL}: bench-image\n")
    env = compose_env(settings, base_image=ensure_base_image(Context(), bench.client, settings.base_image),
                      ca_file=resolve_ca_bundle(settings.build_ca_bundle))
    argv = ["docker", "compose", "--project-directory", str(root), "-f", str(root / "docker-compose.yml"),
            "-f", str(override), "--profile", "images", "build", "notebook"]
    result = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True)
    if result.returncode != 0:
        raise BenchError(f"building {tag} failed:\n{result.stderr[-3000:]}")
    return image_id(bench.client, tag)


def p11_image_start(bench, starts: int) -> Outcome:
    """Container start until the server answers, for the user image as built (with
    notebook/fast_start) and the same image built without it, alternately."""
    name = bench.users[0]
    fixed = bench.template(name).image
    unfixed = build_unfixed(bench)
    one_floor(bench, name, image=unfixed)  # warm its layers
    samples = {"fixed": [], "unfixed": []}
    cpu = {"fixed": [], "unfixed": []}
    for i in range(starts):
        for label in (("fixed", "unfixed") if i % 2 == 0 else ("unfixed", "fixed")):
            direct = one_floor(bench, name, image=fixed if label == "fixed" else unfixed)
            samples[label].append(direct.answer_s)
            cpu[label].append(direct.cpu_s)
            if label == "fixed":
                bench.floor_samples.append(direct)
    return Outcome(
        rows=[Row("P11", f"server start p50 (n={starts})", p50(samples["fixed"]), "s",
                  p50(samples["unfixed"]), "ratio", 0.7, "without fast_start"),
              Row("P11", "CPU-seconds of a server start p50", p50(cpu["fixed"]), "s",
                  p50(cpu["unfixed"]), "info", floor_figure="without fast_start")],
        distributions={"P11 server start": ("s", {"fast_start": samples["fixed"],
                                                  "without": samples["unfixed"]})},
        details={"answer_s": samples, "cpu_s": cpu, "fixed_image": fixed, "unfixed_image": unfixed},
    )


# --- the tool itself ----------------------------------------------------------------------
MINIMAL_TASKS = 'from invoke import task\n\n\n@task\ndef hello(c):\n    """Nothing."""\n'


def timed_run(argv, cwd, env=None, expect="") -> float:
    """Seconds one command takes. With Python's default of caching compiled modules, as a
    user has it, even where this shell set PYTHONDONTWRITEBYTECODE (the warm-up run writes
    the cache for both sides of a comparison)."""
    run_env = {**os.environ, **(env or {})}
    run_env.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env=run_env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0 or expect not in result.stdout:
        problem = "failed" if result.returncode != 0 else f"did not say {expect!r}"
        raise BenchError(f"{shlex.join(argv)} {problem} in {cwd}:\n{(result.stdout + result.stderr)[-2000:]}")
    return elapsed


def cli_start(bench, runs: int) -> Outcome:
    """`inv --list` in the project, against invoke listing a one-task tasks.py."""
    argv = [sys.executable, "-m", "invoke", "--list"]
    ours, floor = [], []
    with tempfile.TemporaryDirectory(prefix="bench-invoke-") as empty:
        Path(empty, "tasks.py").write_text(MINIMAL_TASKS)
        timed_run(argv, bench.d.root, bench.d.env), timed_run(argv, empty)  # warm the file cache
        for i in range(runs):
            for label in (("ours", "floor") if i % 2 == 0 else ("floor", "ours")):
                if label == "ours":
                    ours.append(timed_run(argv, bench.d.root, bench.d.env))
                else:
                    floor.append(timed_run(argv, empty))
    return Outcome(
        rows=[Row("CLI", f"inv --list p50 (n={runs})", p50(ours), "s", p50(floor), "ratio", 1.3,
                  "invoke, 1-task file")],
        distributions={"CLI start": ("s", {"inv --list": ours, "minimal": floor})},
        details={"inv_list_s": ours, "minimal_s": floor},
    )


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def compose_up_argv(echoed: str) -> list:
    """The `docker compose ... up` line `inv --echo up` printed, turned into `... up -d`."""
    for line in ANSI.sub("", echoed).splitlines():
        if "docker compose" in line:
            argv = shlex.split(line)
            if "up" in argv:
                return argv[:argv.index("up")] + ["up", "-d"]
    raise BenchError("`inv --echo up` printed no `docker compose ... up` line to replay")


def noop_up(bench, runs: int) -> Outcome:
    """`inv build up` with nothing to change, against `docker compose up -d` with nothing
    to change (the very command and variables `inv up` runs compose with). A run after
    which the hub is another container, or restarted, was no no-op and is not counted:
    on a shared machine another deployment's `inv build` may retag the images meanwhile."""
    # Without the record of the last `inv up`, this run takes every step, and so shows the
    # compose command to replay; it ends by writing the record the timed runs then find.
    (bench.d.root / ".state" / "applied.json").unlink(missing_ok=True)
    warm = bench.d.inv("--echo", "build", "up")
    if warm.returncode != 0:
        raise BenchError(f"inv build up failed:\n{warm.output[-3000:]}")
    compose = compose_up_argv(warm.stdout)
    inv = [sys.executable, "-m", "invoke", "build", "up"]
    timed_run(inv, bench.d.root, bench.d.env)  # writes the compiled modules it loads

    def hub_state():
        hub = bench.hub_container()
        return hub.id, hub.attrs["State"]["StartedAt"]

    samples = {"ours": [], "floor": []}
    changed = {"ours": 0, "floor": 0}
    for i in range(runs):
        for label in (("ours", "floor") if i % 2 == 0 else ("floor", "ours")):
            before = hub_state()
            if label == "ours":
                seconds = timed_run(inv, bench.d.root, bench.d.env, expect="nothing changed since")
            else:
                seconds = timed_run(compose, bench.d.root)
            if hub_state() == before:
                samples[label].append(seconds)
            else:
                changed[label] += 1
    if not samples["ours"] or not samples["floor"]:
        raise BenchError(f"every run recreated or restarted the hub ({changed}): no no-op to time")
    ours, floor = samples["ours"], samples["floor"]
    return Outcome(
        rows=[Row("no-op", f"inv build up p50 (n={len(ours)})", p50(ours), "s", p50(floor), "ratio",
                  1.5, "compose up -d")],
        distributions={"no-op inv build up": ("s", {"inv build up": ours, "compose up -d": floor})},
        details={"inv_build_up_s": ours, "compose_up_s": floor, "runs_that_changed_the_hub": changed},
    )
