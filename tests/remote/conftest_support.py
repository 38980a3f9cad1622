"""A copy of the project deployed to the remote test host with `python -m tasks -H jhremote`,
run through bench/counted.py, which counts the SSH connections and channels it opens."""
import json
import uuid
from dataclasses import dataclass

from deployment_support import REPO, Deployment, copy_project


@dataclass
class RemoteDeployment(Deployment):
    first_deploy_output: str = ""  # what the first `deploy` printed, for the tests after it

    def full_env(self) -> dict:
        import os

        return {**os.environ, **self.env}

    def ssh_stats(self) -> dict:
        return json.loads((self.root / ".ssh-stats.json").read_text())


def copy_project_for_remote(root, remote_host) -> RemoteDeployment:
    copy_project(root)
    project = f"jhr{uuid.uuid4().hex[:8]}"
    env = {**remote_host.env(), "COMPOSE_PROJECT_NAME": project,
           "HUB_PORT": str(remote_host.hub_port),
           "JUPYTERHUB_DEPLOY_SSH_STATS": str(root / ".ssh-stats.json"),
           # bench/ from this checkout; the copy's own tasks/ come first (the working folder).
           "PYTHONPATH": str(REPO)}
    return RemoteDeployment(root=root, project=project, port=remote_host.hub_port, env=env,
                            program=("-m", "bench.counted", "-H", remote_host.alias))
