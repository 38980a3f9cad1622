"""First deploy and no-op redeploy to a real second Docker host over SSH: times, SSH
connections and channels (each command, Docker API stream and tunnel opens one), against a
floor measured in the same run: one Fabric connection running one `docker compose version`.

    .venv/bin/python -m bench.remote_deploy [--redeploys 3]

Starts its own remote host (the container tests/remote uses: sshd + its own dockerd,
seeded with the base image), so the first deploy builds both images there from nothing.
Writes bench/results/remote_deploy.json.
"""
import argparse
import json
import os
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
from remotehost import started_host  # noqa: E402

RESULTS = REPO / "bench" / "results"


def run_deploy(root: Path, env: dict, alias: str) -> dict:
    stats_file = root / ".ssh-stats.json"
    started = time.monotonic()
    # bench.counted: the tasks' program, counting SSH connections and channels. bench/ comes
    # from this checkout; the copy's own tasks/ come first (the working folder).
    result = subprocess.run(
        [sys.executable, "-m", "bench.counted", "-H", alias, "deploy"], cwd=root,
        env={**env, "JUPYTERHUB_DEPLOY_SSH_STATS": str(stats_file), "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=3600,
    )
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"deploy failed:\n{(result.stdout + result.stderr)[-4000:]}")
    stats = json.loads(stats_file.read_text())
    return {"seconds": round(seconds, 2), "connections": stats["connections"],
            "channels": stats["channels"], "opened_by": stats["opened_by"]}


def floor(env: dict, alias: str, runs: int) -> float:
    """One Fabric connection (our host-key checking program) running one command."""
    code = ("import time; from fabric import Config; from tasks.program import CheckedConnection;"
            f"t=time.monotonic(); c=CheckedConnection({alias!r}, config=Config());"
            "c.run('docker compose version --short', hide=True, in_stream=False);"
            "print(time.monotonic()-t)")
    times = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True,
                             capture_output=True, text=True).stdout
        times.append(float(out.strip().splitlines()[-1]))
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.remote_deploy")
    parser.add_argument("--redeploys", type=int, default=3)
    args = parser.parse_args(argv)
    import docker

    client = docker.from_env()
    with tempfile.TemporaryDirectory() as tmp, \
            started_host(client, Path(tmp) / "home") as host:
        (Path(tmp) / "project").mkdir()
        root = copy_project(Path(tmp) / "project")
        project = f"jhb{uuid.uuid4().hex[:8]}"
        env = {**host.env(), "COMPOSE_PROJECT_NAME": project, "HUB_PORT": str(host.hub_port)}
        first = run_deploy(root, env, host.alias)
        print(f"first deploy: {first['seconds']:.1f} s, {first['channels']} channels")
        noops = [run_deploy(root, env, host.alias) for _ in range(args.redeploys)]
        floor_s = floor(env, host.alias, 5)
        subprocess.run([sys.executable, "-m", "tasks", "-H", host.alias, "down"], cwd=root,
                       env=env, capture_output=True)
    noop_s = statistics.median(n["seconds"] for n in noops)
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores",
        "remote_host_setup": host.timings,
        "first_deploy": first,
        "noop_redeploys": noops,
        "noop_median_s": noop_s,
        "floor_one_command_s": round(floor_s, 3),
        "noop_over_floor": round(noop_s / floor_s, 2),
        "targets": {"noop_s_max": 10, "channels_max": 10, "connections": 1},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "remote_deploy.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'figure':<34}{'value':>12}")
    print(f"{'first deploy (builds both images)':<34}{first['seconds']:>10.1f} s")
    print(f"{'no-op redeploy, median':<34}{noop_s:>10.1f} s")
    print(f"{'floor: connect + 1 command':<34}{floor_s:>10.2f} s")
    print(f"{'no-op / floor':<34}{noop_s / floor_s:>11.1f}x")
    print(f"{'no-op SSH connections':<34}{noops[-1]['connections']:>12}")
    print(f"{'no-op SSH channels':<34}{noops[-1]['channels']:>12}")
    print(f"written to {RESULTS / 'remote_deploy.json'}")


if __name__ == "__main__":
    main()
