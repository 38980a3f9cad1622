"""The one place that knows where the deployment runs.

Tasks get a Docker client and run compose through these functions and never ask
whether they run locally; the remote host support plugs in here.
"""
import shlex
from pathlib import Path

from invoke.exceptions import Exit

ROOT = Path(__file__).resolve().parent.parent


def project_dir(c) -> Path:
    """The folder holding docker-compose.yml, .env, userlist and secrets/."""
    return Path(c.config.get("project_dir") or ROOT)


def docker_client(c):
    """A Docker SDK client for the engine the deployment runs on, checked to answer."""
    import docker  # imported here: `inv --list` should not pay for it

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        raise Exit(
            "Cannot reach the Docker Engine "
            f"({error}).\nStart it (`sudo systemctl start docker`, or run bin/setup, which "
            "installs and starts it on Debian/Ubuntu), and check that you may use it "
            "(root, or a member of the docker group)."
        )
    return client


def compose(c, *args, env=None, **run_kwargs):
    """Run `docker compose ARGS` in the project folder; argv only, never a shell string from input."""
    with c.cd(str(project_dir(c))):
        return c.run(shlex.join(["docker", "compose", *args]), env=env or {}, **run_kwargs)
