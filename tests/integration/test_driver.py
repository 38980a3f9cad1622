"""The load driver (bench/driver.py) against a real deployment, with two users at once."""
import http.client
import json
import ssl

import pytest

from bench import driver

pytestmark = pytest.mark.integration

USERS = ("alice", "bob")


@pytest.fixture(scope="module")
def hub(deployment):
    (deployment.root / "userlist").write_text("admin admin\n" + "".join(f"{u}\n" for u in USERS))
    deployment.inv_ok("build", "up")
    return deployment


def test_two_users_at_once_one_by_the_login_form_one_by_token(hub):
    admin = driver.HubUser(hub.url, hub.cafile)
    admin.login_form("admin", hub.password("admin"))
    response = admin.request("POST", "/hub/api/users/bob/tokens", json={"note": "driver test"})
    response.raise_for_status()
    users = [driver.Credentials("alice", password=hub.password("alice")),
             driver.Credentials("bob", token=response.json()["token"])]
    report = driver.run(hub.url, hub.cafile, users, sessions=2, concurrency=2, time_limit_s=120)
    print(driver.format_report(report))
    assert (len(report.results), report.succeeded, report.failed) == (2, 2, 0)
    assert sorted(r.user for r in report.results) == ["alice", "bob"]
    for result in report.results:
        assert list(result.phases) == list(driver.PHASES)
        assert all(0 < seconds for seconds in result.phases.values()), result
        assert result.phases["spawn"] < 120 and result.phases["stop"] < 60, result
        # A session is its phases one after another, and the two ran side by side.
        assert result.total <= report.wall_s
    figures = report.phase_summary()
    assert all(figures[p]["n"] == 2 for p in driver.PHASES)
    assert figures["total"]["max"] <= report.wall_s
    assert all(not admin.user(u).get("servers") for u in ("alice", "bob"))


def test_the_command_line_reports_a_refused_login_as_a_failed_session(hub, tmp_path, capsys):
    passwords = tmp_path / "passwords"
    passwords.write_text("alice wrong-password\n")
    out = tmp_path / "report.json"
    code = driver.main(["--url", hub.url, "--cafile", hub.cafile, "--passwords", str(passwords),
                        "--users", "alice", "--sessions", "1", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 1
    assert "alice: failed at login: DriverError: the login form refused alice" in printed
    report = json.loads(out.read_text())
    assert (report["run"], report["succeeded"], report["failed"]) == (1, 0, 1)
    (result,) = report["results"]
    assert (result["ok"], result["failed_phase"], result["phases"]) == (False, "login", {})


def test_the_proxy_keeps_connections_alive(hub):
    """The driver's (and browsers') per-request cost assumes it: one TLS connection, many
    requests (configurable-http-proxy 5)."""
    context = ssl.create_default_context(cafile=hub.cafile)
    conn = http.client.HTTPSConnection("127.0.0.1", hub.port, context=context, timeout=10)
    try:
        for _ in range(3):
            conn.request("GET", "/hub/api")
            response = conn.getresponse()
            response.read()
            assert response.status == 200
            assert response.getheader("connection", "").lower() != "close"
            sock = conn.sock
            assert sock is not None  # not closed after the answer
        conn.request("GET", "/hub/api")
        conn.getresponse().read()
        assert conn.sock is sock  # the same connection served every request
    finally:
        conn.close()
