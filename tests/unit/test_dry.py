"""-R/--dry: every task that changes things refuses before it does anything; the tasks that
only look run. Nothing here may reach an engine: the Docker client fails the test."""
import pytest
from fabric import Config as FabricConfig, Connection
from invoke import Config, MockContext
from invoke.exceptions import Exit

from tasks import lifecycle, run as run_module, status, target
from tasks.backup import commands as backup
from tasks.run import Run


@pytest.fixture(autouse=True)
def no_engine(monkeypatch):
    def refuse(c):
        raise AssertionError("a task under --dry asked for the Docker client")

    monkeypatch.setattr(run_module, "docker_client", refuse)
    monkeypatch.setattr(target, "docker_client", refuse)


def dry_context(tmp_path, remote=False):
    config = {"project_dir": str(tmp_path), "run": {"dry": True}}
    if remote:
        return Connection("deploy-host", user="deployer", config=FabricConfig(overrides=config))
    return MockContext(config=Config(overrides=config))  # no answers: any command fails the test


CHANGING = [
    (lifecycle.down, {}, "inv down"),
    (lifecycle.build, {}, "inv build"),
    (lifecycle.up, {}, "inv up"),
    (lifecycle.deploy, {}, "inv deploy"),
    (lifecycle.cert, {}, "inv cert"),
    (lifecycle.notebook_image, {}, "inv notebook-image"),
    (backup.backup, {"user": "alice"}, "inv backup --user alice"),
    (backup.backup, {"all_": True}, "inv backup --all"),
    (backup.restore, {"user": "alice", "from_": "a.tar"}, "inv restore --user alice"),
]


@pytest.mark.parametrize("task, kwargs, command", CHANGING,
                         ids=[f"{t.name}-{'-'.join(k) or 'plain'}" for t, k, _ in CHANGING])
def test_a_changing_task_refuses_dry_before_anything(tmp_path, task, kwargs, command):
    with pytest.raises(Exit) as refused:
        task(dry_context(tmp_path), **kwargs)
    assert refused.value.message.startswith("-R/--dry: nothing was done.")
    assert f"`{command}` would " in refused.value.message
    assert list(tmp_path.iterdir()) == []  # not even the backup folder


def test_the_refusal_names_the_command_that_works_over_ssh(tmp_path):
    with pytest.raises(Exit) as refused:
        lifecycle.down(dry_context(tmp_path, remote=True))
    assert "`python -m tasks -H deploy-host down` would stop every user server" in refused.value.message


def test_without_dry_the_run_is_made(tmp_path):
    c = MockContext(config=Config(overrides={"project_dir": str(tmp_path)}))
    assert Run.of(c, "down").c is c


def test_backup_list_reads_under_dry(tmp_path, capsys):
    backup.backup(dry_context(tmp_path), list_=True)
    assert "backups" in capsys.readouterr().out.lower()


def test_status_is_not_refused_under_dry(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(status, "collect", lambda run: seen.append(run) or {"problem": ""})
    monkeypatch.setattr(status, "print_report", lambda report, c=None: None)
    status.status(dry_context(tmp_path))
    assert len(seen) == 1
