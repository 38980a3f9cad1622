"""Tasks on a mocked context, asserting the exact commands they run.

What each mock sees: invoke's MockContext records the command as the task passed it
(`c.cd` would only set `c.cwd`: the "cd DIR && " prefix is the real runner's work), while
Fabric's mocked SSH channel receives the whole line the remote shell runs, and Fabric
would inline an `env=` as an unquoted "export K=V && " prefix. The seam tests below hold
both to one line.
"""
import json
import os
import re
import shlex
import subprocess
import sys
from functools import partial
from pathlib import Path
from unittest.mock import Mock

import docker.errors
import pytest
from fabric import Config as FabricConfig, Connection
from fabric.testing.base import Command, MockRemote, Session
from invoke import Config, MockContext, Result
from invoke.exceptions import Exit, UnexpectedExit

from tasks import images, lifecycle, run as run_module, status
from tasks.checks import require_compose
from tasks.project import compose_env
from tasks.settings import Settings
from tasks.target import compose, project_dir

LOCAL_DIR = "/home/op/jupyterhub-deploy"
REMOTE_DIR = "/srv/jupyterhub-deploy"


class InvokeSeam:
    """An invoke MockContext recording each line as invoke's local runner would run it."""

    kind, where = "invoke", LOCAL_DIR

    def __init__(self):
        self.lines = []

    def context(self, *answers, **config):
        config = {"project_dir": LOCAL_DIR, "remote_dir": REMOTE_DIR, **config}
        c = MockContext(config=Config(overrides=config),
                        run=[Result(stdout=out, exited=code) for out, code in answers],
                        repeat=False)
        answer = c.run

        def run(command, **kwargs):
            self.lines.append(f"cd {c.cwd} && {command}" if c.cwd else command)
            return answer(command, **kwargs)

        c._set("run", Mock(side_effect=run))
        return c

    def close(self):
        pass


class FabricSeam:
    """A fabric Connection over a mocked SSH client, recording what reaches the channel."""

    kind, where = "fabric", REMOTE_DIR

    def __init__(self):
        self.remote = MockRemote()
        self.channels = []

    def context(self, *answers, **config):
        self.channels = self.remote.expect_sessions(Session(commands=[
            Command(out=out.encode(), exit=code) for out, code in answers]))
        config = {"project_dir": LOCAL_DIR, "remote_dir": REMOTE_DIR, **config,
                  "run": {"in_stream": False}}
        return Connection("deploy-host", user="deployer", config=FabricConfig(overrides=config))

    @property
    def lines(self):
        return [ch.exec_command.call_args.args[0] for ch in self.channels
                if ch.exec_command.called]

    def close(self):
        try:
            self.remote.safety()  # every expected command ran, on one connection
        finally:
            self.remote.stop()


@pytest.fixture(params=[InvokeSeam, FabricSeam], ids=["invoke", "fabric"])
def ctx(request):
    """The same task code on a local MockContext and on a mocked Fabric Connection;
    `ctx.where` is the folder compose must use on each."""
    seam = request.param()
    yield seam
    seam.close()


# The compose seam, on both kinds of context

def test_compose_line_names_the_folder_and_quotes_every_word(ctx):
    c = ctx.context(("", 0))
    compose(c, "logs", "--tail", "5", "my service", "a;b", "$(id)", hide=True)
    w = ctx.where
    assert ctx.lines == [
        f"env docker compose --project-directory {w} --file {w}/docker-compose.yml "
        "logs --tail 5 'my service' 'a;b' '$(id)'"]


def test_compose_line_carries_the_variables(ctx):
    c = ctx.context(("", 0))
    compose(c, "config", env={"HUB_PORT": "443", "COMPOSE_PROJECT_NAME": "proj"}, hide=True)
    w = ctx.where
    assert ctx.lines == [
        f"env COMPOSE_PROJECT_NAME=proj HUB_PORT=443 docker compose --project-directory {w} "
        f"--file {w}/docker-compose.yml config"]


@pytest.fixture
def fake_docker(tmp_path):
    """A `docker` on PATH that writes down its argv and environment, for running lines for real."""
    bin_dir, out = tmp_path / "bin", tmp_path / "docker-saw.json"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(f"#!{sys.executable}\n"
                      "import json, os, sys\n"
                      "seen = {'argv': sys.argv[1:], 'env': dict(os.environ)}\n"
                      f"json.dump(seen, open({str(out)!r}, 'w'))\n")
    script.chmod(0o755)

    def run(line):
        env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
        subprocess.run(["sh", "-c", line], cwd=tmp_path, env=env, check=True, timeout=10)
        return json.loads(out.read_text())

    return run


def test_hostile_values_reach_docker_intact(ctx, fake_docker, tmp_path):
    """Run the line a real shell would get: every word and value arrives as given."""
    folder = str(tmp_path / "my deploy;$(touch pwned)")
    c = ctx.context(("", 0), project_dir=folder, remote_dir=folder)
    value = "/home/me/My CA.pem; touch pwned"
    compose(c, "build", "a b", "`touch pwned`", env={"BUILD_CA_FILE": value}, hide=True)
    [line] = ctx.lines
    saw = fake_docker(line)
    assert saw["argv"] == ["compose", "--project-directory", folder, "--file",
                           f"{folder}/docker-compose.yml", "build", "a b", "`touch pwned`"]
    assert saw["env"]["BUILD_CA_FILE"] == value
    assert not (tmp_path / "pwned").exists()


def test_compose_returns_the_result(ctx):
    c = ctx.context(("v2\n", 0))
    assert compose(c, "version", hide=True).stdout == "v2\n"


def test_require_compose_returns_the_version(ctx):
    c = ctx.context(("2.29.7\n", 0))
    assert require_compose(c) == "2.29.7"
    w = ctx.where
    assert ctx.lines == [
        f"env docker compose --project-directory {w} --file {w}/docker-compose.yml version --short"]


def test_require_compose_missing_points_at_bin_setup(ctx):
    c = ctx.context(("", 1))
    with pytest.raises(Exit) as caught:
        require_compose(c)
    assert "`docker compose`) is not installed" in caught.value.message
    assert "Run bin/setup" in caught.value.message
    assert len(ctx.lines) == 1 and ctx.lines[0].endswith(" version --short")


def test_fabric_runs_compose_in_the_home_copy_by_default():
    seam = FabricSeam()
    try:
        c = seam.context(("", 0), remote_dir=None)
        compose(c, "version", "--short", hide=True)
        assert seam.lines == ["env docker compose --project-directory jupyterhub-deploy "
                              "--file jupyterhub-deploy/docker-compose.yml version --short"]
    finally:
        seam.close()


def test_project_dir_comes_from_config_else_the_checkout():
    configured = MockContext(config=Config(overrides={"project_dir": "/x/y"}))
    assert project_dir(configured) == Path("/x/y")
    assert project_dir(MockContext()) == Path(__file__).resolve().parents[2]


def collection_config(config_class, runtime_file):
    """A Config as `inv` makes one: its defaults, a config file (-f), the collection's own
    defaults (tasks/root.py), then the shell's variables."""
    from tasks.root import ns

    config = config_class(runtime_path=str(runtime_file))
    config.load_runtime()
    config.load_collection(ns.configuration())
    config.load_shell_env()
    return config


def test_invokes_own_overrides_reach_project_dir_and_remote_dir(tmp_path, monkeypatch):
    from tasks.target import REMOTE_DIR, ROOT, deploy_dir

    monkeypatch.delenv("INVOKE_PROJECT_DIR", raising=False)
    no_file, file = tmp_path / "none.yml", tmp_path / "deploy.yml"
    file.write_text(f"project_dir: {tmp_path / 'from file'}\nremote_dir: /srv/from-file\n")
    config = collection_config(Config, no_file)
    assert project_dir(MockContext(config=config)) == ROOT  # the collection's default
    assert deploy_dir(Connection("deploy-host", config=collection_config(FabricConfig, no_file))) == REMOTE_DIR
    assert project_dir(MockContext(config=collection_config(Config, file))) == tmp_path / "from file"
    assert deploy_dir(Connection("deploy-host", config=collection_config(FabricConfig, file))) == "/srv/from-file"
    monkeypatch.setenv("INVOKE_PROJECT_DIR", str(tmp_path / "from env"))
    assert project_dir(MockContext(config=collection_config(Config, no_file))) == tmp_path / "from env"


# tasks.images.make_debian_base

ROOTFS = "/tmp/tmp.Q1w2E3"


def debootstrap_context(uid="0", has_debootstrap=True, rootfs=ROOTFS):
    return MockContext(run={
        "PATH=$PATH:/usr/sbin:/sbin command -v debootstrap": Result(exited=0 if has_debootstrap else 1),
        "id -u": Result(f"{uid}\n"),
        "mktemp -d": Result(f"{rootfs}\n"),
        re.compile(".*"): Result(),
    })


def sent(c):
    return [call.args[0] for call in c.run.call_args_list]


def sources_script(c):
    """The shell script the sources.list step hands to `sh -c`."""
    [line] = [cmd for cmd in sent(c) if " sh -c " in f" {cmd}"]
    argv = shlex.split(line)
    assert argv[argv.index("sh"):][:2] == ["sh", "-c"] and len(argv) == argv.index("sh") + 3
    return argv[-1]


def test_make_debian_base_as_root(capsys):
    c = debootstrap_context(uid="0")
    images.make_debian_base(c, "bookworm", "jupyterhub-deploy-base:bookworm")
    commands = sent(c)
    assert commands[:4] == [
        "PATH=$PATH:/usr/sbin:/sbin command -v debootstrap",
        "id -u",
        "mktemp -d",
        f"debootstrap --variant=minbase bookworm {ROOTFS}",
    ]
    assert commands[4].startswith("sh -c ")
    assert commands[5:] == [
        f"tar -C {ROOTFS} -c . | docker import "
        "'--change=LABEL org.jupyterhub-deploy.role=base-image' "
        "'--change=CMD [\"bash\"]' - jupyterhub-deploy-base:bookworm",
        f"rm -rf --one-file-system {ROOTFS}",
    ]
    # The clean-up must never turn a good build into a failure, nor print noise.
    assert c.run.call_args_list[-1].kwargs == {"hide": True, "warn": True}
    assert "jupyterhub-deploy-base:bookworm" in capsys.readouterr().out


def test_make_debian_base_as_user_uses_sudo_for_root_owned_steps():
    c = debootstrap_context(uid="1000")
    images.make_debian_base(c, "trixie", "jupyterhub-deploy-base:trixie")
    commands = sent(c)
    assert commands[3] == f"sudo debootstrap --variant=minbase trixie {ROOTFS}"
    assert commands[4].startswith("sudo sh -c ")
    assert commands[5] == (
        f"sudo tar -C {ROOTFS} -c . | docker import "
        "'--change=LABEL org.jupyterhub-deploy.role=base-image' "
        "'--change=CMD [\"bash\"]' - jupyterhub-deploy-base:trixie")
    assert commands[6] == f"sudo rm -rf --one-file-system {ROOTFS}"
    assert len(commands) == 7


def test_sources_script_writes_sources_list_and_drops_package_caches(tmp_path):
    """Run the script the step builds, on a folder laid out like a fresh debootstrap."""
    rootfs = tmp_path / "root fs"  # a space, to prove the quoting
    for folder in ("etc/apt", "var/cache/apt/archives", "var/lib/apt/lists"):
        (rootfs / folder).mkdir(parents=True)
    for name in ("var/cache/apt/archives/libc6.deb", "var/lib/apt/lists/deb_bookworm_Packages",
                 "var/lib/apt/lists/lock", "var/cache/apt/archives/partial.txt"):
        (rootfs / name).write_text("x")
    c = debootstrap_context(rootfs=str(rootfs))
    images.make_debian_base(c, "bookworm", "base:test")
    subprocess.run(["sh", "-c", sources_script(c)], check=True, timeout=10)
    assert (rootfs / "etc/apt/sources.list").read_text() == (
        "deb http://deb.debian.org/debian bookworm main\n"
        "deb http://deb.debian.org/debian bookworm-updates main\n"
        "deb http://deb.debian.org/debian-security bookworm-security main\n"
    )
    left = sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*") if p.is_file())
    assert left == ["etc/apt/sources.list", "var/cache/apt/archives/partial.txt",
                    "var/lib/apt/lists/lock"]


def test_make_debian_base_without_debootstrap_points_at_bin_setup():
    c = debootstrap_context(has_debootstrap=False)
    with pytest.raises(Exit) as caught:
        images.make_debian_base(c, "bookworm", "base:test")
    assert "run bin/setup" in caught.value.message
    assert sent(c) == ["PATH=$PATH:/usr/sbin:/sbin command -v debootstrap"]


def test_make_debian_base_cleans_up_when_debootstrap_fails():
    c = debootstrap_context(uid="1000")
    answer = partial(MockContext.run, c)  # the canned answers, without the Mock around them

    def run(command, **kwargs):
        if "debootstrap --variant" in command:
            raise UnexpectedExit(Result(command=command, exited=1))
        return answer(command, **kwargs)

    c.run.side_effect = run
    with pytest.raises(UnexpectedExit):
        images.make_debian_base(c, "bookworm", "base:test")
    assert sent(c)[-2:] == [f"sudo debootstrap --variant=minbase bookworm {ROOTFS}",
                            f"sudo rm -rf --one-file-system {ROOTFS}"]


# tasks.status.logs and tasks.lifecycle.down

ENV_FILE = (
    "COMPOSE_PROJECT_NAME=proj\nHUB_PORT=443\nDOCKER_NOTEBOOK_IMAGE=nb:1\n"
    "BASE_IMAGE=debian:bookworm-slim\nBUILD_CA_BUNDLE=none\nHUB_AUTHENTICATOR=native\n"
)
SETTINGS = Settings(project="proj", port=443, hostnames="", notebook_image="nb:1",
                    base_image="debian:bookworm-slim", build_ca_bundle="none",
                    authenticator="native")
# What compose gets on top of .env is compose_env's business; the tasks must pass exactly it.
COMPOSE_ENV = compose_env(SETTINGS)
ENV_WORDS = " ".join(f"{k}={v}" for k, v in sorted(COMPOSE_ENV.items()))  # plain values


def compose_line(where, args, env_words=ENV_WORDS):
    """The line `compose` runs (its exact form is pinned by the seam tests above)."""
    return " ".join(["env", *filter(None, [env_words]), "docker", "compose", "--project-directory",
                     str(where), "--file", f"{where}/docker-compose.yml", args])


def test_compose_env_names_the_project_and_port():
    assert {k: COMPOSE_ENV[k] for k in ("COMPOSE_PROJECT_NAME", "HUB_PORT", "BUILD_CA_FILE")} == {
        "COMPOSE_PROJECT_NAME": "proj", "HUB_PORT": "443", "BUILD_CA_FILE": "/dev/null"}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with a .env, and no setting leaking in from the shell."""
    from tasks.settings import OPTIONAL, REQUIRED

    for key in REQUIRED + OPTIONAL:
        monkeypatch.delenv(key, raising=False)
    (tmp_path / ".env").write_text(ENV_FILE)
    return tmp_path


def recording_context(project, *answers):
    seam = InvokeSeam()
    return seam, seam.context(*answers, project_dir=str(project))


@pytest.fixture
def engine(monkeypatch):
    """A fake engine holding user servers by these names, for `logs --user` to find."""
    def make(*names):
        client = FakeClient([FakeContainer(name, []) for name in names])
        monkeypatch.setattr(run_module, "docker_client", lambda c: client)
        return client

    return make


def test_logs_of_a_user_server(project, engine):
    client = engine("proj-user-alice")
    seam, c = recording_context(project, ("", 0))
    status.logs(c, user="alice")
    assert client.list_calls == [{"all": True, "filters": {"label": [
        "org.jupyterhub-deploy.project=proj", "org.jupyterhub-deploy.role=user-server",
        "org.jupyterhub-deploy.user=alice"]}}]
    assert seam.lines == ["docker logs --tail 200 proj-user-alice"]
    assert c.run.call_args.kwargs == {"warn": True}


def test_logs_of_a_user_server_by_its_escaped_name_and_following(project, engine):
    engine("proj-user-a-2eb")
    seam, c = recording_context(project, ("", 0))
    status.logs(c, user="a.b", follow=True, tail=20)
    assert seam.lines == ["docker logs --tail 20 --follow proj-user-a-2eb"]


def test_logs_of_a_user_without_a_server_fails_naming_why(project, engine):
    engine()
    seam, c = recording_context(project)
    with pytest.raises(Exit) as caught:
        status.logs(c, user="alice")
    assert caught.value.code == 1 and caught.value.message == (
        "alice has no server in proj: it starts when they log in, or from the admin panel; "
        "then run this again.")
    assert c.run.call_count == 0


@pytest.mark.parametrize("user", ["a;rm -rf /", "$(id)", "../hub", "Alice", "-f"])
def test_logs_refuses_a_hostile_user_before_any_command(project, user):
    seam, c = recording_context(project)
    with pytest.raises(Exit, match="is not a valid user name"):
        status.logs(c, user=user)
    assert c.run.call_count == 0


def test_logs_of_the_hub(project):
    seam, c = recording_context(project, ("", 0))
    status.logs(c)
    assert seam.lines == [compose_line(project, "logs --tail 200 hub")]


class FakeContainer:
    def __init__(self, name, events, stop_error=None):
        self.name, self.events, self.stop_error = name, events, stop_error

    def stop(self, **kwargs):
        self.events.append(("stop", self.name, kwargs))
        if self.stop_error:
            raise self.stop_error

    def remove(self, **kwargs):
        self.events.append(("remove", self.name, kwargs))


class FakeClient:
    def __init__(self, containers):
        self.list_calls = []
        self.containers = self
        self._found = containers

    def list(self, **kwargs):
        self.list_calls.append(kwargs)
        return self._found

    @staticmethod
    def info():
        return {"Swarm": {"LocalNodeState": "inactive"}}  # a single host


@pytest.fixture
def down_setup(tmp_path, monkeypatch):
    """`down` with a fake engine: (context, seam, client, events, roots load_settings saw)."""
    events = []

    def make(containers=(), answers=(("2.29.7\n", 0), ("", 0))):
        from contextlib import contextmanager

        from tasks import locks

        client = FakeClient([FakeContainer(n, events, e) for n, e in containers])
        seen_roots = []
        monkeypatch.setattr(run_module, "load_settings",
                            lambda root: seen_roots.append(root) or SETTINGS)
        monkeypatch.setattr(run_module, "docker_client", lambda c: client)

        @contextmanager
        def operation(client, project, what, where=""):  # the lock, on the real engine elsewhere
            events.append(("lock", project, what))
            try:
                yield
            finally:
                events.append(("unlock", project))

        monkeypatch.setattr(locks, "operation", operation)
        seam, c = recording_context(tmp_path, *answers)
        answer = c.run.side_effect
        c.run.side_effect = lambda command, **kw: (events.append(("run", command)),
                                                   answer(command, **kw))[1]
        return c, seam, client, events, seen_roots

    return make


def test_down_stops_user_servers_by_label_then_compose_down(down_setup, tmp_path, capsys):
    c, seam, client, events, roots = down_setup(containers=[("proj-user-ann", None),
                                                            ("proj-user-bob", None)])
    lifecycle.down(c)
    assert roots == [tmp_path]
    assert client.list_calls == [{"all": True, "filters": {"label": [
        "org.jupyterhub-deploy.project=proj", "org.jupyterhub-deploy.role=user-server"]}}]
    assert events == [
        ("run", compose_line(tmp_path, "version --short", env_words="")),
        ("lock", "proj", "`inv down`"),
        ("stop", "proj-user-ann", {"timeout": 10}),
        ("remove", "proj-user-ann", {"force": True}),
        ("stop", "proj-user-bob", {"timeout": 10}),
        ("remove", "proj-user-bob", {"force": True}),
        ("run", compose_line(tmp_path, "down")),
        ("unlock", "proj"),
    ]
    assert "user servers stopped: 2" in capsys.readouterr().out


def test_down_with_no_user_servers(down_setup, tmp_path):
    c, seam, client, events, _ = down_setup()
    lifecycle.down(c)
    assert seam.lines == [compose_line(tmp_path, "version --short", env_words=""),
                          compose_line(tmp_path, "down")]


def test_down_without_compose_stops_nothing(down_setup):
    c, seam, client, events, _ = down_setup(containers=[("proj-user-ann", None)],
                                            answers=[("", 1)])
    with pytest.raises(Exit, match="bin/setup"):
        lifecycle.down(c)
    assert [e[0] for e in events] == ["run"]


def test_down_tolerates_a_server_that_removes_itself(down_setup, tmp_path):
    gone = docker.errors.NotFound("No such container")
    busy = docker.errors.APIError("removal in progress", response=Mock(status_code=409))
    c, seam, client, events, _ = down_setup(
        containers=[("proj-user-ann", gone), ("proj-user-bob", busy), ("proj-user-cy", None)])
    lifecycle.down(c)
    assert [e[:2] for e in events if e[0] not in ("run", "lock", "unlock")] == [
        ("stop", "proj-user-ann"), ("stop", "proj-user-bob"),
        ("stop", "proj-user-cy"), ("remove", "proj-user-cy")]
    assert events[-2:] == [("run", compose_line(tmp_path, "down")), ("unlock", "proj")]


def test_down_stops_on_other_engine_errors(down_setup):
    broken = docker.errors.APIError("server error", response=Mock(status_code=500))
    c, seam, client, events, _ = down_setup(containers=[("proj-user-ann", broken)])
    with pytest.raises(docker.errors.APIError):
        lifecycle.down(c)
    assert not [e for e in events if e[0] == "run" and e[1].endswith(" down")]
    assert events[-1] == ("unlock", "proj")  # the lock goes with a failure too
