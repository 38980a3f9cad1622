"""The classroom benchmarks (issue 10), each against what this host allows, measured in the
same run: a class that starts at once (`class`), a bad neighbour among people at work
(`noisy`), and what an idle server and the hub take (`footprint`). Not part of the default
run (they take 15-25 minutes): `python -m bench.run --only class,noisy,footprint`."""
import json
import os
import resource
import ssl
import threading
import time
import uuid
from collections import Counter

from bench import driver
from bench.benchmarks import Outcome, p50, spawn_all, stop_all
from bench.deployment import BenchError
from bench.floors import cpu_seconds
from bench.report import Row
from bench.stats import cpu_use, host_cpu, percentile, summary

MiB = 1 << 20
BATCH = 10           # servers started (or stopped) at once when many are wanted
FLOOR_SESSIONS = 3   # sessions alone, for the class's CPU floor (their median)
SETTLE_S = 15        # after the last start, before reading what idle servers take
QUIET_S = 10         # how long the machine is watched while the deployment idles
WARM_REQUESTS = 10   # API requests before the timed ones (connection, caches)


# --- what the cores were doing --------------------------------------------------------------
def process_cpu() -> float:
    """CPU-seconds this process has used: the load driver's threads, TLS and websockets."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


ENGINE = ("dockerd", "containerd")


def stat_cpu(stat: str) -> tuple:
    """(command name, CPU ticks used) from a /proc/PID/stat line (the name may hold spaces
    and parentheses: it ends at the last ")")."""
    name = stat[stat.index("(") + 1:stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()
    return name, int(fields[11]) + int(fields[12])  # utime, stime


def engine_cpu() -> float:
    """CPU-seconds the engine's daemons on this host have used. They serve whatever else
    uses the engine too, so on a shared machine this part is an upper bound."""
    ticks = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                name, used = stat_cpu(stat.read())
        except (OSError, ValueError):
            continue  # gone meanwhile
        if name in ENGINE:
            ticks += used
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_reading(bench, containers: dict) -> dict:
    """The host's (busy, total) CPU-seconds, this bench's own, the engine's, and each
    container's ({part: container ID}), all at one moment."""
    reading = {"host": host_cpu(), "bench": process_cpu(), "engine": engine_cpu()}
    for part, container_id in containers.items():
        reading[part] = cpu_seconds(bench.client, container_id)
    return reading


def machine_busy(seconds: float = QUIET_S) -> float:
    """The share of all cores busy while this deployment idles: what else runs on the
    machine (other people's tests, say), for telling a disturbed run."""
    before = host_cpu()
    time.sleep(seconds)
    return cpu_use(before, host_cpu())["busy_share"]


def quiet_row(bench_name: str, busy_share: float) -> Row:
    return Row(bench_name, f"machine busy before, ours idle ({QUIET_S} s)", 100 * busy_share, "%")


def where_cpu_went(before: dict, after: dict, **used) -> dict:
    """Between two cpu_reading()s: the host's CPU-seconds and how busy all its cores were,
    each part's CPU-seconds (with `used`: parts counted otherwise, such as containers that
    did not exist before), and the rest: the engine, containers not named, and whatever
    else runs on the machine."""
    host = cpu_use(before["host"], after["host"])
    parts = {part: after[part] - before[part] for part in before if part != "host"}
    parts.update(used)
    return {"host_cpu_s": host["cpu_s"], "busy_share": host["busy_share"], **parts,
            "rest": host["cpu_s"] - sum(parts.values())}


# --- what a container takes -------------------------------------------------------------------
def memory_in_use(stats: dict) -> int:
    """Bytes as `docker stats` shows them: the cgroup's usage less its inactive file cache
    (total_inactive_file on cgroup v1, inactive_file on v2), as the docker CLI computes it."""
    memory = stats["memory_stats"]
    usage, extra = memory.get("usage", 0), memory.get("stats", {})
    inactive = extra.get("total_inactive_file", extra.get("inactive_file", 0))
    return usage - inactive if inactive < usage else usage


def container_memory(bench, container_id: str) -> int:
    return memory_in_use(bench.client.api.stats(container_id, stream=False, one_shot=True))


def rss_by_process(top: dict) -> list:
    """(host PID, command, RSS bytes) of each process, from `docker top CONTAINER -o
    pid,rss,args`."""
    titles = top["Titles"]
    pid, rss, command = titles.index("PID"), titles.index("RSS"), titles.index("COMMAND")
    return [(row[pid], row[command], int(row[rss]) * 1024) for row in top["Processes"]]


def server_process(processes: list) -> tuple:
    """The jupyterhub-singleuser process itself (not tini, which starts it): (PID, RSS)."""
    found = [(pid, rss) for pid, command, rss in processes
             if "jupyterhub-singleuser" in command and not command.startswith("tini")]
    if len(found) != 1:
        raise BenchError(f"expected one jupyterhub-singleuser process, found: {processes}")
    return found[0]


def rss_parts(status: str) -> dict:
    """The Rss* lines of /proc/PID/status in bytes: anonymous, file-backed, shared memory."""
    parts = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Rss"):
            parts[key] = int(value.split()[0]) * 1024  # "12345 kB"
    return parts


def limits_of(container) -> dict:
    """The limits the engine holds the container to, read back from it (CPU as NanoCpus,
    or as the CFS quota per period that DockerSpawner sets)."""
    host = container.attrs["HostConfig"]
    quota, period = host.get("CpuQuota") or 0, host.get("CpuPeriod") or 100000
    return {"memory_bytes": host.get("Memory"),
            "cpus": (host.get("NanoCpus") or 0) / 1e9 or quota / period,
            "pids": host.get("PidsLimit"), "cap_drop": host.get("CapDrop"),
            "security_opt": host.get("SecurityOpt")}


# --- the hub and its proxy stay up --------------------------------------------------------------
# Run by the hub image's Python inside the hub container: the proxy's PIDs (not this script's).
PROXY_PIDS = (
    "import os\n"
    "for p in filter(str.isdigit, os.listdir('/proc')):\n"
    "    try: argv = open(f'/proc/{p}/cmdline', 'rb').read().split(b'\\0')\n"
    "    except OSError: continue\n"
    "    if argv[0].endswith(b'node') and any(a.endswith(b'configurable-http-proxy') for a in argv):\n"
    "        print(p)\n"
)


def hub_identity(bench) -> dict:
    """What changes when the hub or its proxy restarts: the container's ID, start time and
    restart count, and the proxy's PIDs inside it."""
    hub = bench.hub_container()
    found = hub.exec_run(["python3", "-c", PROXY_PIDS])
    if found.exit_code != 0:
        raise BenchError(f"could not list the hub's processes: {found.output[-300:]!r}")
    return {"id": hub.id, "started_at": hub.attrs["State"]["StartedAt"],
            "restart_count": hub.attrs["RestartCount"], "proxy_pids": found.output.decode().split()}


def hub_problems(bench, since: float, most: int = 200) -> list:
    """The hub's warnings and errors since `since` (a Unix time), the last `most` lines:
    what it said while sessions failed."""
    lines = bench.hub_container().logs(since=int(since)).decode(errors="replace").splitlines()
    return [line for line in lines if line[:2] in ("[W", "[E", "[C")][-most:]


def restarts(before: dict, after: dict) -> list:
    """What differs between two hub_identity()s; [] when neither the hub nor its proxy
    restarted (a proxy that was not running at all counts too)."""
    changed = [f"{key}: {before[key]} -> {after.get(key)}" for key in before
               if after.get(key) != before[key]]
    if not after.get("proxy_pids"):
        changed.append("no configurable-http-proxy process in the hub container")
    return changed


# --- many servers -----------------------------------------------------------------------------
def batches(items: list, size: int) -> list:
    return [items[i:i + size] for i in range(0, len(items), size)]


def start_in_batches(bench, names: list) -> tuple:
    """Start the servers BATCH at a time (each batch at once); (seconds per batch, errors)."""
    walls, errors = [], {}
    for batch in batches(names, BATCH):
        wall, _, failed = spawn_all(bench, batch)
        walls.append(wall)
        errors.update(failed)
    return walls, errors


def stop_in_batches(bench, names: list) -> None:
    for batch in batches(names, BATCH):
        stop_all(bench, batch)


def running_servers(bench, names: list) -> dict:
    found = {name: bench.server_container(name) for name in names}
    return {name: c for name, c in found.items() if c is not None and c.status == "running"}


# --- class start --------------------------------------------------------------------------------
def own_share(spent: dict) -> float:
    """Of a where_cpu_went(), the CPU-seconds of the parts named (all but the rest)."""
    return spent["host_cpu_s"] - spent["rest"]


def class_floor(session_cpu_s: float, users: int, cores: int) -> float:
    """Seconds `users` sessions take at the least if each costs the host session_cpu_s of
    CPU and every core is busy with nothing else."""
    return users * session_cpu_s / cores


def class_start(bench, users: int) -> Outcome:
    """`users` people log in, start their server, open JupyterLab, start a kernel and run a
    cell, all at once (the load driver, concurrency = users; no stop phase: the class goes
    on working, and the servers are stopped afterwards, untimed). Against the CPU floor:
    users x the host CPU-seconds of one such session alone / cores."""
    names = bench.users[:users]
    if len(names) < users:
        raise BenchError(f"the class needs {users} bench users; there are {len(bench.users)}")
    for name in names:  # returning users: the volume exists, as after the first lesson
        bench.ensure_volume(name)
    who = [bench.credentials(name) for name in names]
    url, cafile = bench.d.url, bench.d.cafile
    cores = os.cpu_count() or 1
    hub_id = bench.hub_container().id
    driver.session(url, cafile, who[0])  # warm: image, volume, caches (not counted)
    quiet = machine_busy()
    alone, alone_cpu = [], []
    for _ in range(FLOOR_SESSIONS):
        before = cpu_reading(bench, {"hub": hub_id})
        result = driver.session(url, cafile, who[0], stop=False)
        after = cpu_reading(bench, {"hub": hub_id})
        server = bench.server_container(names[0])
        alone_cpu.append(where_cpu_went(before, after, server=cpu_seconds(bench.client, server.id)
                                        if server else 0.0))
        bench.stop_server(names[0])
        if not result.ok:
            raise BenchError(f"a session alone failed at {result.failed_phase}: {result.error}")
        alone.append(result.total)
    # The brief's floor counts the whole host's CPU during a session alone; on a machine
    # others use too, that holds their work as well, so the session's own parts (hub, its
    # server, the driver, the engine's daemons) give a second floor.
    session_cpu = p50([spent["host_cpu_s"] for spent in alone_cpu])
    own_cpu = p50([own_share(spent) for spent in alone_cpu])
    floor, own_floor = class_floor(session_cpu, users, cores), class_floor(own_cpu, users, cores)
    before = cpu_reading(bench, {"hub": hub_id})
    try:
        report = driver.run(url, cafile, who, sessions=users, concurrency=users,
                            spawn_deadline_s=300, stop=False)
        after = cpu_reading(bench, {"hub": hub_id})
        servers = running_servers(bench, names)
        # Each server's container was created inside the run: all its CPU is the run's.
        cpu = where_cpu_went(before, after, servers=sum(cpu_seconds(bench.client, c.id)
                                                        for c in servers.values()))
    finally:
        stop_in_batches(bench, names)
    wall = report.wall_s
    each = sorted(r.total for r in report.results if r.ok)
    return Outcome(
        rows=[Row("class", f"{users} at once, login to cell ran: wall", wall, "s", floor, "info",
                  floor_figure="CPU floor"),
              Row("class", f"{users} at once, login to cell ran: wall", wall, "s", own_floor, "info",
                  floor_figure="own-CPU floor"),
              Row("class", f"{users} at once: within the minute", wall, "s", kind="max", target=60),
              Row("class", f"one session alone: host CPU-s p50 (n={FLOOR_SESSIONS})", session_cpu, "s"),
              Row("class", "one session alone: own CPU-s p50", own_cpu, "s"),
              Row("class", "all cores busy", 100 * cpu["busy_share"], "%"),
              Row("class", "host CPU / cores", cpu["host_cpu_s"] / cores, "s", floor, "info",
                  floor_figure="CPU floor"),
              Row("class", "sessions failed", report.failed, "count", kind="max", target=0),
              quiet_row("class", quiet)],
        distributions={"class start: login to cell ran": ("s", {f"{users} at once": each,
                                                                "alone": alone})},
        details={"users": users, "cores": cores, "stop_phase": False,
                 "floor_s": floor, "own_floor_s": own_floor, "alone_cpu_s": alone_cpu,
                 "alone_session_s": alone,
                 "cpu_s": cpu, "driver": report.to_json(),
                 "phases_p95": {p: s["p95"] for p, s in report.phase_summary().items()}},
    )


# --- noisy neighbour ---------------------------------------------------------------------------
# What the bad neighbour runs in a kernel. Each is bounded in time inside the container too
# (`timeout`, SECONDS), and in size: the memory bomb stops at twice the memory limit.
CPU_HOG = (
    "import subprocess, sys\n"
    "hogs = [subprocess.Popen(['timeout', '{seconds}', sys.executable, '-c', 'while True: pass'])\n"
    "        for _ in range(4)]\n"
    "len(hogs)"
)
FORK_BOMB = "import os\nos.system(\"timeout -s KILL {seconds} bash -c ':(){{ :|:& }};:' >/dev/null 2>&1 &\")"
MEMORY_BOMB = "chunks = []\nfor _ in range({chunks}):\n    chunks.append(b'x' * (64 << 20))"
CHUNK = 64 * MiB
MAX_BOMBS = 200      # memory bombs in one window at the most
NEIGHBOUR_TAIL_S = 300  # how long past the window a misbehaviour may run if not stopped
WINDOWS = (("no neighbour", None), ("CPU hog", "cpu"), ("memory bomb", "memory"),
           ("fork bomb", "fork"), ("no neighbour, after", None))


def fire(user, name: str, kernel: str, code: str, deadline_s: float = 30) -> str:
    """Send `code` to a kernel over its websocket and say how it ended: "reply" (it ran to
    the end), "died" (the server reports the kernel restarting or dead: killed), "timeout"
    or "closed". HubClient.execute waits for a result, which a killed kernel never gives."""
    import websocket

    url = "ws" + user.base[len("http"):] + f"/user/{name}/api/kernels/{kernel}/channels"
    ws = websocket.create_connection(
        url, header=[f"Authorization: token {user.token}"], timeout=deadline_s,
        sslopt={"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": user.cafile})
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "session": msg_id, "username": name,
              "msg_type": "execute_request", "version": "5.3"}
    content = {"code": code, "silent": False, "store_history": False, "allow_stdin": False}
    try:
        ws.send(json.dumps({"header": header, "parent_header": {}, "metadata": {},
                            "channel": "shell", "content": content}))
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            message = json.loads(ws.recv())
            kind = message.get("msg_type")
            if kind == "status" and message["content"].get("execution_state") in ("restarting", "dead"):
                return "died"
            if kind == "execute_reply" and message["parent_header"].get("msg_id") == msg_id:
                return "reply"
        return "timeout"
    except websocket.WebSocketTimeoutException:
        return "timeout"
    except websocket.WebSocketConnectionClosedException:
        return "closed"
    finally:
        ws.close()


class Neighbour:
    """A user whose server misbehaves in a kernel from start() until stop(): a CPU hog, a
    memory bomb set off again and again, or a fork bomb. stop() stops the server (which
    ends whatever still runs in it)."""

    def __init__(self, bench, name: str, behaviour: str, window_s: float):
        self.bench, self.name, self.behaviour = bench, name, behaviour
        self.bound_s = int(window_s + NEIGHBOUR_TAIL_S)
        self.done = threading.Event()
        self.thread = None
        self.bombs = []
        self.container = None

    def start(self) -> None:
        bench, name = self.bench, self.name
        self.user = driver.HubUser(bench.d.url, bench.d.cafile)
        self.user.login_form(name, bench.d.password(name))
        self.user.spawn(name)
        self.since = time.time()
        self.container = bench.server_container(name)
        kernel = self.user.start_kernel(name)
        if self.behaviour == "memory":
            limit = self.container.attrs["HostConfig"].get("Memory") or 0
            if not limit:
                raise BenchError("the memory bomb needs a memory limit (USER_MEM_LIMIT): "
                                 "without one it would take the host's memory")
            code = MEMORY_BOMB.format(chunks=2 * limit // CHUNK)
            self.thread = threading.Thread(target=self.memory_bombs, args=(kernel, code))
            self.thread.start()
        else:
            code = {"cpu": CPU_HOG, "fork": FORK_BOMB}[self.behaviour]
            self.user.execute(name, kernel, code.format(seconds=self.bound_s))
        time.sleep(3)  # under way before the window opens

    def memory_bombs(self, kernel: str, code: str) -> None:
        """Set the bomb off in a fresh kernel until stopped (a kernel killed five times in
        a row is given up by its server; a new one is not), bounded in count and time."""
        end = time.monotonic() + self.bound_s
        while not self.done.is_set() and time.monotonic() < end and len(self.bombs) < MAX_BOMBS:
            try:
                kernel = kernel or self.user.start_kernel(self.name)
                self.bombs.append(fire(self.user, self.name, kernel, code))
                self.user.request("DELETE", f"/user/{self.name}/api/kernels/{kernel}")
            except Exception as error:  # noqa: BLE001  (a busy server is part of the picture)
                self.bombs.append(f"error: {type(error).__name__}")
                self.done.wait(1)
            kernel = ""

    def evidence(self) -> dict:
        """That it misbehaved: its processes now, and the OOM kills the engine reported."""
        client, container_id = self.bench.client, self.container.id
        stats = client.api.stats(container_id, stream=False, one_shot=True)
        ooms = client.events(since=self.since, until=time.time(), decode=True,
                             filters={"container": container_id, "event": "oom"})
        return {"behaviour": self.behaviour, "pids": stats.get("pids_stats", {}).get("current"),
                # The engine's "oom" events: it may report kills close together as one.
                "oom_kills": sum(1 for _ in ooms), "bombs": dict(Counter(self.bombs)),
                "limits": limits_of(self.container)}

    def stop(self) -> None:
        self.done.set()
        if self.thread is not None:
            self.thread.join(60)
        self.bench.stop_server(self.name)


def noisy_window(bench, who: list, neighbour_name: str, behaviour, window_s: float) -> dict:
    """One window: the driver's session loop for `who`, all at once, with no session begun
    after window_s; and, with a behaviour, the bad neighbour misbehaving all along."""
    neighbour = Neighbour(bench, neighbour_name, behaviour, window_s) if behaviour else None
    opened = time.time()
    try:
        parts = {"hub": bench.hub_container().id}
        if neighbour:
            neighbour.start()
            parts["neighbour"] = neighbour.container.id
        before = cpu_reading(bench, parts)
        report = driver.run(bench.d.url, bench.d.cafile, who, sessions=100 * len(who),
                            concurrency=len(who), time_limit_s=window_s)
        after = cpu_reading(bench, parts)
        evidence = neighbour.evidence() if neighbour else {}
    finally:
        if neighbour:
            neighbour.stop()
    return {"execute_s": [r.phases["execute"] for r in report.results if "execute" in r.phases],
            "cpu_s": where_cpu_went(before, after), "neighbour": evidence,
            "driver": report.to_json(), "failed": report.failed, "wall_s": report.wall_s,
            "hub_problems": hub_problems(bench, opened) if report.failed else []}


def noisy_neighbour(bench, users: int, window_s: float) -> Outcome:
    """`users` people run the driver's session loop for window_s, first with nobody else,
    then beside a neighbour running a CPU hog, a memory bomb, a fork bomb, then with nobody
    again: the others' p95 cell execution against the first window's, failed sessions, and
    whether the hub or its proxy restarted."""
    if len(bench.users) <= users:
        raise BenchError(f"noisy needs {users + 1} bench users; there are {len(bench.users)}")
    names, bad = bench.users[:users], bench.users[users]
    for name in [*names, bad]:
        bench.ensure_volume(name)
    who = [bench.credentials(name) for name in names]
    identity = hub_identity(bench)
    quiet = machine_busy()
    windows = {}
    for label, behaviour in WINDOWS:
        print(f"  window: {label} ({window_s:g} s)...", flush=True)
        windows[label] = noisy_window(bench, who, bad, behaviour, window_s)
        windows[label]["hub_changes"] = restarts(identity, hub_identity(bench))
        w = windows[label]
        print(f"    execute p95 {percentile(w['execute_s'], 95):.3f} s (n={len(w['execute_s'])}), "
              f"failed {w['failed']}, cores busy {100 * w['cpu_s']['busy_share']:.0f} %", flush=True)
    p95 = {label: percentile(w["execute_s"], 95) for label, w in windows.items()}
    base, n = p95["no neighbour"], len(windows["no neighbour"]["execute_s"])
    rows = [Row("noisy", f"execute p95, no neighbour (n={n})", base, "s")]
    for label, behaviour in WINDOWS[1:]:
        count = len(windows[label]["execute_s"])
        rows.append(Row("noisy", f"execute p95, {label} (n={count})", p95[label], "s", base,
                        "ratio" if behaviour else "info", 1.5 if behaviour else float("nan"),
                        "no neighbour"))
    memory, fork = windows["memory bomb"]["neighbour"], windows["fork bomb"]["neighbour"]
    hog = windows["CPU hog"]
    rows += [
        Row("noisy", "sessions failed (all windows)", sum(w["failed"] for w in windows.values()),
            "count", kind="max", target=0),
        Row("noisy", "hub or proxy restarted", sum(bool(w["hub_changes"]) for w in windows.values()),
            "count", kind="max", target=0),
        Row("noisy", "CPU hog: cores the neighbour used", hog["cpu_s"]["neighbour"] / hog["wall_s"],
            "cores", hog["neighbour"]["limits"]["cpus"], "info", floor_figure="its limit"),
        Row("noisy", "memory bomb: the neighbour's kernels killed", memory["bombs"].get("died", 0), "count"),
        Row("noisy", "fork bomb: the neighbour's processes", fork["pids"], "count",
            fork["limits"]["pids"], "info", floor_figure="its limit"),
        quiet_row("noisy", quiet),
    ]
    return Outcome(
        rows=rows,
        distributions={"noisy neighbour: the others' cell execution": (
            "s", {short: windows[label]["execute_s"] for short, (label, _) in zip(
                ("none", "CPU hog", "memory", "fork", "none again"), WINDOWS)})},
        details={"users": users, "window_s": window_s, "neighbour": bad, "hub_at_start": identity,
                 "execute_p95_s": p95,
                 "execute_s": {label: summary(w["execute_s"]) for label, w in windows.items()},
                 "windows": windows},
    )


# --- footprint ---------------------------------------------------------------------------------
def api_latencies(user, count: int) -> list:
    """Milliseconds of each of `count` GETs of /hub/api/user through the proxy, one after
    another on a kept-alive connection (after WARM_REQUESTS not counted)."""
    samples = []
    for i in range(count + WARM_REQUESTS):
        started = time.perf_counter()
        response = user.request("GET", "/hub/api/user")
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise BenchError(f"GET /hub/api/user answered HTTP {response.status_code}")
        if i >= WARM_REQUESTS:
            samples.append(elapsed * 1000)
    return samples


def servers_cpu(bench, servers: dict) -> float:
    return sum(cpu_seconds(bench.client, container.id) for container in servers.values())


def api_round(bench, user, count: int, servers: dict) -> tuple:
    """api_latencies(), and where the CPU went meanwhile (the hub, the running servers,
    the rest): what a slower answer waited for."""
    hub_id = bench.hub_container().id
    servers_before = servers_cpu(bench, servers)
    before = cpu_reading(bench, {"hub": hub_id})
    samples = api_latencies(user, count)
    after = cpu_reading(bench, {"hub": hub_id})
    used = servers_cpu(bench, servers) - servers_before
    return samples, where_cpu_went(before, after, servers=used)


def hub_memory(bench, readings: int = 5) -> dict:
    """The hub container's memory as `docker stats` shows it (median of a few readings half
    a second apart: its health check starts a short-lived Python every 2 s), and the RSS of
    each of its processes."""
    hub = bench.hub_container()
    seen = []
    for _ in range(readings):
        seen.append(container_memory(bench, hub.id))
        time.sleep(0.5)
    return {"container_bytes": p50(seen), "readings": seen,
            "processes": [(command, rss) for _, command, rss in
                          rss_by_process(hub.top(ps_args="-o pid,rss,args"))]}


def idle_server(bench, container) -> dict:
    """What an idle server's container takes, and its server process; with the parts of
    each (what the cgroup counts; anonymous and file-backed RSS, read from this host's
    /proc), to tell where they differ."""
    stats = bench.client.api.stats(container.id, stream=False, one_shot=True)
    pid, rss = server_process(rss_by_process(container.top(ps_args="-o pid,rss,args")))
    try:
        with open(f"/proc/{pid}/status") as status:
            parts = rss_parts(status.read())
    except OSError:
        parts = {}  # an engine on another host
    counted = stats["memory_stats"].get("stats", {})
    return {"container_bytes": memory_in_use(stats), "server_rss_bytes": rss, "server_rss_parts": parts,
            "cgroup": {key: counted.get(key) for key in (
                "total_rss", "total_cache", "total_mapped_file", "total_inactive_file",
                "total_active_file", "anon", "file", "inactive_file")}}


def footprint(bench, servers: int, requests: int) -> Outcome:
    """What an idle server takes (its container, as `docker stats` shows it, against the
    jupyterhub-singleuser process's own RSS), what the hub takes per running server (its
    container with none and with `servers` running), and the hub API's p99 with `servers`
    running against none: `requests` GETs of /hub/api/user with a user's token."""
    names = bench.users[:servers]
    if len(names) < servers:
        raise BenchError(f"footprint needs {servers} bench users; there are {len(bench.users)}")
    for name in names:
        bench.ensure_volume(name)
    response = bench.admin.request("POST", f"/hub/api/users/{bench.driver_user}/tokens",
                                   json={"note": "bench footprint", "expires_in": 7200})
    response.raise_for_status()
    api = driver.HubUser(bench.d.url, bench.d.cafile)
    api.token = response.json()["token"]
    quiet = machine_busy()
    api_none, cpu_none = api_round(bench, api, requests, {})
    hub_none = hub_memory(bench)
    try:
        walls, errors = start_in_batches(bench, names)
        time.sleep(SETTLE_S)
        running = running_servers(bench, names)
        idle = {name: idle_server(bench, c) for name, c in running.items()}
        limits = limits_of(next(iter(running.values()))) if running else {}
        api_many, cpu_many = api_round(bench, api, requests, running)
        hub_many = hub_memory(bench)
    finally:
        stop_in_batches(bench, names)
    api_after, cpu_after = api_round(bench, api, requests, {})
    k = len(idle)
    if not k:
        raise BenchError(f"no server started: {errors}")
    container_mib = [s["container_bytes"] / MiB for s in idle.values()]
    rss_mib = [s["server_rss_bytes"] / MiB for s in idle.values()]
    per_server_mb = (hub_many["container_bytes"] - hub_none["container_bytes"]) / k / 1e6
    p99 = {label: percentile(samples, 99) for label, samples in
           (("none", api_none), ("many", api_many), ("after", api_after))}
    return Outcome(
        rows=[Row("footprint", f"idle server: container memory p50 (n={k})", p50(container_mib), "MiB",
                  p50(rss_mib), "ratio", 1.3, "server process RSS"),
              Row("footprint", "hub memory per running server", per_server_mb, "MB", kind="max",
                  target=5),
              Row("footprint", "hub memory, no server", hub_none["container_bytes"] / MiB, "MiB"),
              Row("footprint", f"hub memory, {k} servers", hub_many["container_bytes"] / MiB, "MiB"),
              Row("footprint", f"hub API p99, {k} servers (n={requests})", p99["many"], "ms",
                  p99["none"], "ratio", 2.0, "no server"),
              Row("footprint", f"hub API p50, {k} servers", p50(api_many), "ms", p50(api_none),
                  "info", floor_figure="no server"),
              Row("footprint", "hub API p99, no server again (after)", p99["after"], "ms",
                  p99["none"], "info", floor_figure="no server"),
              Row("footprint", f"all cores busy during the API requests, {k} servers",
                  100 * cpu_many["busy_share"], "%", 100 * cpu_none["busy_share"], "info",
                  floor_figure="no server"),
              Row("footprint", f"servers that did not start (of {servers})", len(errors), "count",
                  kind="max", target=0),
              quiet_row("footprint", quiet)],
        distributions={
            "footprint: hub API, GET /hub/api/user": (
                "ms", {"no server": api_none, f"{k} servers": api_many, "none again": api_after}),
            "footprint: idle server memory": ("MiB", {"container": container_mib, "server RSS": rss_mib}),
        },
        details={"servers": servers, "running": k, "start_batch_s": walls, "errors": errors,
                 "memory_measure": "docker stats: usage - total_inactive_file (cgroup v1) or "
                                   "inactive_file (v2); server RSS: ps rss of jupyterhub-singleuser",
                 "idle": idle, "limits": limits, "hub_none": hub_none, "hub_many": hub_many,
                 "api_ms": {"none": summary(api_none), "many": summary(api_many),
                            "after": summary(api_after)},
                 "api_p99_ms": p99,
                 "api_cpu_s": {"none": cpu_none, "many": cpu_many, "after": cpu_after}},
    )
