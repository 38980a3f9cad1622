"""bench/'s pure parts: statistics, the table's verdicts, reading back what DockerSpawner
ran, replaying inv's compose command, and the command line. The benchmarks themselves
run against a real deployment (`python -m bench.run`); the driver has its integration test."""
import math

import pytest

from bench import run
from bench.benchmarks import compose_up_argv
from bench.driver import read_credentials
from bench.floors import template_of
from bench.report import Row, table
from bench.stats import percentile, summary


def test_percentile_interpolates_between_ranks():
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([4, 1, 3, 2], 0) == 1
    assert percentile([4, 1, 3, 2], 100) == 4
    assert percentile([10], 95) == 10
    assert math.isnan(percentile([], 50))
    assert summary([1, 2, 3]) == {"n": 3, "p50": 2, "p95": 2.9, "min": 1, "max": 3}


@pytest.mark.parametrize("row, against, ok", [
    (Row("P1", "spawn p50", 2.2, "s", 2.0, "ratio", 1.15), 1.1, True),
    (Row("P1", "spawn p50", 2.4, "s", 2.0, "ratio", 1.15), 1.2, False),
    (Row("P4", "request p50", 3.5, "ms", 3.0, "delta", 1.0), 0.5, True),
    (Row("P4", "request p50", 4.5, "ms", 3.0, "delta", 1.0), 1.5, False),
    (Row("P2", "failed", 0, "count", kind="max", target=0), math.nan, True),
    (Row("P2", "failed", 1, "count", kind="max", target=0), math.nan, False),
    (Row("P6", "API back after", 4.0, "s"), math.nan, None),
    (Row("P3", "burst wall", 6.0, "s", 4.0, floor_figure="no hub"), 1.5, None),
])
def test_a_row_is_held_to_its_target(row, against, ok):
    assert (math.isnan(against) and math.isnan(row.against_floor)) or row.against_floor == pytest.approx(against)
    assert row.ok is ok
    assert row.to_json()["ok"] is ok


def test_the_table_marks_missed_targets():
    text = table([Row("P1", "spawn p50", 2.4, "s", 2.0, "ratio", 1.15, "p50"),
                  Row("P4", "request p50", 3.5, "ms", 3.0, "delta", 1.0, "direct")])
    lines = text.splitlines()
    assert lines[0].startswith("| bench | figure |")
    assert lines[2] == "| P1 | spawn p50 | 2.4 s | 2 s (p50) | 1.20x | <= 1.15x | **no** |"
    assert lines[3] == "| P4 | request p50 | 3.5 ms | 3 ms (direct) | +0.50 ms | <= +1 ms | yes |"


def test_the_floor_runs_what_dockerspawner_ran():
    attrs = {
        "Image": "sha256:abc",
        "Config": {"Cmd": ["jupyterhub-singleuser"],
                   "Env": ["JUPYTERHUB_USER=b01", "JUPYTERHUB_SERVICE_PREFIX=/user/b01/", "A=x=y"]},
        "HostConfig": {"Binds": ["p-user-b01:/home/jovyan/work:rw"], "NetworkMode": "p-network"},
    }
    t = template_of(attrs)
    assert (t.image, t.command, t.network, t.user, t.prefix) == (
        "sha256:abc", ["jupyterhub-singleuser"], "p-network", "b01", "/user/b01/")
    assert t.environment == attrs["Config"]["Env"] and t.binds == attrs["HostConfig"]["Binds"]


def test_the_no_op_baseline_replays_inv_ups_compose_command():
    echoed = ("\x1b[1;37mdocker compose version --short\x1b[0m\n"
              "\x1b[1;37menv 'A=b c' COMPOSE_PROJECT_NAME=p docker compose --project-directory /x "
              "--file /x/docker-compose.yml up --detach --wait --no-build\x1b[0m\n"
              " Container p-hub-1  Running\n")
    assert compose_up_argv(echoed) == [
        "env", "A=b c", "COMPOSE_PROJECT_NAME=p", "docker", "compose", "--project-directory", "/x",
        "--file", "/x/docker-compose.yml", "up", "-d"]


def test_credentials_files_skip_comments_and_blank_lines(tmp_path):
    path = tmp_path / "initial-passwords"
    path.write_text("# name password\nalice s3cret words\n\nbob pw\n")
    assert read_credentials(path) == {"alice": "s3cret words", "bob": "pw"}


def test_quick_changes_only_the_defaults_and_flags_win():
    args = run.parse_args(["--quick", "--spawns", "7"])
    assert (args.spawns, args.bursts, args.name) == (7, run.QUICK["bursts"], "quick")
    assert args.selected == run.DEFAULT and not set(run.CLASSROOM) & set(run.DEFAULT)
    full = run.parse_args(["--only", "P1,P3", "--bursts", "2,4"])
    assert (full.spawns, full.bursts, full.selected, full.name) == (20, [2, 4], ["P1", "P3"], "latest")
    assert run.bench_users(full) == ["b01", "b02", "b03", "b04", "b05"]  # P6 needs 5


def test_the_classroom_benchmarks_run_when_named_with_their_own_counts():
    args = run.parse_args(["--only", "class,noisy,footprint", "--noisy-window", "45"])
    assert [run.options(n) for n in args.selected] == [
        ("class_users",), ("noisy_users", "noisy_window"), ("footprint_servers", "api_requests")]
    assert (args.class_users, args.noisy_users, args.noisy_window, args.footprint_servers,
            args.api_requests) == (30, 20, 45, 50, 500)
    assert len(run.bench_users(args)) == 50  # footprint's servers; noisy needs 20 + the neighbour
    quick = run.parse_args(["--quick", "--only", "noisy", "--noisy-users", "7"])
    assert run.bench_users(quick) == [f"b0{i}" for i in range(1, 9)]  # 7 + the neighbour


def test_an_unknown_benchmark_is_refused():
    with pytest.raises(SystemExit):
        run.parse_args(["--only", "P9"])
