"""tasks.limits: each user's share of the host and the idle culler's times, read from .env,
refused with the setting's name, and handed to the hub converted."""
import pytest

from tasks.limits import (
    DEFAULTS, Limits, fits_host, human_bytes, human_seconds, hub_env, parse_limits,
)
from tasks.settings import parse_settings

GIB = 1 << 30


def test_the_defaults_are_the_limits_the_hub_assumes():
    limits, problems = parse_limits({})
    assert problems == []
    assert limits == Limits()  # 2G, 1 core, 512 processes, culled after 1 h idle


@pytest.mark.parametrize("text, expected", [
    ("2G", 2 * GIB), ("1.5G", 3 * GIB // 2), ("512M", 512 << 20), ("512m", 512 << 20),
    ("1GiB", GIB), ("4 G", 4 * GIB), ("1T", 1 << 40), ("0", 0),
])
def test_memory_sizes_are_1024_based_as_jupyterhub_reads_them(text, expected):
    limits, problems = parse_limits({"USER_MEM_LIMIT": text})
    assert (limits.mem_bytes, problems) == (expected, [])


@pytest.mark.parametrize("key, text, says", [
    ("USER_MEM_LIMIT", "lots", "USER_MEM_LIMIT='lots' is not a size like 2G"),
    ("USER_MEM_LIMIT", "512", "did you mean 512M?"),
    ("USER_MEM_LIMIT", "-1G", "is not a size"),
    ("USER_MEM_LIMIT", "128M", "too small for a server to start"),
    ("USER_CPU_LIMIT", "one", "USER_CPU_LIMIT='one' is not a number of cores"),
    ("USER_CPU_LIMIT", "-1", "is not a number of cores"),
    ("USER_CPU_LIMIT", "0.001", "below 0.01 of a core"),
    ("USER_PIDS_LIMIT", "1e3", "USER_PIDS_LIMIT='1e3' is not a whole number"),
    ("USER_PIDS_LIMIT", "10", "too small"),
    ("IDLE_CULL_TIMEOUT", "soon", "IDLE_CULL_TIMEOUT='soon' is not a duration"),
    ("IDLE_CULL_TIMEOUT", "30", "shorter than a minute"),
    ("IDLE_CULL_MAX_AGE", "1w", "IDLE_CULL_MAX_AGE='1w' is not a duration"),
])
def test_a_bad_value_is_refused_naming_the_setting(key, text, says):
    _, problems = parse_limits({key: text})
    assert len(problems) == 1 and says in problems[0]


def test_inv_refuses_bad_limits_with_the_other_settings_problems():
    base = {"COMPOSE_PROJECT_NAME": "p", "HUB_PORT": "443", "DOCKER_NOTEBOOK_IMAGE": "i:1",
            "BASE_IMAGE": "debian:bookworm", "BUILD_CA_BUNDLE": "none", "HUB_AUTHENTICATOR": "native"}
    with pytest.raises(Exception) as refused:
        parse_settings({**base, "USER_MEM_LIMIT": "lots", "HUB_PORT": "0"}, {})
    message = str(refused.value)
    assert "USER_MEM_LIMIT='lots'" in message and "HUB_PORT='0'" in message


def test_a_shell_variable_beats_env_for_limits_as_for_every_setting():
    base = {"COMPOSE_PROJECT_NAME": "p", "HUB_PORT": "443", "DOCKER_NOTEBOOK_IMAGE": "i:1",
            "BASE_IMAGE": "debian:bookworm", "BUILD_CA_BUNDLE": "none", "HUB_AUTHENTICATOR": "native",
            "USER_MEM_LIMIT": "2G"}
    settings = parse_settings(base, {"USER_MEM_LIMIT": "1G"})
    assert settings.limits.mem_bytes == GIB


@pytest.mark.parametrize("text, seconds", [("3600", 3600), ("90m", 5400), ("8h", 28800),
                                           ("2d", 172800), ("0", 0), ("1H", 3600)])
def test_durations(text, seconds):
    limits, problems = parse_limits({"IDLE_CULL_TIMEOUT": text})
    assert (limits.cull_timeout_s, problems) == (seconds, [])


def test_limits_above_the_host_are_refused_with_the_host_figure():
    too_much = Limits(mem_bytes=100 * GIB, cpus=3)
    problems = fits_host(too_much, cores=2, mem_total=24 * GIB)
    assert problems == [
        "USER_CPU_LIMIT=3 is more than this host's 2 cores; give at most 2 (or 0 for no limit).",
        "USER_MEM_LIMIT=100G is more than this host's memory (24G); give less (or 0 for no limit).",
    ]
    assert fits_host(Limits(), cores=2, mem_total=24 * GIB) == []
    assert fits_host(Limits(mem_bytes=0, cpus=0), cores=1, mem_total=GIB) == []


def test_the_hub_gets_converted_values_under_names_only_inv_sets():
    assert hub_env(Limits(mem_bytes=GIB, cpus=0.5, pids=256, cull_timeout_s=60)) == {
        "USER_MEM_LIMIT_BYTES": str(GIB), "USER_CPU_LIMIT_CORES": "0.5",
        "USER_PIDS_LIMIT_COUNT": "256", "IDLE_CULL_TIMEOUT_SECONDS": "60",
        "IDLE_CULL_MAX_AGE_SECONDS": "0",
    }
    assert not set(hub_env(Limits())) & set(DEFAULTS)  # never the names people write in .env


def test_figures_read_as_people_write_them():
    assert [human_bytes(n) for n in (2 * GIB, 3 * GIB // 2, 512 << 20, 100)] == ["2G", "1.5G", "512M", "100B"]
    assert [human_seconds(s) for s in (5, 90, 5400, 7200, 172800)] == ["5 s", "2 min", "1.5 h", "2 h", "2 d"]
