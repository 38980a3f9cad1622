"""The deployment's life: build, up, down, status, logs, and the certificate and image steps.

Each task checks every input first (settings, userlist, certificate, engine, compose),
then runs idempotent ensure_* steps that say what they did or that nothing was needed.
Heavy modules (Docker SDK, cryptography) are imported inside the tasks so `inv --list` is quick.
"""
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from invoke import task
from invoke.exceptions import Exit

from tasks.project import compose_env
from tasks.run import Run
from tasks.target import (build_ca_file, command_line, compose, given_host, host_name,
                          hub_endpoint, is_remote)


@dataclass(frozen=True)
class Ready:
    """Everything a task needs once the inputs have been checked."""
    run: Run           # the deployment on this engine: settings, client, record...
    users: object      # userlist.Users
    model: object      # project.Model
    cert_names: list
    cert: object       # certs.CertInfo of the certificate the hub serves
    inputs: str        # applied.inputs_digest() once the checks and their files are done
    profiles: object = None  # profiles.Profiles as checked against this host, or None

    @property
    def root(self) -> Path:
        return self.run.root

    @property
    def settings(self):
        return self.run.settings

    @property
    def client(self):
        return self.run.client


def checked_run(c, *task, would: str = "change the deployment") -> Run:
    """The run of c's engine once secrets/ is known to be private: the first check of every
    task that reads or writes secrets/, before even the quick check. `task` and `would` say
    what the task is and does, for its refusal of -R/--dry (tasks/run.py)."""
    from tasks.secretfiles import require_private

    run = Run.of(c, *task, would=would)
    require_private(run.root)
    return run


@contextmanager
def holding(run: Run, *task: str):
    """The deployment's operation lock (tasks/locks.py) while the block runs: one task that
    changes the deployment at a time, from this machine or any other; a second is refused
    with a message naming the first."""
    from tasks.locks import operation
    from tasks.target import command_line, given_host, is_remote

    where = given_host(run.c) if is_remote(run.c) else ""
    with operation(run.client, run.settings.project, f"`{command_line(run.c, *task)}`", where):
        yield


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


def preflight(run: Run, starting: bool = False) -> Ready:
    """Check every input before anything is changed; then prepare the files the hub reads
    (certificate, initial passwords) and give a remote host its copy of the project."""
    from tasks.access import ensure_login_files
    from tasks.accounts import PASSWORDS_FILE, ensure_initial_passwords
    from tasks.acmecert import check_acme, ensure_hub_ca_file
    from tasks.checks import require_compose, require_limits_fit, require_port_free
    from tasks.oauth import check_login
    from tasks.profilehost import check_on_host
    from tasks.profiles import load_profiles
    from tasks.project import read_model
    from tasks.upload import sync_project
    from tasks.userlist import load_userlist

    c, root, settings = run.c, run.root, run.settings
    users = load_userlist(root)
    profiles = load_profiles(root, users, settings.limits)
    names, plan = plan_certificate(c, root, settings)
    # The callback may name any name the hub is served under: ACME_DOMAIN's too.
    oauth_app = check_login(root, settings, [*names, *filter(None, [settings.acme.domain])])
    run.ca_file  # noqa: B018  (checked here: a BUILD_CA_BUNDLE that names no file stops the task)
    client = run.client
    require_limits_fit(client, settings.limits)
    if profiles is not None:
        profiles, warning = check_on_host(c, client, profiles, run.swarm)
        if warning:
            print(f"warning: {warning}")
    require_compose(c)
    if starting:
        require_port_free(c, client, settings.project, settings.port)
    check_acme(c, root, settings.acme, starting, client, settings.project)
    # Checked. What follows writes only files the record's digest covers: a refused run
    # (an image missing, say) leaves the record as it was; begin_changes drops it.
    with run.writing_secrets():
        cert = ensure_certificate(c, root, settings, (names, plan))
        added, removed = ensure_initial_passwords(root / "secrets", users.everyone)
        if added:
            print(f"initial passwords for {', '.join(added)}: in secrets/{PASSWORDS_FILE} (mode 0600)")
        if removed:
            print(f"initial passwords: removed the line{'s' if len(removed) > 1 else ''} of "
                  f"{', '.join(removed)} (no longer in userlist)")
        print(ensure_login_files(root / "secrets", oauth_app))
        acme_ca = ensure_hub_ca_file(root / "secrets", settings.acme)
        if acme_ca:
            print(acme_ca)
    synced = sync_project(run)
    if synced:
        print(synced)
    model = read_model(c, compose_env(settings))
    return Ready(run, users, model, names, cert, run.inputs, profiles)


def begin_changes(ready: Ready) -> None:
    """Called as the first step that changes the engine begins: the record of the last
    `inv up` no longer holds until this run's `inv up` writes it again."""
    from tasks import applied

    applied.forget(ready.run.record)


def ensure_network_and_volumes(ready: Ready) -> None:
    from tasks.names import labels
    from tasks.resources import ensure_network, ensure_volume

    project = ready.settings.project
    print(ensure_network(ready.client, ready.model.network, labels(project, "network"),
                         swarm=ready.run.swarm is not None))
    print(ensure_volume(ready.client, ready.model.hub_volume, labels(project, "hub-data")))


def ensure_certificate(c, root: Path, settings, planned=None):
    """Create or renew our self-signed certificate when needed (`planned`: the (names, plan)
    the checks already made); returns its CertInfo."""
    from tasks import certs

    names, plan = planned or plan_certificate(c, root, settings)
    secrets_dir = root / "secrets"
    # With ACME on, the self-signed pair is what the hub serves until the CA's arrives.
    what = "self-signed fallback" if settings.acme.on else "certificate"
    if plan.action in ("create", "renew"):
        cert_pem, key_pem = certs.make_self_signed(names, datetime.now(timezone.utc))
        certs.write_pair(secrets_dir, cert_pem, key_pem)
        print(f"{what}: {'made' if plan.action == 'create' else 'renewed'} ({plan.reason}); "
              f"self-signed for {', '.join(names)}, in secrets/{certs.CERT_FILE}")
    else:
        print(f"{what}: kept ({plan.reason})")
    try:
        return certs.inspect_pair(*certs.read_pair(secrets_dir))
    except certs.CertError as error:
        raise _cert_error(error)


@task(help={"renew": "with ACME_DOMAIN: have the hub get a new certificate now"})
def cert(c, renew=False):
    """Make or renew the self-signed TLS certificate, check yours, or say where the hub's came from."""
    from tasks.acmestatus import report_certificate

    run = checked_run(c, "cert", would="make or renew the self-signed certificate in secrets/")
    ensure_certificate(run.c, run.root, run.settings)
    report_certificate(run, renew)


def _build_env(ready: Ready, pull: bool = False) -> dict:
    from tasks.images import ensure_base_image

    c = ready.run.c
    base = ensure_base_image(c, ready.client, ready.settings.base_image, pull_first=pull)
    ca_file = build_ca_file(c, ready.run.ca_file)
    return compose_env(ready.settings, base_image=base, ca_file=ca_file)


@task(name="notebook-image")
def notebook_image(c):
    """Build the user image from notebook/, or pull DOCKER_NOTEBOOK_IMAGE if it names another."""
    from tasks.images import ensure_notebook_image, is_project_image

    run = checked_run(c, "notebook-image", would="build the user image, or pull the one "
                      "DOCKER_NOTEBOOK_IMAGE names")
    with holding(run, "notebook-image"):
        ready = preflight(run)
        begin_changes(ready)
        built = is_project_image(ready.settings, ready.model)
        env = _build_env(ready) if built else compose_env(ready.settings)
        print(ensure_notebook_image(run.c, ready.client, ready.root, ready.settings, ready.model,
                                    env))


def build_steps(ready: Ready, pull: bool = False) -> None:
    from tasks.images import ensure_hub_image, ensure_notebook_image, server_image
    from tasks.profileimages import ensure_profile_images

    c = ready.run.c
    begin_changes(ready)
    ensure_network_and_volumes(ready)
    env = _build_env(ready, pull)
    print(ensure_hub_image(c, ready.client, ready.root, ready.model, env))
    print(ensure_notebook_image(c, ready.client, ready.root, ready.settings, ready.model, env))
    for line in ensure_profile_images(c, ready.client, ready.root, ready.profiles,
                                      ready.settings.project,
                                      server_image(ready.settings, ready.model), env):
        print(line)


def up_steps(ready: Ready, after_build: bool = False) -> Ready:
    """Start the hub and wait until it answers; returns `ready` with the certificate it serves."""
    from tasks.access import revoke_removed_users
    from tasks.acmestatus import served_by_hub
    from tasks.checks import hub_container, require_images
    from tasks.images import server_image
    from tasks.names import user_volume
    from tasks.probe import ProbeError, wait_for_hub
    from tasks.profileimages import ensure_profile_images
    from tasks.quick import record_applied
    from tasks.shares import ensure_shares

    c, settings, info = ready.run.c, ready.settings, ready.cert
    servers_run = server_image(settings, ready.model)
    if not after_build:  # build_steps has made the images, the network and the volume
        require_images(ready.client, ready.model.hub_image, servers_run, c=c)
        begin_changes(ready)
        ensure_network_and_volumes(ready)
        if ready.profiles is not None:  # the images profiles.toml names: built or pulled
            for line in ensure_profile_images(c, ready.client, ready.root, ready.profiles,
                                              settings.project, servers_run, _build_env(ready)):
                print(line)
    for line in ensure_shares(ready.client, settings.project, ready.profiles, ready.model.hub_image):
        print(line)
    every_node = True  # on a swarm: every worker has the images (tasks/swarmnodes.py)
    if ready.run.swarm is not None:
        from tasks.swarmnodes import ensure_worker_images

        every_node = ensure_worker_images(ready, servers_run)
    before = hub_container(ready.client, settings.project)
    compose(c, "up", "--detach", "--wait", "--no-build", env=hub_env(ready))
    if settings.acme.on:  # the hub's ACME service gets the certificate: pin that one
        ready = replace(ready, cert=served_by_hub(ready, before.id if before else None))
        info = ready.cert
    try:
        with hub_endpoint(c, settings.port) as endpoint:
            hub = wait_for_hub(endpoint, info.sha256)
            print(revoke_removed_users(ready.root / "secrets", endpoint, info.sha256,
                                       ready.users, lambda name: user_volume(settings.project, name), c))
    except ProbeError as error:
        raise Exit(f"The hub did not come up: {error}. See `{command_line(c, 'logs')}`.")
    url, login = public_url(ready), login_hint(ready)
    print(f"JupyterHub {hub.get('version', '?')} answers at {url} ({login})")
    if every_node:  # else the next deploy takes every step, and sends them then
        record_applied(ready, url, login)
    return ready


def hub_env(ready: Ready) -> dict:
    """The environment compose starts the hub with: settings, users, the certificate and
    secrets it must serve (a change recreates it), the users' image and the profiles."""
    from tasks.access import secrets_fingerprint
    from tasks.images import server_image
    from tasks.profilehost import hub_env as profiles_env
    from tasks.swarmnodes import hub_env as swarm_env

    settings = ready.settings
    servers_run = server_image(settings, ready.model)
    env = compose_env(settings, users=ready.users, cert_sha256=ready.cert.sha256,
                      secrets_sha256=secrets_fingerprint(ready.root / "secrets"),
                      notebook_image=servers_run)
    env.update(profiles_env(ready.profiles, settings.project, servers_run, settings.limits.pids))
    env.update(swarm_env(ready.run.swarm))
    return env


def public_url(ready: Ready) -> str:
    port, host = ready.settings.port, ready.settings.acme.domain or ready.cert_names[0]
    return f"https://{host}{'' if port == 443 else f':{port}'}/"


def login_hint(ready: Ready) -> str:
    from tasks.accounts import PASSWORDS_FILE

    how = ("log in with GitHub" if ready.settings.authenticator == "github"
           else f"passwords in secrets/{PASSWORDS_FILE}")
    return f"admins: {', '.join(ready.users.admins)}; {how}"


PULL_HELP = {"pull": "try to pull a newer base image first (otherwise the one here is used)"}


@task(help=PULL_HELP)
def build(c, pull=False):
    """Create the network, volumes and certificate, and build the hub and user images."""
    from tasks.quick import quick_build

    run = checked_run(c, "build", would="make the certificate and passwords in secrets/ as "
                      "needed, copy the project to the host (over -H), make the network and "
                      "volumes, and build the images")
    if not pull and quick_build(run):
        return
    with holding(run, "build"):
        build_steps(preflight(run), pull)


@task
def up(c):
    """Start the hub (after `inv build`) and wait until it answers over HTTPS."""
    from tasks.quick import quick_up

    run = checked_run(c, "up", would="make the certificate and passwords in secrets/ as needed, "
                      "copy the project to the host (over -H), and start the hub")
    if quick_up(run):
        return
    with holding(run, "up"):
        up_steps(preflight(run, starting=True))


@task(help=PULL_HELP)
def deploy(c, pull=False):
    """Set up or update everything (here, or on -H host): files, images, certificate, hub."""
    from tasks.quick import quick_build, quick_up

    run = checked_run(c, "deploy", would="do what build and up do: secrets/ files, the "
                      "project's copy on the host (over -H), images, network, volumes, the hub")
    if is_remote(run.c):  # a bare Debian/Ubuntu host gets Docker first (tasks/provision.py)
        from tasks.provision import ensure_engine_on_host

        ensure_engine_on_host(run.c, given_host(run.c))
    if not pull and quick_build(run) and quick_up(run):
        return
    with holding(run, "deploy"):
        ready = preflight(run, starting=True)
        build_steps(ready, pull)
        up_steps(ready, after_build=True)


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

    run = Run.of(c, "down", would="stop every user server, then the hub")
    settings, client = run.settings, run.client
    require_compose(run.c)
    with holding(run, "down"):
        applied.forget(run.record)
        # compose did not create the user servers and would leave them holding the network.
        servers = _user_servers(client, settings.project)
        for container in servers:
            stop_and_remove(container)
        if run.swarm is not None:  # on a swarm the servers are services, on the workers
            from tasks.swarmnodes import user_services

            services = user_services(client, settings.project)
            for service in services:
                service.remove()
            servers += services
        print(f"user servers stopped: {len(servers)}")
        compose(run.c, "down", env=compose_env(settings))
