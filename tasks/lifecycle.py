"""The deployment's life: build, up, down, status, logs, and the certificate and image steps.

Each task checks every input first (settings, userlist, certificate, engine, compose),
then runs idempotent ensure_* steps that say what they did or that nothing was needed.
Heavy modules (Docker SDK, cryptography) are imported inside the tasks so `inv --list` is quick.
"""
import shlex
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from invoke import task
from invoke.exceptions import Exit

from tasks.names import PROJECT_LABEL, ROLE_LABEL, labels, user_container
from tasks.project import Model, compose_env, read_model
from tasks.settings import Settings, load_settings, resolve_ca_bundle
from tasks.target import compose, docker_client, project_dir
from tasks.userlist import Users, check_name, load_userlist


@dataclass(frozen=True)
class Ready:
    """Everything a task needs once the inputs have been checked."""
    root: Path
    settings: Settings
    users: Users
    client: object
    model: Model
    cert_names: list


def _cert_error(error) -> Exit:
    return Exit(f"TLS certificate: {error}")


def plan_certificate(root: Path, settings: Settings):
    """(names, plan) for the hub's certificate; raises Exit for what only the operator can fix."""
    from tasks import certs

    try:
        names = certs.cert_names(socket.gethostname(), settings.hostnames)
        plan = certs.plan_cert(*certs.read_pair(root / "secrets"), names, datetime.now(timezone.utc))
    except certs.CertError as error:
        raise _cert_error(error)
    return names, plan


def preflight(c) -> Ready:
    """Check every input before anything is changed."""
    root = project_dir(c)
    settings = load_settings(root)
    users = load_userlist(root)
    names, _ = plan_certificate(root, settings)
    client = docker_client(c)
    from tasks.checks import require_compose

    require_compose(c)
    model = read_model(c, compose_env(settings))
    return Ready(root, settings, users, client, model, names)


def ensure_network_and_volumes(ready: Ready) -> None:
    from tasks.resources import ensure_network, ensure_volume

    project = ready.settings.project
    print(ensure_network(ready.client, ready.model.network, labels(project, "network")))
    print(ensure_volume(ready.client, ready.model.hub_volume, labels(project, "hub-data")))


def ensure_certificate(root: Path, settings: Settings):
    """Create or renew our self-signed certificate when needed; returns its CertInfo."""
    from tasks import certs

    names, plan = plan_certificate(root, settings)
    secrets_dir = root / "secrets"
    if plan.action in ("create", "renew"):
        cert_pem, key_pem = certs.make_self_signed(names, datetime.now(timezone.utc))
        certs.write_pair(secrets_dir, cert_pem, key_pem)
        print(f"certificate: {'made' if plan.action == 'create' else 'renewed'} ({plan.reason}); "
              f"self-signed for {', '.join(names)}, in secrets/{certs.CERT_FILE}")
    else:
        print(f"certificate: kept ({plan.reason})")
    try:
        return certs.inspect_pair(*certs.read_pair(secrets_dir))
    except certs.CertError as error:
        raise _cert_error(error)


@task
def cert(c):
    """Make or renew the self-signed TLS certificate, or check the one you put in secrets/."""
    root = project_dir(c)
    ensure_certificate(root, load_settings(root))


def _build_env(c, ready: Ready) -> dict:
    from tasks.images import ensure_base_image

    base = ensure_base_image(c, ready.client, ready.settings.base_image)
    return compose_env(
        ready.settings, base_image=base, ca_file=resolve_ca_bundle(ready.settings.build_ca_bundle)
    )


@task(name="notebook-image")
def notebook_image(c):
    """Build the user image from notebook/, or pull DOCKER_NOTEBOOK_IMAGE if it names another."""
    from tasks.images import ensure_notebook_image, is_project_image

    ready = preflight(c)
    env = _build_env(c, ready) if is_project_image(ready.settings, ready.model) else compose_env(ready.settings)
    print(ensure_notebook_image(c, ready.client, ready.settings, ready.model, env))


@task
def build(c):
    """Create the network, volumes and certificate, and build the hub and user images."""
    from tasks.images import ensure_hub_image, ensure_notebook_image

    ready = preflight(c)
    ensure_network_and_volumes(ready)
    ensure_certificate(ready.root, ready.settings)
    env = _build_env(c, ready)
    print(ensure_hub_image(c, ready.client, ready.model, env))
    print(ensure_notebook_image(c, ready.client, ready.settings, ready.model, env))


@task
def up(c):
    """Start the hub (after `inv build`) and wait until it answers over HTTPS."""
    from tasks.accounts import PASSWORDS_FILE, ensure_initial_passwords
    from tasks.checks import require_images, require_port_free
    from tasks.probe import ProbeError, wait_for_hub

    ready = preflight(c)
    settings = ready.settings
    require_images(ready.client, ready.model.hub_image, settings.notebook_image)
    require_port_free(ready.client, settings.project, settings.port)
    ensure_network_and_volumes(ready)
    info = ensure_certificate(ready.root, settings)
    added = ensure_initial_passwords(ready.root / "secrets", ready.users.everyone)
    if added:
        print(f"initial passwords for {', '.join(added)}: in secrets/{PASSWORDS_FILE} (mode 0600)")
    env = compose_env(settings, users=ready.users, cert_sha256=info.sha256)
    compose(c, "up", "--detach", "--wait", "--no-build", env=env)
    try:
        hub = wait_for_hub("127.0.0.1", settings.port, info.sha256)
    except ProbeError as error:
        raise Exit(f"The hub did not come up: {error}")
    host = ready.cert_names[0]
    port = "" if settings.port == 443 else f":{settings.port}"
    print(f"JupyterHub {hub.get('version', '?')} answers at https://{host}{port}/ "
          f"(admins: {', '.join(ready.users.admins)}; passwords in secrets/{PASSWORDS_FILE})")


def _user_servers(client, project: str):
    return client.containers.list(
        all=True, filters={"label": [f"{PROJECT_LABEL}={project}", f"{ROLE_LABEL}=user-server"]}
    )


def stop_and_remove(container) -> None:
    """Stop gracefully, then remove; the engine may already be removing it (AutoRemove)."""
    import docker

    try:
        container.stop(timeout=10)
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as error:
        if error.status_code != 409:  # 409: removal already in progress
            raise


@task
def down(c):
    """Stop the hub and every user server; all volumes (everyone's work) stay."""
    from tasks.checks import require_compose

    settings = load_settings(project_dir(c))
    client = docker_client(c)
    require_compose(c)
    # compose did not create the user servers and would leave them holding the network.
    servers = _user_servers(client, settings.project)
    for container in servers:
        stop_and_remove(container)
    print(f"user servers stopped: {len(servers)}")
    compose(c, "down", env=compose_env(settings))


@task(help={"user": "show this user's server instead of the hub",
            "follow": "keep printing new lines", "tail": "how many lines to start with"})
def logs(c, user="", follow=False, tail=200):
    """Show the hub's log, or a user's server log with --user NAME."""
    settings = load_settings(project_dir(c))
    follow_flag = ["--follow"] if follow else []
    if user:
        check_name(user)
        c.run(shlex.join(["docker", "logs", "--tail", str(int(tail)), *follow_flag,
                          user_container(settings.project, user)]), warn=True)
    else:
        compose(c, "logs", "--tail", str(int(tail)), *follow_flag, "hub", env=compose_env(settings))


@task
def status(c):
    """Show what runs: the hub, its version, users with servers, and certificate expiry."""
    from tasks import certs
    from tasks.checks import hub_container
    from tasks.probe import ProbeError, get_hub_api

    root = project_dir(c)
    settings = load_settings(root)
    client = docker_client(c)
    hub = hub_container(client, settings.project)
    print(f"hub container: {hub.name + ' ' + hub.status if hub else 'none (run `inv up`)'}")
    try:
        info = certs.inspect_pair(*certs.read_pair(root / "secrets"))
        days = (info.not_after - datetime.now(timezone.utc)).days
        print(f"certificate: valid until {info.not_after.date()} ({days} days), {', '.join(info.names)}")
    except (certs.CertError, TypeError):
        info = None
        print("certificate: none or unreadable (run `inv cert`)")
    if hub is not None and hub.status == "running" and info is not None:
        try:
            code, body = get_hub_api("127.0.0.1", settings.port, info.sha256)
            import json

            version = json.loads(body).get("version") if code == 200 else f"HTTP {code}"
            print(f"hub answers on port {settings.port}: JupyterHub {version}")
        except (ProbeError, OSError) as error:
            print(f"hub does not answer on port {settings.port}: {error}")
    servers = _user_servers(client, settings.project)
    running = sorted(
        f"{ct.labels.get('org.jupyterhub-deploy.user', ct.name)} ({ct.status})" for ct in servers
    )
    print(f"user servers: {len(running)}" + (": " + ", ".join(running) if running else ""))
