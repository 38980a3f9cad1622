"""tasks.settings: .env with the shell winning, validated all at once; the build CA bundle."""
import os
import re
from pathlib import Path

import pytest
from invoke.exceptions import Exit

from tasks.project import compose_env
from tasks.settings import (
    AUTHENTICATORS, OPTIONAL, REQUIRED, SYSTEM_CA_BUNDLES, Settings, load_settings,
    parse_settings, read_env_file, resolve_ca_bundle,
)
from tasks.userlist import Users

ROOT = Path(__file__).resolve().parents[2]

GOOD = {
    "COMPOSE_PROJECT_NAME": "proj",
    "HUB_PORT": "8443",
    "HUB_HOSTNAMES": "hub.example.org",
    "DOCKER_NOTEBOOK_IMAGE": "quay.io/jupyter/scipy-notebook:2025-11-03",
    "BASE_IMAGE": "debian:bookworm-slim",
    "BUILD_CA_BUNDLE": "auto",
    "HUB_AUTHENTICATOR": "native",
}


def with_(**changes):
    return {**GOOD, **changes}


def refusal(file_values, environ=None):
    with pytest.raises(Exit) as caught:
        parse_settings(file_values, environ or {})
    return caught.value.message


def test_good_settings():
    assert parse_settings(GOOD, {}) == Settings(
        project="proj", port=8443, hostnames=("hub.example.org",),
        notebook_image="quay.io/jupyter/scipy-notebook:2025-11-03",
        base_image="debian:bookworm-slim", build_ca_bundle="auto", authenticator="native",
    )


def test_values_are_stripped_and_hostnames_optional():
    values = {k: f"  {v} " for k, v in GOOD.items() if k != "HUB_HOSTNAMES"}
    settings = parse_settings(values, {})
    assert (settings.project, settings.port, settings.hostnames) == ("proj", 8443, ())
    assert settings.base_image == "debian:bookworm-slim"


def test_every_missing_key_is_listed():
    message = refusal({})
    assert message.startswith("Missing in .env: " + ", ".join(REQUIRED) + ".")


def test_blank_values_count_as_missing():
    message = refusal(with_(HUB_PORT="  ", BASE_IMAGE=""))
    assert message.startswith("Missing in .env: HUB_PORT, BASE_IMAGE.")


def test_environment_overrides_the_file_as_compose_does():
    environ = {"COMPOSE_PROJECT_NAME": "other", "HUB_PORT": "443", "HUB_HOSTNAMES": "x.org"}
    settings = parse_settings(GOOD, environ)
    assert (settings.project, settings.port, settings.hostnames) == ("other", 443, ("x.org",))


def test_hub_hostnames_split_on_commas_only():
    settings = parse_settings(with_(HUB_HOSTNAMES=" a.example.org,10.0.0.5 ,, b.example.org,"), {})
    assert settings.hostnames == ("a.example.org", "10.0.0.5", "b.example.org")


def test_a_hub_hostnames_entry_with_a_space_is_named_with_the_setting():
    message = refusal(with_(HUB_HOSTNAMES="a.example.org,two words.example.org"))
    assert "HUB_HOSTNAMES: 'two words.example.org' is neither" in message
    assert "separate names with commas" in message


def test_environment_supplies_keys_the_file_lacks():
    file_values = {k: v for k, v in GOOD.items() if k != "BASE_IMAGE"}
    settings = parse_settings(file_values, {"BASE_IMAGE": "debian:trixie"})
    assert settings.base_image == "debian:trixie"


def test_an_empty_shell_variable_wins_over_the_file_like_in_compose():
    message = refusal(GOOD, {"BASE_IMAGE": ""})
    assert message.startswith("Missing in .env: BASE_IMAGE.")


@pytest.mark.parametrize("empty", [True, False], ids=["empty", "missing"])
def test_an_empty_or_missing_notebook_image_means_the_one_notebook_builds(empty):
    values = {k: v for k, v in GOOD.items() if k != "DOCKER_NOTEBOOK_IMAGE"}
    if empty:
        values["DOCKER_NOTEBOOK_IMAGE"] = " "
    assert parse_settings(values, {}).notebook_image == ""


def test_unrelated_environment_variables_are_ignored():
    settings = parse_settings(GOOD, {"PATH": "/bin", "HUB_PORTS": "1", "compose_project_name": "x"})
    assert (settings.project, settings.port) == ("proj", 8443)


@pytest.mark.parametrize("project", ["Jupyterhub", "-hub", "_hub", "my hub", "a" * 42, "hub.one"])
def test_bad_project_name(project):
    assert f"COMPOSE_PROJECT_NAME={project!r} must be lowercase" in refusal(
        with_(COMPOSE_PROJECT_NAME=project))


def test_longest_project_name():
    assert parse_settings(with_(COMPOSE_PROJECT_NAME="a" * 41), {}).project == "a" * 41


@pytest.mark.parametrize("port", ["0", "70000", "65536", "abc", "-1", "4.43", "0x1bb"])
def test_bad_port(port):
    assert f"HUB_PORT={port!r} must be a port number from 1 to 65535." in refusal(
        with_(HUB_PORT=port))


@pytest.mark.parametrize("port", ["1", "65535", "0443"])
def test_port_edges(port):
    assert parse_settings(with_(HUB_PORT=port), {}).port == int(port)


@pytest.mark.parametrize("port", ["²", "٤٤٣"])
def test_non_ascii_digits_are_refused_with_exit(port):
    # str.isdigit() alone accepts both; int() refuses the first and reads the second as 443.
    assert f"HUB_PORT={port!r} must be a port number" in refusal(with_(HUB_PORT=port))


@pytest.mark.parametrize("authenticator", ["gitlab", "Native", "dummy", ""])
def test_bad_authenticator(authenticator):
    message = refusal(with_(HUB_AUTHENTICATOR=authenticator))
    if authenticator:
        assert (f"HUB_AUTHENTICATOR={authenticator!r} is not one of: "
                f"{', '.join(AUTHENTICATORS)}.") in message
    else:
        assert message.startswith("Missing in .env: HUB_AUTHENTICATOR.")


def test_native_is_an_authenticator():
    assert "native" in AUTHENTICATORS


@pytest.mark.parametrize("key", ["DOCKER_NOTEBOOK_IMAGE", "BASE_IMAGE"])
@pytest.mark.parametrize("ref", ["Debian:12", "debian 12", "-debian", "debian:12;id", "$(id)"])
def test_bad_image_reference(key, ref):
    assert f"{key}={ref!r} is not an image reference" in refusal(with_(**{key: ref}))


@pytest.mark.parametrize("ref", [
    "debian", "debian:bookworm-slim", "registry.local:5000/team/nb:1.0",
    "quay.io/jupyter/base-notebook@sha256:" + "ab" * 32,
])
def test_good_image_references(ref):
    assert parse_settings(with_(BASE_IMAGE=ref), {}).base_image == ref


def test_every_bad_value_is_reported_at_once():
    message = refusal(with_(COMPOSE_PROJECT_NAME="X", HUB_PORT="0", BASE_IMAGE="A B",
                            HUB_AUTHENTICATOR="gitlab"))
    lines = message.splitlines()
    assert lines[0] == "Bad settings in .env:"
    assert [re.match(r"\s+(\w+)=", line)[1] for line in lines[1:]] == [
        "COMPOSE_PROJECT_NAME", "HUB_PORT", "BASE_IMAGE", "HUB_AUTHENTICATOR"]


# resolve_ca_bundle

def test_ca_bundle_none():
    assert resolve_ca_bundle("none", exists=lambda path: pytest.fail("none looks nothing up")) == ""


def test_ca_bundle_auto_takes_the_first_system_bundle_present():
    debian, fedora = SYSTEM_CA_BUNDLES
    assert resolve_ca_bundle("auto", exists=lambda path: True) == debian
    assert resolve_ca_bundle("auto", exists=lambda path: path == fedora) == fedora


def test_ca_bundle_auto_without_a_system_bundle_is_none():
    assert resolve_ca_bundle("auto", exists=lambda path: False) == ""


def test_ca_bundle_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = []
    got = resolve_ca_bundle("certs/proxy.pem", exists=lambda path: seen.append(path) or True)
    assert seen == ["certs/proxy.pem"]
    assert got == str(tmp_path / "certs" / "proxy.pem")


def test_ca_bundle_real_file(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert resolve_ca_bundle(str(bundle)) == str(bundle)


def test_ca_bundle_missing_path():
    with pytest.raises(Exit) as caught:
        resolve_ca_bundle("/nowhere/ca.pem", exists=lambda path: False)
    assert caught.value.message.startswith("BUILD_CA_BUNDLE='/nowhere/ca.pem': no such file.")
    assert "auto or none" in caught.value.message


# .env files

def test_load_settings_without_env_file(tmp_path):
    with pytest.raises(Exit) as caught:
        load_settings(tmp_path, environ={})
    assert caught.value.message == f"No .env in {tmp_path}: restore it with `git checkout -- .env`."


def test_load_settings_reads_the_file_and_the_given_environment(tmp_path):
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in GOOD.items()))
    assert load_settings(tmp_path, environ={}).port == 8443
    assert load_settings(tmp_path, environ={"HUB_PORT": "9443"}).port == 9443


def test_load_settings_defaults_to_the_process_environment(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in GOOD.items()))
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", "fromshell")
    assert load_settings(tmp_path).project == "fromshell"


def test_read_env_file_neither_expands_nor_keeps_comments(tmp_path):
    path = tmp_path / ".env"
    path.write_text('# comment\nA=1\nB="two words"\nC=${A}x\nD=\n\nE=e # trailing\n')
    assert read_env_file(path) == {"A": "1", "B": "two words", "C": "${A}x", "D": "", "E": "e"}


def test_shipped_env_is_valid_and_complete():
    values = read_env_file(ROOT / ".env")
    assert set(REQUIRED) <= values.keys()
    # Every key in .env is one the tasks read, and every setting is shown (and explained) there.
    assert set(values) == set(REQUIRED + OPTIONAL)
    settings = parse_settings(values, {})
    assert settings.authenticator == "native"
    assert resolve_ca_bundle(settings.build_ca_bundle, exists=lambda path: False) == ""


def test_every_compose_variable_comes_from_env_or_the_tasks():
    """docker-compose.yml may only use names .env defines or the tasks pass to compose."""
    used = set(re.findall(r"\$\{(\w+)", (ROOT / "docker-compose.yml").read_text()))
    passed = compose_env(parse_settings(GOOD, {}), base_image="b", ca_file="/ca",
                         users=Users(("ann",), ()), cert_sha256="ab", secrets_sha256="cd")
    from tasks.images import BUILD_INPUTS  # set by `inv build` for the image's label
    from tasks.profileimages import BUILD_VARIABLES  # set for each profile image's build
    from tasks.profilehost import hub_env as profiles_env  # set by `inv up`
    from tasks.swarmnodes import hub_env as swarm_env  # set by `inv up`

    defined = (set(read_env_file(ROOT / ".env")) | set(passed) | set(BUILD_INPUTS.values())
               | set(BUILD_VARIABLES) | set(profiles_env(None, "p", "i", 1)) | set(swarm_env(None)))
    assert used, "the pattern finds the compose file's variables"
    assert used - defined == set()


def test_compose_gets_every_setting_it_reads_as_the_tasks_resolved_it():
    settings = parse_settings(GOOD, {"DOCKER_NOTEBOOK_IMAGE": "other:2"})
    passed = compose_env(settings)
    read = set(re.findall(r"\$\{(\w+)", (ROOT / "docker-compose.yml").read_text()))
    assert read & set(REQUIRED + OPTIONAL) - set(passed) == set()
    assert passed["DOCKER_NOTEBOOK_IMAGE"] == "other:2"


def test_shipped_env_leaves_the_process_environment_alone():
    before = dict(os.environ)
    read_env_file(ROOT / ".env")
    assert dict(os.environ) == before


def test_a_bad_value_from_the_shell_is_said_to_come_from_the_shell():
    message = refusal(with_(BASE_IMAGE="A B"), {"HUB_PORT": "8443x"})
    lines = message.splitlines()
    assert lines[0] == "Bad settings in .env and the shell's environment:"
    assert lines[1].endswith("(set in the shell's environment, which wins over .env)")
    assert lines[1].lstrip().startswith("HUB_PORT='8443x'")
    assert lines[2].lstrip().startswith("BASE_IMAGE='A B'") and "shell" not in lines[2]
