"""The record of the last `inv up` (tasks/applied.py) and the quick check against it
(tasks/quick.py), and the engine query the check uses (quick.engine_json) against a real
HTTP server on a Unix socket."""
import http.server
import json
import os
import socketserver
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from invoke import Config, Context

from tasks import applied, quick
from tasks.quick import engine_json
from tasks.run import Run
from tasks.target import applied_record

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
HUB_IMAGE, NB_IMAGE, BASE = "hub:latest", "nb:latest", "base:bookworm"
IDS = {HUB_IMAGE: "sha256:" + "a" * 64, NB_IMAGE: "sha256:" + "b" * 64, BASE: "sha256:" + "c" * 64}


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    for name, text in {"docker-compose.yml": "services: {}\n", ".env": "HUB_PORT=443\n",
                       "userlist": "admin admin\n", "hub/Dockerfile": "FROM base\n",
                       "notebook/Dockerfile": "FROM base\n", "secrets/jupyterhub.crt": "cert\n"}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    code = tmp_path / "code"
    code.mkdir()
    (code / "lifecycle.py").write_text("# tool\n")
    return root, code


def digest(project, environ=None, host="hub.example.org"):
    root, code = project
    return applied.inputs_digest(root, environ or {}, host, "/srv/project", code=[code])


CHANGES = {
    "compose file": lambda root, code: (root / "docker-compose.yml").write_text("services: {x: 1}\n"),
    ".env": lambda root, code: (root / ".env").write_text("HUB_PORT=8443\n"),
    "userlist": lambda root, code: (root / "userlist").write_text("admin admin\nbob\n"),
    "a new secret": lambda root, code: (root / "secrets" / "oauth.env").write_text("X=1\n"),
    "a secret's mode": lambda root, code: (root / "secrets" / "jupyterhub.crt").chmod(
        (root / "secrets" / "jupyterhub.crt").stat().st_mode ^ 0o004),
    "hub/": lambda root, code: (root / "hub" / "Dockerfile").write_text("FROM other\n"),
    "notebook/ new file": lambda root, code: (root / "notebook" / "extra.txt").write_text("x"),
    "a removed file": lambda root, code: (root / "userlist").unlink(),
    "the tool's code": lambda root, code: (code / "lifecycle.py").write_text("# tool 2\n"),
    "a renamed file": lambda root, code: (root / "hub" / "Dockerfile").rename(root / "hub" / "Dockerfile2"),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_every_input_changes_the_digest(project, change):
    before = digest(project)
    CHANGES[change](*project)
    assert digest(project) != before


def test_the_digest_is_stable_and_ignores_bytecode(project):
    root, code = project
    before = digest(project)
    (code / "__pycache__").mkdir()
    (code / "__pycache__" / "lifecycle.cpython-311.pyc").write_bytes(b"\0")
    (root / "hub" / "x.pyc").write_bytes(b"\0")
    assert digest(project) == before == digest(project)


@pytest.mark.parametrize("key", ["HUB_PORT", "COMPOSE_PROJECT_NAME", "GITHUB_CLIENT_SECRET", "DOCKER_HOST"])
def test_shell_overrides_and_the_host_name_change_the_digest(project, key):
    before = digest(project)
    assert digest(project, {key: "x"}) != before
    assert digest(project, {key: ""}) != before  # set but empty is not unset
    assert digest(project, host="other.example.org") != before
    root, code = project
    assert applied.inputs_digest(root, {}, "hub.example.org", "/srv/other", code=[code]) != before
    assert digest(project, {"UNRELATED": "x"}) == before


def record(**changes):
    base = applied.Applied(
        inputs="d" * 64, written="2026-11-26T11:00:00+00:00", hub_container="e" * 64,
        images=dict(IDS), cert_sha256="f" * 64, renew_from="2027-10-27T00:00:00+00:00",
        port=443, url="https://hub.example.org/", login="admins: admin; passwords in x")
    return replace(base, **changes)


def hub(running=True, health="healthy", image=HUB_IMAGE, status="running"):
    return {"Id": "e" * 64, "Image": IDS[HUB_IMAGE], "Config": {"Image": image},
            "State": {"Running": running, "Status": status, "Restarting": False,
                      "Health": {"Status": health}}}


def test_nothing_differs_when_all_agree():
    assert applied.differences(record(), "d" * 64, hub(), dict(IDS), NOW) == []


@pytest.mark.parametrize("case, args, expected", [
    ("inputs", dict(digest="0" * 64), "inputs changed"),
    ("gone", dict(hub={}), "the hub container is gone"),
    ("stopped", dict(hub=hub(running=False, status="exited")), "the hub container is exited"),
    ("unhealthy", dict(hub=hub(health="unhealthy")), "the hub container is unhealthy"),
    ("starting", dict(hub=hub(health="starting")), "the hub container is starting"),
    ("other image", dict(hub={**hub(), "Image": "sha256:" + "9" * 64}), "runs another image"),
    ("image moved", dict(ids={**IDS, NB_IMAGE: "sha256:" + "1" * 64}), f"image {NB_IMAGE} changed"),
    ("image gone", dict(ids={**IDS, BASE: None}), f"image {BASE} changed"),
    ("renewal", dict(now=datetime(2027, 10, 27, tzinfo=timezone.utc)), "due for renewal"),
])
def test_each_difference_is_named(case, args, expected):
    found = applied.differences(record(), args.get("digest", "d" * 64), args.get("hub", hub()),
                                args.get("ids", dict(IDS)), args.get("now", NOW))
    assert any(expected in reason for reason in found), found


def test_the_record_round_trips_and_bad_records_are_ignored(tmp_path):
    path = tmp_path / ".state" / "applied.json"
    assert applied.read_record(path) is None
    applied.write_record(path, record())
    assert applied.read_record(path) == record()
    assert not list(path.parent.glob("*.partial"))
    for text in ("not json", json.dumps({"format": 99}), json.dumps({"format": 1, "x": 1}), "[]"):
        path.write_text(text)
        assert applied.read_record(path) is None
    applied.forget(path)
    applied.forget(path)  # twice: nothing to forget is fine
    assert not path.exists()


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def fake_engine(tmp_path, monkeypatch):
    """An HTTP server on a Unix socket answering like the engine's inspect endpoints."""
    answers = {"/containers/abc/json": (200, {"Id": "abc"}), "/images/hub:latest/json": (200, {"Id": "i"}),
               "/broken/json": (500, {"message": "boom"})}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            status, body = answers.get(self.path, (404, {"message": "no such"}))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    path = str(tmp_path / "engine.sock")
    server = UnixHTTPServer(path, Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    yield path
    server.shutdown()
    server.server_close()


def test_engine_json_reads_several_paths_on_one_connection(fake_engine):
    got = engine_json(Context(), ["/containers/abc/json", "/images/hub:latest/json", "/nothing/json"])
    assert got == [{"Id": "abc"}, {"Id": "i"}, {}]


def test_engine_json_gives_up_rather_than_guess(fake_engine, monkeypatch, tmp_path):
    assert engine_json(Context(), ["/containers/abc/json", "/broken/json"]) is None
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    assert engine_json(Context(), ["/containers/abc/json"]) is None
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    assert engine_json(Context(), ["/containers/abc/json"]) is None


def test_each_engine_has_its_own_record(tmp_path):
    config = Config(overrides={"project_dir": str(tmp_path)})
    assert applied_record(Context(config)) == tmp_path / ".state" / "applied.json"

    class Remote(Context):
        host, client, user, port = "hub.example.org", object(), "op", 2222

    assert applied_record(Remote(config)) == tmp_path / ".state" / "applied-op_hub.example.org_2222.json"
    assert engine_json(Remote(config), ["/containers/abc/json"]) is None  # the SDK's work there


BUILD = {"context": "/srv/project/hub", "dockerfile": "Dockerfile", "args": {"BASE_IMAGE": "debian:bookworm-slim"},
         "labels": {"org.jupyterhub-deploy.role": "hub-image"}}


def test_an_image_is_rebuilt_only_when_its_own_inputs_change(tmp_path):
    from tasks.images import build_inputs

    root = tmp_path
    for name in ("hub/Dockerfile", "notebook/Dockerfile"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    hub = build_inputs(root, "hub", BUILD, "sha256:base1")
    assert hub and build_inputs(root, "hub", dict(BUILD), "sha256:base1") == hub
    (root / "notebook" / "Dockerfile").write_text("changed")
    assert build_inputs(root, "hub", BUILD, "sha256:base1") == hub  # the other image's folder
    assert build_inputs(root, "hub", BUILD, "sha256:base2") != hub  # a new base
    other_args = {**BUILD, "args": {"BASE_IMAGE": "debian:trixie-slim", "EXTRA": "1"}}
    assert build_inputs(root, "hub", other_args, "sha256:base1") != hub  # build arguments
    (root / "hub" / "hubauth.py").write_text("x")  # a new file in the image's folder
    assert build_inputs(root, "hub", BUILD, "sha256:base1") != hub


def test_an_image_built_from_elsewhere_is_always_built(tmp_path):
    from tasks.images import build_inputs

    assert build_inputs(tmp_path, "hub", {**BUILD, "context": "/srv/elsewhere"}, "sha256:b") is None
    assert build_inputs(tmp_path, "hub", {}, "sha256:b") is None


@pytest.mark.parametrize("field, value", [
    ("renew_from", "2027-10-27T00:00:00"),       # no time zone: could not be compared
    ("renew_from", "soon"),
    ("hub_container", "abc"),
    ("inputs", 42),
    ("images", {"hub:latest": "latest"}),
    ("images", {}),
    ("images", ["hub:latest"]),
    ("port", "443"),
    ("port", True),
    ("cert_sha256", None),
])
def test_a_record_not_exactly_as_written_is_no_record(tmp_path, field, value):
    path = tmp_path / "applied.json"
    applied.write_record(path, record())
    data = json.loads(path.read_text())
    data[field] = value
    path.write_text(json.dumps(data))
    assert applied.read_record(path) is None


def test_the_quick_check_takes_every_step_rather_than_fail(tmp_path, monkeypatch, capsys):
    """What the check cannot read or ask sends the task through every step, never a traceback."""
    c = Context(Config(overrides={"project_dir": str(tmp_path)}))
    applied.write_record(applied_record(c), record())
    hub_ok = (hub(), dict(IDS))
    monkeypatch.setattr(quick, "inspect_engine", lambda run, container, images: None)
    assert quick._check_record(Run(c)) is None  # the engine cannot be asked

    def unreadable(*args):
        raise PermissionError(13, "Permission denied", "secrets/jupyterhub.key")

    monkeypatch.setattr(quick, "inspect_engine", lambda run, container, images: hub_ok)
    monkeypatch.setattr(applied, "inputs_digest", unreadable)
    assert quick._check_record(Run(c)) is None  # an input cannot be read

    monkeypatch.setattr(applied, "inputs_digest", lambda *args: "d" * 64)
    monkeypatch.setattr(applied, "now_utc", lambda: NOW)
    assert quick._check_record(Run(c)) == record()  # everything agrees
    monkeypatch.setattr(quick, "project_copy_current", lambda run: False)
    assert quick._check_record(Run(c)) is None
    assert "the project's copy on the host is not the one last uploaded" in capsys.readouterr().out


def test_the_check_is_kept_once_per_engine(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(quick, "_check_record", lambda run: asked.append(run.record) or None)
    config = Config(overrides={"project_dir": str(tmp_path)})  # one command line's, shared

    class Remote(Context):
        client, user, port = object(), "op", 22

        def __init__(self, host):
            super().__init__(config)
            self._set(host=host)  # as a Connection keeps it: not in the shared config

    for c in (Remote("a.example.org"), Remote("b.example.org"), Remote("a.example.org")):
        quick.unchanged_since_up(Run.of(c))
    assert [p.name for p in asked] == ["applied-op_a.example.org_22.json", "applied-op_b.example.org_22.json"]


def test_inputs_changed_during_the_run_leave_no_record(tmp_path, monkeypatch, capsys):
    """An edit made while `inv up` ran (a name taken out of userlist, say) was not applied:
    the run must not record it as applied, or the next run would skip it."""
    from types import SimpleNamespace

    from tasks import lifecycle

    c = Context(Config(overrides={"project_dir": str(tmp_path)}))
    run = Run(c)
    run.settings = SimpleNamespace(notebook_image="nb:latest", base_image="base", project="p", port=443)
    run.client = object()
    ready = lifecycle.Ready(run=run, users=None,
                            model=SimpleNamespace(notebook_build_image="nb:latest", hub_image="hub"),
                            cert_names=["hub"], cert=None, inputs="a" * 64)
    monkeypatch.setattr(Run, "inputs_now", lambda run: "b" * 64)
    quick.record_applied(ready, "https://hub/", "admins: a")
    assert not applied_record(c).exists()
    assert "inputs changed while this ran" in capsys.readouterr().out


def test_a_run_works_the_inputs_out_once_until_a_step_changes_secrets(project, monkeypatch):
    """The digest and the upload are made once per run; a step that writes secrets/ (which
    both hold) makes them again, a step that finds nothing to do does not."""
    root, code = project
    made = []
    digest_of = applied.inputs_digest
    monkeypatch.setattr(applied, "inputs_digest",
                        lambda *args: made.append("digest") or digest_of(*args, code=[code]))
    run = Run(Context(Config(overrides={"project_dir": str(root)})))
    run.ca_file = ""  # no CA bundle travels with the files
    first, sent = run.inputs, run.bundle
    assert run.inputs == first and run.bundle is sent and made == ["digest"]
    with run.writing_secrets():
        pass  # every file as it was: nothing to work out again
    assert run.inputs == first and run.bundle is sent and made == ["digest"]
    with run.writing_secrets():
        (root / "secrets" / "initial-passwords").write_text("admin pw\n")
    assert run.inputs != first and run.bundle.digest != sent.digest and len(made) == 2
    second = run.inputs
    with run.writing_secrets():
        (root / "secrets" / "initial-passwords").chmod(0o600)  # a mode is an input too
    assert run.inputs != second and len(made) == 3
