"""The quick check: `inv build`, `inv up` and `deploy` stop after one look when nothing
has changed since the last `inv up`.

`inv up` ends by writing the record of what it applied (tasks/applied.py). Another
`inv build`/`inv up` first checks that record against the files, the clock and the engine;
when all agree, every step would find nothing to do, so the task says so and checks only
that the hub answers. Anything that differs, or cannot be read, sends the task through
every check and step as usual.

There is one record for this machine's engine and one per remote host. Here the engine is
asked straight on its socket: the check is meant to answer sooner than a no-op
`docker compose up -d`, and the Docker SDK's import alone takes longer than that. A remote
host's engine is asked with the SDK over the SSH connection, as every task does.
"""
import json
import socket

from invoke.exceptions import Exit

from tasks import applied
from tasks.target import engine_socket, hub_endpoint, is_remote
from tasks.upload import project_copy_current


def engine_json(c, paths) -> list | None:
    """GET each Engine API path on this machine's engine socket: its JSON, or {} for 404.
    Without the Docker SDK, whose import alone is slower than a no-op `docker compose up`.
    None when this cannot answer: a remote host, DOCKER_HOST not a local socket, an engine
    that does not answer (the caller then takes the path with every check)."""
    path = engine_socket(c)
    if path is None:
        return None
    import http.client

    class UnixConnection(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(self.timeout)
            self.sock.connect(path)

    connection = UnixConnection("localhost", timeout=5)
    answers = []
    try:
        for api_path in paths:
            connection.request("GET", api_path)
            response = connection.getresponse()
            body = response.read()
            if response.status == 404:
                answers.append({})
            elif response.status == 200:
                answers.append(json.loads(body))
            else:
                return None
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        connection.close()
    return answers


def inspect_engine(run, container_id: str, image_names) -> tuple | None:
    """(the container's inspection, or {} when gone; {image name: id, or None when gone})
    from the deployment's engine; None when the engine cannot be asked, and the caller then
    takes every step."""
    if is_remote(run.c):
        return _inspect_with_sdk(run, container_id, image_names)
    from urllib.parse import quote

    answers = engine_json(run.c, [f"/containers/{container_id}/json",
                                  *(f"/images/{quote(name, safe='/:@')}/json" for name in image_names)])
    if answers is None:
        return None
    container, *images = answers
    return container, {name: image.get("Id") for name, image in zip(image_names, images)}


def _inspect_with_sdk(run, container_id: str, image_names) -> tuple | None:
    import docker

    def inspect(method, name):
        try:
            return method(name)
        except docker.errors.NotFound:
            return {}

    try:
        client = run.client
        container = inspect(client.api.inspect_container, container_id)
        return container, {name: inspect(client.api.inspect_image, name).get("Id") for name in image_names}
    except (Exit, docker.errors.DockerException):
        return None


def unchanged_since_up(run):
    """The record of the last `inv up` when it still describes everything, else None.
    Checked once per run: `inv build up` asks twice."""
    if not run.checked:
        run.unchanged = _check_record(run)
        run.checked = True
    return run.unchanged


def _check_record(run):
    record = applied.read_record(run.record)
    if record is None:
        return None
    facts = inspect_engine(run, record.hub_container, list(record.images))
    if facts is None:
        return None
    hub, image_ids = facts
    try:
        digest = run.inputs
    except OSError:
        return None  # an input that cannot be read: the checks will say which, and why
    found = applied.differences(record, digest, hub, image_ids, applied.now_utc())
    if not found and not project_copy_current(run):
        found.append("the project's copy on the host is not the one last uploaded")
    if found:
        print(f"since the last `inv up` ({record.written}): {'; '.join(found)}; checking every step")
        return None
    return record


def _say_unchanged(run, record) -> None:
    if run.said_unchanged:
        return
    run.said_unchanged = True
    print(f"nothing changed since the last `inv up` ({record.written}): settings, userlist, "
          "secrets, hub/, notebook/, images, certificate and hub container are as it left them")


def quick_build(run) -> bool:
    record = unchanged_since_up(run)
    if record is None:
        return False
    _say_unchanged(run, record)
    for name, image in list(record.images.items())[:2]:
        print(f"image {name}: unchanged ({image[7:19]})")
    return True


def quick_up(run) -> bool:
    """True when the hub the record names still answers with its certificate."""
    import http.client

    from tasks.probe import ProbeError, get_hub_api

    record = unchanged_since_up(run)
    if record is None:
        return False
    try:
        with hub_endpoint(run.c, record.port) as endpoint:
            status, body = get_hub_api(endpoint, record.cert_sha256)
        version = json.loads(body).get("version", "?") if status == 200 else None
    except (ProbeError, OSError, http.client.HTTPException, ValueError) as error:
        status, version = f"no answer ({error})", None
    if version is None:
        print(f"the hub does not answer as the last `inv up` left it ({status}); checking every step")
        run.unchanged = None
        return False
    _say_unchanged(run, record)
    print(f"JupyterHub {version} answers at {record.url} ({record.login})")
    return True


def record_applied(ready, url: str, login: str) -> None:
    """Keep what this `inv up` applied, for the quick check of the next `inv build`/`inv up`:
    the inputs as its checks read them, and only if nobody changed them meanwhile."""
    from tasks.certs import RENEW_BEFORE
    from tasks.checks import hub_container
    from tasks.images import base_in_use, image_id, is_project_image, server_image
    from tasks.profileimages import profile_image_names

    run, settings = ready.run, ready.settings
    # `inv build` pulls an image it does not build, to get its updates: no quick path then.
    if not is_project_image(settings, ready.model) or (ready.profiles and ready.profiles.pulls):
        return
    if run.inputs_now() != ready.inputs:
        print("inputs changed while this ran: the next `inv build`/`inv up` takes every step")
        return
    hub = hub_container(run.client, settings.project)
    servers_run = server_image(settings, ready.model)
    names = [ready.model.hub_image, servers_run, base_in_use(run.client, settings.base_image),
             *profile_image_names(ready.profiles, settings.project, servers_run)]
    images = {name: image_id(run.client, name) for name in names if name}
    if hub is None or None in images.values():
        return
    applied.write_record(run.record, applied.Applied(
        inputs=ready.inputs,
        written=applied.now_utc().isoformat(timespec="seconds"),
        hub_container=hub.id, images=images, cert_sha256=ready.cert.sha256,
        renew_from=(ready.cert.not_after - RENEW_BEFORE).isoformat(),
        port=settings.port, url=url, login=login,
    ))
