"""`python -m bench.counted [-H host] TASK...`: the tasks' own program (tasks/program.py),
counting the SSH connections and channels the run opens. Each command, Docker API stream
and tunnel opens a channel, a round trip at least: tests/remote and bench/remote_deploy.py
hold the no-op deploy to its budget with these counts.

The counts go, as JSON, to the file JUPYTERHUB_DEPLOY_SSH_STATS names: connections,
channels, and for each channel its kind and the lines of tasks/ that opened it. Run it in
the project folder with this checkout on PYTHONPATH, as `python -m tasks` would run there.
"""
import atexit
import json
import os
import traceback
from pathlib import Path

import paramiko

STATS_FILE = "JUPYTERHUB_DEPLOY_SSH_STATS"


def count(path: Path) -> dict:
    """Count every SSH connection (a transport starting as a client) and channel this
    process opens from now on, and write the counts to `path` when it exits."""
    stats = {"connections": 0, "channels": 0, "opened_by": []}
    start_client, open_channel = paramiko.Transport.start_client, paramiko.Transport.open_channel

    def counting_start_client(self, *args, **kwargs):
        stats["connections"] += 1
        return start_client(self, *args, **kwargs)

    def counting_open_channel(self, *args, **kwargs):
        stats["channels"] += 1
        callers = [f"{f.name}:{f.lineno}" for f in traceback.extract_stack()[:-1]
                   if "/tasks/" in f.filename]
        kind = args[0] if args else kwargs.get("kind")
        stats["opened_by"].append(f"{kind} <- {' < '.join(reversed(callers[-3:]))}")
        return open_channel(self, *args, **kwargs)

    paramiko.Transport.start_client = counting_start_client
    paramiko.Transport.open_channel = counting_open_channel
    atexit.register(lambda: path.write_text(json.dumps(stats)))
    return stats


if __name__ == "__main__":
    count(Path(os.environ.get(STATS_FILE) or ".ssh-stats.json"))
    from tasks.program import program

    program.run()
