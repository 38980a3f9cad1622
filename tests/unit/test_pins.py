"""Requirement pins: exact everywhere, and one JupyterHub version for hub, users and tests."""
import re
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PINNED = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[0-9][0-9A-Za-z.+!-]*)")
SHIPPED = ["hub/requirements.txt", "notebook/requirements.txt", "requirements.txt"]


def requirement_lines(relative):
    lines = (ROOT / relative).read_text(encoding="utf-8").splitlines()
    return [(n, line.strip()) for n, line in enumerate(lines, start=1)
            if line.strip() and not line.strip().startswith("#")]


def pins(relative):
    """name -> version, with those of the files it includes (`-r FILE`), as pip reads them."""
    found = {}
    for _, line in requirement_lines(relative):
        if line.startswith("-r "):
            found.update(pins(str(Path(relative).parent / line[3:].strip())))
            continue
        match = PINNED.fullmatch(line)
        assert match, f"{relative}: {line!r} is not 'name==version'"
        found[match["name"].lower().replace("_", "-")] = match["version"]
    return found


@pytest.mark.parametrize("relative", SHIPPED)
def test_every_shipped_requirement_is_pinned_exactly(relative):
    lines = requirement_lines(relative)
    assert lines, f"{relative} lists no packages"
    loose = [f"{relative}:{n}: {line}" for n, line in lines if not PINNED.fullmatch(line)]
    assert loose == []


def test_pin_pattern_refuses_loose_requirements():
    for loose in ("jupyterhub", "jupyterhub>=6", "jupyterhub~=6.1", "jupyterhub==6.*",
                  "jupyterhub===6.1.1", "jupyterhub==6.1.1 ; python_version>'3'"):
        assert not PINNED.fullmatch(loose), loose


def test_jupyterhub_is_the_same_version_for_hub_users_and_tests():
    versions = {f: pins(f).get("jupyterhub") for f in
                ("hub/requirements.txt", "notebook/requirements.txt", "requirements-test.txt")}
    assert None not in versions.values(), versions
    assert len(set(versions.values())) == 1, versions


def test_tests_pin_every_hub_package_at_the_hub_version():
    hub, tests = pins("hub/requirements.txt"), pins("requirements-test.txt")
    assert {name: tests.get(name) for name in hub} == hub


def test_test_requirements_include_the_tool_requirements():
    lines = [line for _, line in requirement_lines("requirements-test.txt")]
    assert "-r requirements.txt" in lines


def test_the_unit_tier_runs_the_hub_packages_it_pins():
    """Otherwise the hub config and hubauth are checked against other versions than the hub runs."""
    hub = pins("hub/requirements.txt")
    assert {name: version(name) for name in hub} == hub
