"""The deployment's life: build, up, down, status, logs, and the certificate and image steps.

Each task checks every input first (settings, userlist, certificate, engine, compose),
then runs idempotent ensure_* steps that say what they did or that nothing was needed.
Heavy modules (Docker SDK, cryptography) are imported inside the tasks so `inv --list` is quick.
"""
import shlex
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from invoke import task
from invoke.exceptions import Exit

from tasks.project import compose_env
from tasks.settings import load_settings, resolve_ca_bundle
from tasks.target import (
    applied_record, build_ca_file, compose, deploy_dir, docker_client, host_name, hub_address,
    inspect_engine, project_copy_current, project_dir, sync_project,
)


@dataclass(frozen=True)
class Ready:
    """Everything a task needs once the inputs have been checked."""
    root: Path
    settings: object   # settings.Settings
    users: object      # userlist.Users
    client: object     # docker.DockerClient
    model: object      # project.Model
    cert_names: list
    cert: object       # certs.CertInfo of the certificate the hub serves
    ca_file: str       # the CA bundle builds trust, on this machine ("" for none)
    inputs: str        # applied.inputs_digest() once the checks and their files are done


def _cert_error(error) -> Exit:
    return Exit(f"TLS certificate: {error}")


def plan_certificate(c, root: Path, settings):
    """(names, plan) for the hub's certificate; raises Exit for what only the operator can fix."""
    from tasks import certs

    try:
        names = certs.cert_names(host_name(c), settings.hostnames)
        plan = certs.plan_cert(*certs.read_pair(root / "secrets"), names, datetime.now(timezone.utc))
    except certs.CertError as error:
        raise _cert_error(error)
    return names, plan


def preflight(c, starting: bool = False) -> Ready:
    """Check every input before anything is changed; then prepare the files the hub reads
    (certificate, initial passwords) and give a remote host its copy of the project."""
    from tasks import applied
    from tasks.access import ensure_login_files
    from tasks.accounts import PASSWORDS_FILE, ensure_initial_passwords
    from tasks.checks import require_compose, require_port_free
    from tasks.oauth import check_login
    from tasks.project import read_model
    from tasks.userlist import load_userlist

    root = project_dir(c)
    settings = load_settings(root)
    users = load_userlist(root)
    names, plan = plan_certificate(c, root, settings)
    oauth_app = check_login(root, settings, names)
    ca_file = resolve_ca_bundle(settings.build_ca_bundle)
    client = docker_client(c)
    require_compose(c)
    if starting:
        require_port_free(c, client, settings.project, settings.port)
    # Checked: from here things may change. The record comes back when `inv up` succeeds.
    applied.forget(applied_record(c))
    cert = ensure_certificate(c, root, settings, (names, plan))
    added = ensure_initial_passwords(root / "secrets", users.everyone)
    if added:
        print(f"initial passwords for {', '.join(added)}: in secrets/{PASSWORDS_FILE} (mode 0600)")
    print(ensure_login_files(root / "secrets", oauth_app))
    synced = sync_project(c, ca_file)
    if synced:
        print(synced)
    model = read_model(c, compose_env(settings))
    return Ready(root, settings, users, client, model, names, cert, ca_file, inputs_now(c))


def inputs_now(c) -> str:
    """The digest of every input as it is now (tasks/applied.py)."""
    import os

    from tasks import applied

    return applied.inputs_digest(project_dir(c), os.environ, host_name(c), deploy_dir(c))


def ensure_network_and_volumes(ready: Ready) -> None:
    from tasks.names import labels
    from tasks.resources import ensure_network, ensure_volume

    project = ready.settings.project
    print(ensure_network(ready.client, ready.model.network, labels(project, "network")))
    print(ensure_volume(ready.client, ready.model.hub_volume, labels(project, "hub-data")))


def ensure_certificate(c, root: Path, settings, planned=None):
    """Create or renew our self-signed certificate when needed (`planned`: the (names, plan)
    the checks already made); returns its CertInfo."""
    from tasks import certs

    names, plan = planned or plan_certificate(c, root, settings)
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
    ensure_certificate(c, root, load_settings(root))


def _build_env(c, ready: Ready) -> dict:
    from tasks.images import ensure_base_image

    base = ensure_base_image(c, ready.client, ready.settings.base_image)
    ca_file = build_ca_file(c, ready.ca_file)
    return compose_env(ready.settings, base_image=base, ca_file=ca_file)


@task(name="notebook-image")
def notebook_image(c):
    """Build the user image from notebook/, or pull DOCKER_NOTEBOOK_IMAGE if it names another."""
    from tasks.images import ensure_notebook_image, is_project_image

    ready = preflight(c)
    env = _build_env(c, ready) if is_project_image(ready.settings, ready.model) else compose_env(ready.settings)
    print(ensure_notebook_image(c, ready.client, ready.root, ready.settings, ready.model, env))


def build_steps(c, ready: Ready) -> None:
    from tasks.images import ensure_hub_image, ensure_notebook_image

    ensure_network_and_volumes(ready)
    env = _build_env(c, ready)
    print(ensure_hub_image(c, ready.client, ready.root, ready.model, env))
    print(ensure_notebook_image(c, ready.client, ready.root, ready.settings, ready.model, env))


def up_steps(c, ready: Ready, after_build: bool = False) -> None:
    from tasks.access import revoke_removed_users, secrets_fingerprint
    from tasks.checks import require_images
    from tasks.names import user_volume
    from tasks.probe import ProbeError, wait_for_hub

    settings, info = ready.settings, ready.cert
    if not after_build:  # build_steps has made the images, the network and the volume
        require_images(ready.client, ready.model.hub_image, settings.notebook_image)
        ensure_network_and_volumes(ready)
    env = compose_env(settings, users=ready.users, cert_sha256=info.sha256,
                      secrets_sha256=secrets_fingerprint(ready.root / "secrets"))
    compose(c, "up", "--detach", "--wait", "--no-build", env=env)
    try:
        with hub_address(c, settings.port) as (host, port):
            hub = wait_for_hub(host, port, info.sha256)
            print(revoke_removed_users(ready.root / "secrets", (host, port), info.sha256,
                                       ready.users, lambda name: user_volume(settings.project, name)))
    except ProbeError as error:
        raise Exit(f"The hub did not come up: {error}")
    url, login = public_url(ready), login_hint(ready)
    print(f"JupyterHub {hub.get('version', '?')} answers at {url} ({login})")
    record_applied(c, ready, url, login)


def public_url(ready: Ready) -> str:
    port = ready.settings.port
    return f"https://{ready.cert_names[0]}{'' if port == 443 else f':{port}'}/"


def login_hint(ready: Ready) -> str:
    from tasks.accounts import PASSWORDS_FILE

    how = ("log in with GitHub" if ready.settings.authenticator == "github"
           else f"passwords in secrets/{PASSWORDS_FILE}")
    return f"admins: {', '.join(ready.users.admins)}; {how}"


def record_applied(c, ready: Ready, url: str, login: str) -> None:
    """Keep what this `inv up` applied, for the quick check of the next `inv build`/`inv up`:
    the inputs as its checks read them, and only if nobody changed them meanwhile."""
    from tasks import applied
    from tasks.certs import RENEW_BEFORE
    from tasks.checks import hub_container
    from tasks.images import base_in_use, image_id, is_project_image

    path = applied_record(c)
    settings = ready.settings
    # `inv build` pulls an image it does not build, to get its updates: no quick path then.
    if not is_project_image(settings, ready.model):
        return
    if inputs_now(c) != ready.inputs:
        print("inputs changed while this ran: the next `inv build`/`inv up` takes every step")
        return
    hub = hub_container(ready.client, settings.project)
    names = [ready.model.hub_image, settings.notebook_image, base_in_use(ready.client, settings.base_image)]
    images = {name: image_id(ready.client, name) for name in names if name}
    if hub is None or None in images.values():
        return
    applied.write_record(path, applied.Applied(
        inputs=ready.inputs,
        written=applied.now_utc().isoformat(timespec="seconds"),
        hub_container=hub.id, images=images, cert_sha256=ready.cert.sha256,
        renew_from=(ready.cert.not_after - RENEW_BEFORE).isoformat(),
        port=settings.port, url=url, login=login,
    ))


_QUICK = {}


def unchanged_since_up(c):
    """The record of the last `inv up` when it still describes everything (tasks/applied.py),
    else None. Checked once per run: `inv build up` asks twice."""
    key = str(applied_record(c))  # one per engine: `-H a,b` runs a task for each host
    if key not in _QUICK:
        _QUICK[key] = _check_record(c)
    return _QUICK[key]


def _check_record(c):
    from tasks import applied

    record = applied.read_record(applied_record(c))
    if record is None:
        return None
    facts = inspect_engine(c, record.hub_container, list(record.images))
    if facts is None:
        return None
    hub, image_ids = facts
    try:
        digest = inputs_now(c)
    except OSError:
        return None  # an input that cannot be read: the checks will say which, and why
    found = applied.differences(record, digest, hub, image_ids, applied.now_utc())
    if not found and not project_copy_current(
            c, lambda: resolve_ca_bundle(load_settings(project_dir(c)).build_ca_bundle)):
        found.append("the project's copy on the host is not the one last uploaded")
    if found:
        print(f"since the last `inv up` ({record.written}): {'; '.join(found)}; checking every step")
        return None
    return record


_SAID = set()


def _say_unchanged(record) -> None:
    if record.inputs in _SAID:
        return
    _SAID.add(record.inputs)
    print(f"nothing changed since the last `inv up` ({record.written}): settings, userlist, "
          "secrets, hub/, notebook/, images, certificate and hub container are as it left them")


def quick_build(c) -> bool:
    record = unchanged_since_up(c)
    if record is None:
        return False
    _say_unchanged(record)
    for name, image in list(record.images.items())[:2]:
        print(f"image {name}: unchanged ({image[7:19]})")
    return True


def quick_up(c) -> bool:
    """True when the hub the record names still answers with its certificate."""
    import http.client
    import json

    from tasks.probe import ProbeError, get_hub_api

    record = unchanged_since_up(c)
    if record is None:
        return False
    try:
        with hub_address(c, record.port) as (host, port):
            status, body = get_hub_api(host, port, record.cert_sha256)
        version = json.loads(body).get("version", "?") if status == 200 else None
    except (ProbeError, OSError, http.client.HTTPException, ValueError) as error:
        status, version = f"no answer ({error})", None
    if version is None:
        print(f"the hub does not answer as the last `inv up` left it ({status}); checking every step")
        _QUICK.clear()
        return False
    _say_unchanged(record)
    print(f"JupyterHub {version} answers at {record.url} ({record.login})")
    return True


@task
def build(c):
    """Create the network, volumes and certificate, and build the hub and user images."""
    if quick_build(c):
        return
    build_steps(c, preflight(c))


@task
def up(c):
    """Start the hub (after `inv build`) and wait until it answers over HTTPS."""
    if quick_up(c):
        return
    up_steps(c, preflight(c, starting=True))


@task
def deploy(c):
    """Set up or update everything (here, or on -H host): files, images, certificate, hub."""
    if quick_build(c) and quick_up(c):
        return
    ready = preflight(c, starting=True)
    build_steps(c, ready)
    up_steps(c, ready, after_build=True)


def _user_servers(client, project: str):
    from tasks.checks import labelled_containers

    return labelled_containers(client, project, "user-server")


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
    from tasks import applied
    from tasks.checks import require_compose

    settings = load_settings(project_dir(c))
    client = docker_client(c)
    require_compose(c)
    applied.forget(applied_record(c))
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
    from tasks.names import user_container
    from tasks.userlist import check_name

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
    from tasks.names import USER_LABEL
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
            with hub_address(c, settings.port) as (host, port):
                code, body = get_hub_api(host, port, info.sha256)
            import json

            version = json.loads(body).get("version") if code == 200 else f"HTTP {code}"
            print(f"hub answers on port {settings.port}: JupyterHub {version}")
        except (ProbeError, OSError) as error:
            print(f"hub does not answer on port {settings.port}: {error}")
    servers = _user_servers(client, settings.project)
    running = sorted(
        f"{ct.labels.get(USER_LABEL, ct.name)} ({ct.status})" for ct in servers
    )
    print(f"user servers: {len(running)}" + (": " + ", ".join(running) if running else ""))
