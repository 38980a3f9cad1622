"""bench/classroom.py's pure parts: what `docker stats` and `docker top` give, read as the
figures need them; what counts as a hub or proxy restart; where the CPU went; the class's
floor. The benchmarks themselves run against a real deployment (`python -m bench.run --only
class,noisy,footprint`)."""
import pytest

from bench import classroom
from bench.deployment import BenchError


def test_memory_is_what_docker_stats_shows_on_cgroup_v1_and_v2():
    v1 = {"memory_stats": {"usage": 300, "stats": {"total_inactive_file": 100, "cache": 150}}}
    v2 = {"memory_stats": {"usage": 300, "stats": {"inactive_file": 40}}}
    odd = {"memory_stats": {"usage": 300, "stats": {"total_inactive_file": 400}}}
    assert [classroom.memory_in_use(s) for s in (v1, v2, odd)] == [200, 260, 300]


def test_the_server_rss_is_the_singleuser_process_not_tini():
    top = {"Titles": ["PID", "RSS", "COMMAND"],
           "Processes": [["10", "900", "tini -- jupyterhub-singleuser"],
                         ["11", "102400", "/opt/notebook/bin/python3 /opt/notebook/bin/jupyterhub-singleuser"]]}
    processes = classroom.rss_by_process(top)
    assert processes[0] == ("10", "tini -- jupyterhub-singleuser", 900 * 1024)
    assert classroom.server_process(processes) == ("11", 100 << 20)
    with pytest.raises(BenchError, match="one jupyterhub-singleuser"):
        classroom.server_process(processes[:1])
    status = "Name:\tpython3\nVmRSS:\t  102400 kB\nRssAnon:\t   61440 kB\nRssFile:\t   40960 kB\nRssShmem:\t       0 kB\n"
    assert classroom.rss_parts(status) == {"RssAnon": 60 << 20, "RssFile": 40 << 20, "RssShmem": 0}


def test_the_engines_cpu_is_read_from_proc_stat_whatever_the_name_holds():
    line = "2881 (dockerd) S 1 2881 2881 0 -1 4194560 1 2 3 4 150 50 7 8 20 0 40 0 100 1 2"
    assert classroom.stat_cpu(line) == ("dockerd", 200)
    odd = "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 9 1 0 0 20 0 1 0 1 1 1"
    assert classroom.stat_cpu(odd) == ("a) b (c)", 10)


def test_a_restart_of_the_hub_or_the_proxy_is_seen():
    hub = {"id": "a", "started_at": "t0", "restart_count": 0, "proxy_pids": ["42"]}
    assert classroom.restarts(hub, dict(hub)) == []
    assert classroom.restarts(hub, {**hub, "proxy_pids": ["57"]}) == ["proxy_pids: ['42'] -> ['57']"]
    assert classroom.restarts(hub, {**hub, "started_at": "t1", "restart_count": 1}) == [
        "started_at: t0 -> t1", "restart_count: 0 -> 1"]
    assert classroom.restarts(hub, {**hub, "proxy_pids": []})[-1] == (
        "no configurable-http-proxy process in the hub container")


def test_the_cpu_not_counted_by_a_part_is_the_rest():
    before = {"host": (100.0, 400.0), "bench": 5.0, "hub": 10.0}
    after = {"host": (160.0, 480.0), "bench": 9.0, "hub": 22.0}
    spent = classroom.where_cpu_went(before, after, servers=30.0)
    assert spent == {"host_cpu_s": 60.0, "busy_share": 0.75, "bench": 4.0, "hub": 12.0,
                     "servers": 30.0, "rest": 14.0}
    assert classroom.own_share(spent) == 46.0


def test_the_class_floor_shares_every_session_out_over_the_cores():
    assert classroom.class_floor(4.0, 30, 2) == 60.0
    assert classroom.class_floor(4.0, 1, 1) == 4.0


def test_many_servers_go_in_batches():
    names = [f"b{i:02d}" for i in range(1, 24)]
    parts = classroom.batches(names, 10)
    assert [len(p) for p in parts] == [10, 10, 3] and sum(parts, []) == names
    assert classroom.batches([], 10) == []


def test_the_bad_neighbours_code_is_bounded_in_time_and_size():
    assert "['timeout', '900', sys.executable" in classroom.CPU_HOG.format(seconds=900)
    assert classroom.FORK_BOMB.format(seconds=900).endswith(
        "os.system(\"timeout -s KILL 900 bash -c ':(){ :|:& };:' >/dev/null 2>&1 &\")")
    bomb = classroom.MEMORY_BOMB.format(chunks=64)
    assert "range(64)" in bomb
    compile(bomb, "bomb", "exec"), compile(classroom.CPU_HOG.format(seconds=1), "hog", "exec")
