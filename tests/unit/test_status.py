"""tasks.status: the figures `inv status` shows, worked out from the engine's and the hub's
answers, and when it must exit non-zero."""
from datetime import datetime, timedelta, timezone

from tasks.limits import Limits
from tasks.status import (
    cpu_cores_used, hub_problem, memory_used, parse_hub_time, server_line, server_record,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
GIB = 1 << 30


def stats(read: str, cpu_ns: int, usage: int, inactive: int, v2=True):
    key = "inactive_file" if v2 else "total_inactive_file"
    return {"read": read, "cpu_stats": {"cpu_usage": {"total_usage": cpu_ns}},
            "memory_stats": {"usage": usage, "stats": {key: inactive}}}


def test_memory_is_counted_without_the_page_cache_as_docker_stats_does():
    assert memory_used(stats("", 0, 300 << 20, 100 << 20)) == 200 << 20
    assert memory_used(stats("", 0, 300 << 20, 100 << 20, v2=False)) == 200 << 20
    assert memory_used({}) == 0


def test_cpu_is_cores_busy_between_the_two_samples():
    before = stats("2026-12-01T12:00:00.000000000Z", 5_000_000_000, 0, 0)
    after = stats("2026-12-01T12:00:02.000000000Z", 6_000_000_000, 0, 0)
    assert cpu_cores_used(before, after) == 0.5  # 1 s of CPU in 2 s
    never = stats("0001-01-01T00:00:00Z", 0, 0, 0)
    assert cpu_cores_used(never, after) == 0.0  # a sample the engine could not take


def test_a_server_line_shows_use_against_each_limit_and_the_idle_time():
    record = server_record("alice", "running",
                           stats("2026-12-01T12:00:00Z", 0, 0, 0),
                           stats("2026-12-01T12:00:01Z", 250_000_000, 512 << 20, 0),
                           Limits(mem_bytes=2 * GIB, cpus=1), NOW - timedelta(minutes=4), NOW)
    assert record["memory_bytes"] == 512 << 20 and record["cpu_cores"] == 0.25
    assert record["idle_seconds"] == 240
    line = server_line(record, culls_after_s=3600)
    assert "mem 512M of 2G (25%)" in line and "cpu 0.25 of 1 core" in line
    assert "idle 4 min (stopped after 1 h)" in line


def test_without_limits_or_activity_the_line_says_so():
    record = server_record("bob", "running", None, stats("2026-12-01T12:00:01Z", 0, GIB, 0),
                           Limits(mem_bytes=0, cpus=0), None, NOW)
    line = server_line(record, culls_after_s=0)
    assert "mem 1G (no limit)" in line and "cpu" not in line and "idle" not in line


def test_a_name_from_outside_is_shown_escaped():
    record = server_record("\x1b[2Jeve", "running", None, None, Limits(), None, NOW)
    assert "\x1b" not in server_line(record, 0)


def test_hub_time_with_and_without_a_zone():
    assert parse_hub_time("2026-12-01T11:56:00.123Z") == datetime(
        2026, 12, 1, 11, 56, 0, 123000, tzinfo=timezone.utc)
    assert parse_hub_time(None) is None and parse_hub_time("soon") is None


def test_status_fails_for_each_way_the_hub_is_not_up():
    up = {"container": "p-hub-1", "state": "running", "health": "healthy", "answers": True}
    assert hub_problem(up) == ""
    assert "no hub container" in hub_problem({**up, "container": None})
    assert "is exited" in hub_problem({**up, "state": "exited"})
    assert "is unhealthy" in hub_problem({**up, "health": "unhealthy"})
    assert "does not answer: HTTP 502" in hub_problem({**up, "answers": False, "error": "HTTP 502"})
