"""A user's server started through the hub on a swarm worker, against the same start on a
single host, in one run on the same hosts and images.

    .venv/bin/python -m bench.swarm_spawn [--spawns 10]

Starts three Docker hosts over SSH (the containers tests/remote uses: sshd and their own
dockerd, on one Docker network). First the deployment runs on `jhmanager` alone: the floor,
a spawn on a single host. Then `down`, `swarm-init`, `swarm-join` of the two workers and
`deploy`, and the same spawns land on a worker. Each spawn is timed from the hub API's
POST until the hub reports the server ready, after a stop; the first of each series (a
cold start of the image on that engine) is reported apart. Writes bench/results/swarm_spawn.json.
"""
import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "remote"), str(REPO / "tests" / "integration")]

from deployment_support import copy_project  # noqa: E402
from hubclient import HubClient  # noqa: E402
from remotehost import SESSION_LABEL, TEST_LABEL, TEST_LABEL_VALUE, started_host  # noqa: E402

RESULTS = REPO / "bench" / "results"
ALIASES = ("jhmanager", "jhworker1", "jhworker2")
HEAVY = re.compile(r"(numpy|scipy|pandas|matplotlib)==")


def tasks(root: Path, env: dict, *words, timeout=3600) -> str:
    result = subprocess.run([sys.executable, "-m", "tasks", "-H", "jhmanager", *words], cwd=root,
                            env=env, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise SystemExit(f"`{' '.join(words)}` failed:\n{output[-4000:]}")
    return output


def spawns(root: Path, port: int, user: str, count: int) -> list:
    """Seconds from each start request until the hub reports the server ready."""
    passwords = dict(line.split()[:2] for line in (root / "secrets" / "initial-passwords").open()
                     if line.strip() and not line.startswith("#"))
    hub = HubClient(f"https://127.0.0.1:{port}", str(root / "secrets" / "jupyterhub.crt"))
    assert hub.login(user, passwords[user]).status_code == 302
    hub.make_token(user)
    times = []
    for _ in range(count):
        hub.stop_server(user)
        started = time.monotonic()
        hub.start_server(user)
        times.append(round(time.monotonic() - started, 3))
        assert hub.run_code(user, "6*7") == "42"
    hub.stop_server(user)
    return times


def summary(times: list) -> dict:
    warm = times[1:]
    return {"first_s": times[0], "warm_median_s": round(statistics.median(warm), 3),
            "warm_max_s": max(warm), "all_s": times}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.swarm_spawn")
    parser.add_argument("--spawns", type=int, default=10)
    args = parser.parse_args(argv)
    import docker

    client = docker.from_env()
    network = client.networks.create(f"jh-swarm-bench-{uuid.uuid4().hex[:8]}", labels={
        TEST_LABEL: TEST_LABEL_VALUE, SESSION_LABEL: "swarm-bench"})
    try:
        with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
            home = Path(tmp) / "home"
            hosts = [stack.enter_context(started_host(client, home, alias=alias, network=network.name,
                                                      seed=alias == "jhmanager"))
                     for alias in ALIASES]
            manager = hosts[0]
            (Path(tmp) / "project").mkdir()
            root = copy_project(Path(tmp) / "project")
            requirements = root / "notebook" / "requirements.txt"
            requirements.write_text("".join(line for line in requirements.read_text().splitlines(True)
                                            if not HEAVY.match(line)))
            env = {**manager.env(), "COMPOSE_PROJECT_NAME": f"jhs{uuid.uuid4().hex[:8]}",
                   "HUB_PORT": str(manager.hub_port)}
            tasks(root, env, "deploy")
            single = spawns(root, manager.hub_port, "alice", args.spawns)
            tasks(root, env, "down")
            tasks(root, env, "swarm-init")
            tasks(root, env, "swarm-join", "jhworker1,jhworker2")
            started = time.monotonic()
            tasks(root, env, "deploy")
            swarm_deploy_s = round(time.monotonic() - started, 1)
            worker = spawns(root, manager.hub_port, "alice", args.spawns)
            tasks(root, env, "down")
    finally:
        network.remove()
    single_s, worker_s = summary(single), summary(worker)
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores",
        "spawns_each": args.spawns,
        "floor_single_host": single_s,
        "worker": worker_s,
        "worker_over_single_warm_median": round(worker_s["warm_median_s"] / single_s["warm_median_s"], 2),
        "swarm_deploy_after_join_s": swarm_deploy_s,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "swarm_spawn.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'spawn through the hub':<36}{'first':>8}{'median':>9}{'max':>8}")
    for name, figures in (("single host (floor)", single_s), ("swarm worker", worker_s)):
        print(f"{name:<36}{figures['first_s']:>7.2f}s{figures['warm_median_s']:>8.2f}s"
              f"{figures['warm_max_s']:>7.2f}s")
    print(f"worker / single host (median): {result['worker_over_single_warm_median']}x")
    print(f"written to {RESULTS / 'swarm_spawn.json'}")


if __name__ == "__main__":
    main()
