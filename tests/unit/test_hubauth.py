"""hub/hubauth.py against a real JupyterHub database, and one real hub over HTTP."""

import asyncio
import http.client
import logging
import re
import socket
import subprocess
import sys
import textwrap
import time
import urllib.parse
from pathlib import Path

import bcrypt
import pytest
from jupyterhub.orm import new_session_factory
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler
from nativeauthenticator.orm import UserInfo

HUB_DIR = Path(__file__).resolve().parents[2] / "hub"
# hubauth.py is copied next to jupyterhub_config.py in the image, not installed.
sys.path.insert(0, str(HUB_DIR))

import hubauth  # noqa: E402

STRONG = "correct horse battery staple"


@pytest.fixture
def db():
    session = new_session_factory("sqlite://")()
    yield session
    session.close()


@pytest.fixture
def passwords_file(tmp_path):
    def write(text, mode=0o600):
        path = tmp_path / "initial-passwords"
        path.write_text(textwrap.dedent(text))
        path.chmod(mode)
        return path

    return write


def make_auth(db, path, allowed=(), admins=()):
    return hubauth.ProvisionedNativeAuthenticator(
        _deprecated_db_session=db,
        allowed_users=set(allowed),
        admin_users=set(admins),
        initial_passwords_file=str(path),
        log=logging.getLogger("test_hubauth"),
    )


def login(auth, name, password):
    data = {"username": name, "password": password}
    return asyncio.run(auth.authenticate(None, data))


def test_listed_users_get_authorized_accounts_that_log_in(db, passwords_file, caplog):
    path = passwords_file(
        """\
        # written by the operator's tooling
        alice  alice-secret-1

        boss boss secret with spaces
        """
    )
    with caplog.at_level(logging.INFO, logger="test_hubauth"):
        auth = make_auth(db, path, allowed={"alice"}, admins={"boss"})

    assert {u.username: u.is_authorized for u in UserInfo.all_users(db)} == {
        "alice": True,
        "boss": True,
    }
    assert login(auth, "alice", "alice-secret-1") == "alice"
    assert login(auth, "boss", "boss secret with spaces") == "boss"
    assert login(auth, "alice", "boss secret with spaces") is None
    assert "Created 2 account(s)" in caplog.text
    assert "alice-secret-1" not in caplog.text
    assert "boss secret" not in caplog.text


def test_names_are_normalized_like_logins(db, passwords_file):
    # JupyterHub lowercases allowed_users only after the authenticator is built.
    auth = make_auth(db, passwords_file("Alice pw-alice\n"), allowed={"ALICE"})

    assert [u.username for u in UserInfo.all_users(db)] == ["alice"]
    assert login(auth, "Alice", "pw-alice") == "alice"


def test_existing_account_keeps_its_password(db, passwords_file):
    old_hash = bcrypt.hashpw(b"chosen-by-alice", bcrypt.gensalt())
    db.add(UserInfo(username="alice", password=old_hash, is_authorized=True))
    db.commit()

    auth = make_auth(db, passwords_file("alice initial-pw\n"), allowed={"alice"})

    assert [u.password for u in UserInfo.all_users(db)] == [old_hash]
    assert login(auth, "alice", "chosen-by-alice") == "alice"
    assert login(auth, "alice", "initial-pw") is None


def test_name_only_in_the_file_gets_no_account(db, passwords_file):
    make_auth(db, passwords_file("alice pw-a\neve pw-e\n"), allowed={"alice"})

    assert UserInfo.find(db, "eve") is None
    assert UserInfo.find(db, "alice") is not None


def test_listed_name_without_password_is_a_warning(db, passwords_file, caplog):
    with caplog.at_level(logging.WARNING, logger="test_hubauth"):
        make_auth(db, passwords_file("alice pw-a\n"), allowed={"alice", "bob"})

    assert UserInfo.find(db, "bob") is None
    assert any(
        r.levelno == logging.WARNING and "bob" in r.getMessage() for r in caplog.records
    )


@pytest.mark.parametrize("mode", [0o640, 0o604], ids=["group", "other"])
def test_file_others_can_read_refuses_to_start(db, passwords_file, mode):
    path = passwords_file("alice pw-a\n", mode=mode)

    with pytest.raises(ValueError, match="chmod 600") as raised:
        make_auth(db, path, allowed={"alice"})
    assert str(path) in str(raised.value)
    assert UserInfo.all_users(db) == []


def test_missing_file_creates_nothing(db, tmp_path, caplog):
    path = tmp_path / "not-written-yet"
    with caplog.at_level(logging.WARNING, logger="test_hubauth"):
        make_auth(db, path, allowed={"alice"}, admins={"boss"})

    assert UserInfo.all_users(db) == []
    assert str(path) in caplog.text


def test_signup_is_off_so_nobody_can_claim_an_admin_name(db, passwords_file):
    # boss has no initial password, so the account is still unclaimed: with sign-up
    # on, NativeAuthenticator would pre-authorize whoever registers it first.
    path = passwords_file("alice pw-a\n")
    auth = make_auth(db, path, allowed={"alice"}, admins={"boss"})

    assert auth.enable_signup is False
    assert auth.open_signup is False
    assert auth.create_user("boss", STRONG) is None
    assert auth.create_user("mallory", STRONG) is None
    assert [u.username for u in UserInfo.all_users(db)] == ["alice"]


def test_login_route_uses_a_handler_with_a_null_statsd(db):
    auth = make_auth(db, "")
    handlers = auth.get_handlers(app=None)
    upstream = NativeAuthenticator.get_handlers(auth, app=None)

    assert dict(handlers)[r"/login"] is hubauth.LoginHandler
    assert issubclass(hubauth.LoginHandler, NativeLoginHandler)
    assert [p for p, _ in handlers] == [p for p, _ in upstream]
    assert [h for p, h in handlers if p != r"/login"] == [
        h for p, h in upstream if p != r"/login"
    ]
    statsd = hubauth.LoginHandler.statsd
    statsd.timer("login.authenticate").start().stop(send=False)
    statsd.incr("x")
    statsd.decr("x")
    statsd.gauge("x", 1)
    statsd.timing("x", 1.0)


# A real hub process, so the login form is posted through the real handler stack.
# The hub needs a proxy to start; this one accepts every route and forwards nothing,
# which is enough because the test talks to the hub's own port.
HUB_CONFIG = """\
import sys
sys.path.insert(0, {hub_dir!r})
from jupyterhub.proxy import Proxy
import hubauth

class NoProxy(Proxy):
    should_start = False
    async def get_all_routes(self):
        return {{}}

c.JupyterHub.proxy_class = NoProxy
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {port}
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.db_url = "sqlite:///jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "cookie_secret"
c.JupyterHub.authenticator_class = hubauth.ProvisionedNativeAuthenticator
c.Authenticator.allowed_users = {{"alice"}}
c.ProvisionedNativeAuthenticator.initial_passwords_file = "initial-passwords"
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read().decode()
    finally:
        conn.close()


def wait_for_login_page(port, proc, deadline_s=60):
    deadline = time.monotonic() + deadline_s
    last = "nothing yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"hub exited with {proc.returncode} before answering")
        try:
            status, headers, body = request(port, "GET", "/hub/login")
            if status == 200:
                return headers, body
            last = f"HTTP {status}"
        except OSError as e:
            last = repr(e)
        time.sleep(0.2)
    raise AssertionError(f"/hub/login not 200 after {deadline_s}s; last: {last}")


@pytest.fixture
def hub(tmp_path):
    port = free_port()
    (tmp_path / "jupyterhub_config.py").write_text(
        HUB_CONFIG.format(hub_dir=str(HUB_DIR), port=port)
    )
    secrets = tmp_path / "initial-passwords"
    secrets.write_text("alice alice-pw-9\n")
    secrets.chmod(0o600)
    log = (tmp_path / "hub.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", "jupyterhub_config.py"],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        # pytest shows this only when the test failed.
        print((tmp_path / "hub.log").read_text())


def post_login(port, headers, body, username, password):
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', body).group(1)
    cookies = "; ".join(
        c.split(";", 1)[0] for c in headers.get_all("Set-Cookie") or []
    )
    form = urllib.parse.urlencode(
        {"_xsrf": xsrf, "username": username, "password": password}
    )
    return request(
        port,
        "POST",
        "/hub/login",
        body=form,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": cookies,
        },
    )


def test_real_hub_logs_in_with_the_initial_password(hub):
    port, proc = hub
    headers, body = wait_for_login_page(port, proc)

    status, _, page = post_login(port, headers, body, "alice", "wrong-password")
    assert status == 200
    assert "Invalid username or password" in page

    status, answer, _ = post_login(port, headers, body, "alice", "alice-pw-9")
    assert status == 302
    assert any(
        c.startswith("jupyterhub-session-id=") for c in answer.get_all("Set-Cookie")
    )
    assert "/signup" not in body
