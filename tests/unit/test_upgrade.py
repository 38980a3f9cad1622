"""`inv upgrade`'s plan from what runs and what is pinned, and its refusals, without an engine."""
import json
from pathlib import Path

import pytest
from invoke import MockContext, Result
from invoke.exceptions import Exit, UnexpectedExit

from tasks.upgrade import exit_text, upgrade
from tasks.upgradeplan import (PROXY, Versions, changes, pinned, plan_upgrade, proxy_pin,
                               read_pins, servers_line)

ROOT = Path(__file__).resolve().parents[2]
PINS = {"hub": {"jupyterhub": "6.1.1", "dockerspawner": "14.0.0", PROXY: "5.1.0"},
        "notebook": {"jupyterhub": "6.1.1", "jupyterlab": "4.6.6"}}
RUNNING_5 = Versions({"jupyterhub": "5.5.4", "dockerspawner": "14.0.0", PROXY: "4.5.3"},
                     schema="4621fec11365", database="4621fec11365", knows=True)


def test_pins_are_read_as_pip_reads_exact_pins():
    text = "# comment\nJupyterHub==6.1.1\njupyterhub_idle_culler==2.0.0  # why\n-r other.txt\nloose>=1\n"
    assert read_pins(text) == {"jupyterhub": "6.1.1", "jupyterhub-idle-culler": "2.0.0"}


def test_the_project_pins_its_proxy_and_one_jupyterhub():
    pins = pinned(ROOT)
    assert pins["hub"][PROXY] == "5.1.0"  # 5.1.0: the socket fix, and Debian 12's Node 18
    assert pins["hub"]["jupyterhub"] == pins["notebook"]["jupyterhub"]
    lock = json.loads((ROOT / "hub" / "package-lock.json").read_text())
    locked = lock["packages"][f"node_modules/{PROXY}"]
    assert locked["version"] == proxy_pin((ROOT / "hub" / "package.json").read_text())
    assert locked["integrity"].startswith("sha512-")  # npm ci checks every package by it


def test_changes_put_jupyterhub_first_and_leave_out_what_stays():
    before = {"dockerspawner": "14.0.0", "jupyterhub": "5.5.4", PROXY: "4.5.3", "acme": None}
    after = {"dockerspawner": "14.0.0", "jupyterhub": "6.1.1", PROXY: "5.1.0", "acme": "5.9.0"}
    assert changes(before, after) == [("jupyterhub", "5.5.4", "6.1.1"), ("acme", None, "5.9.0"),
                                      (PROXY, "4.5.3", "5.1.0")]


def test_a_major_upgrade_says_what_changes_and_that_servers_keep_running():
    plan = plan_upgrade(RUNNING_5, {"jupyterhub": "5.5.4", "jupyterlab": "4.6.6"}, PINS,
                        ["alice", "bob"], notebook_built=True)
    assert plan.lines[0] == "JupyterHub 5.5.4 -> 6.1.1"
    assert f"hub image: {PROXY} 4.5.3 -> 5.1.0" in plan.lines
    assert "user image: jupyterhub 5.5.4 -> 6.1.1" in plan.lines
    assert any(line.startswith("database: schema 4621fec11365;") and "upgrade-db" in line
               for line in plan.lines)
    assert plan.lines[-1].startswith("user servers: 2 running (alice, bob); they keep running")
    assert "when it next starts" in plan.lines[-1]


def test_nothing_pinned_differently_says_so():
    same = Versions(dict(PINS["hub"]), schema="f460b0348206", database="f460b0348206")
    plan = plan_upgrade(same, dict(PINS["notebook"]), PINS, [], notebook_built=True)
    assert plan.hub == [] and plan.notebook == []
    assert plan.lines[0] == "JupyterHub 6.1.1: unchanged"
    assert "no change expected" in plan.lines[1]
    assert plan.lines[-1] == "user servers: none running"


def test_an_image_named_in_env_is_pulled_not_compared():
    plan = plan_upgrade(RUNNING_5, {}, PINS, [], notebook_built=False)
    assert plan.notebook == []
    assert any("DOCKER_NOTEBOOK_IMAGE" in line for line in plan.lines)


def test_servers_keep_their_image_until_they_restart():
    assert "tabs reconnect" in servers_line(["ann"], [])
    assert "new one when it next starts" in servers_line(["ann"], [("jupyterlab", "4.6.5", "4.6.6")])


def test_a_failed_command_is_one_line_with_its_last_words():
    result = Result(command="docker compose build hub", exited=17, stderr="a\nb\nc\nERROR: pin\n")
    assert exit_text(UnexpectedExit(result)) == \
        "`docker compose build hub` exited 17: b / c / ERROR: pin"
    assert exit_text(Exit("The hub did not come up: x.")) == "The hub did not come up: x."


def test_upgrade_refuses_a_dry_run_before_anything():
    c = MockContext()
    c.config.run.dry = True
    with pytest.raises(Exit, match="-R/--dry: nothing was done. `inv upgrade` would build"):
        upgrade(c)
