"""tasks.access: the tool's API token, the secrets fingerprint, and removing users dropped
from userlist (the REST calls checked against a recording stand-in for the hub; the
integration tier does the same against a real hub)."""
import stat

import pytest
from invoke.exceptions import Exit

from tasks import access
from tasks.access import (
    GROUP, TOKEN_FILE, HubAPI, HubAPIError, apply_userlist, ensure_api_token, ensure_login_files,
    plan_removals, secrets_fingerprint,
)
from tasks.oauth import OAuthApp
from tasks.probe import local_endpoint
from tasks.userlist import Users

USERS = Users(admins=("ada",), users=("cy",))


class RecordingHub:
    """Answers the calls apply_userlist makes, as JupyterHub 6 does, and records them."""

    def __init__(self, group=None, users=("ada", "bob", "cy", "dave"), stopping=0):
        self.group = None if group is None else list(group)
        self.users = set(users)
        self.stopping = stopping  # how many DELETEs answer "still stopping" first
        self.calls = []

    def call(self, method, path, body=None):
        self.calls.append((method, path, body))
        if (method, path) == ("GET", "groups?offset=0&limit=200"):  # tasks/groups.py
            return 200, []
        if (method, path) == ("GET", f"groups/{GROUP}"):
            return (404, {"message": "Not Found"}) if self.group is None else (
                200, {"name": GROUP, "users": self.group})
        if method == "DELETE" and path.startswith("users/"):
            name = path.split("/", 1)[1]
            if self.stopping:
                self.stopping -= 1
                return 400, {"message": f"{name}'s server is in the process of stopping, please wait."}
            if name not in self.users:
                return 404, None
            self.users.discard(name)
            if self.group:
                self.group = [n for n in self.group if n != name]
            return 204, None
        if (method, path) == ("POST", f"groups/{GROUP}"):
            self.group = list(body["users"])
            return 201, {"name": GROUP, "users": self.group}
        if (method, path) == ("POST", f"groups/{GROUP}/users"):
            self.group += body["users"]
            return 200, {"name": GROUP, "users": self.group}
        return 500, {"message": "unexpected"}

    expect = HubAPI.expect


def test_plan_removals_is_what_userlist_lost():
    assert plan_removals({"ada", "bob", "cy"}, USERS) == ["bob"]
    assert plan_removals(set(), USERS) == []
    assert plan_removals({"zed", "bob"}, USERS) == ["bob", "zed"]


def test_first_run_records_the_userlist_and_removes_nobody():
    hub = RecordingHub(group=None)
    assert apply_userlist(hub, USERS) == []
    assert hub.calls == [("GET", f"groups/{GROUP}", None),
                         ("POST", f"groups/{GROUP}", {"users": ["ada", "cy"]})]


def test_a_dropped_name_is_deleted_then_the_record_follows_the_file():
    hub = RecordingHub(group=["ada", "bob"])
    assert apply_userlist(hub, USERS) == ["bob"]
    assert hub.calls == [("GET", f"groups/{GROUP}", None),
                         ("DELETE", "users/bob", None),
                         ("POST", f"groups/{GROUP}/users", {"users": ["cy"]})]
    assert "dave" in hub.users  # added in the admin panel: never in the record, never removed


def test_nothing_to_do_makes_no_change():
    hub = RecordingHub(group=["ada", "cy"])
    assert apply_userlist(hub, USERS) == []
    assert [m for m, _, _ in hub.calls] == ["GET"]


def test_a_user_already_gone_counts_as_removed():
    hub = RecordingHub(group=["ada", "cy", "gone"])
    assert apply_userlist(hub, USERS) == ["gone"]


def test_delete_waits_while_the_hub_is_still_stopping_the_server(monkeypatch):
    monkeypatch.setattr(access.time, "sleep", lambda s: None)
    hub = RecordingHub(group=["ada", "bob", "cy"], stopping=2)
    assert apply_userlist(hub, USERS) == ["bob"]
    assert [c for c in hub.calls if c[0] == "DELETE"] == [("DELETE", "users/bob", None)] * 3


def test_names_are_quoted_into_the_path():
    hub = RecordingHub(group=["ada", "cy", "a/b"], users=("ada", "cy", "a/b"))
    apply_userlist(hub, USERS)
    assert ("DELETE", "users/a%2Fb", None) in hub.calls


def test_an_api_error_stops_before_the_record_changes():
    class Refusing(RecordingHub):
        def call(self, method, path, body=None):
            if method == "DELETE":
                self.calls.append((method, path, body))
                return 403, {"message": "Action is not authorized"}
            return super().call(method, path, body)

    hub = Refusing(group=["ada", "bob", "cy"])
    with pytest.raises(HubAPIError, match="deleting bob answered 403 Action is not authorized"):
        apply_userlist(hub, USERS)
    assert [m for m, _, _ in hub.calls] == ["GET", "DELETE"]  # the record still names bob


def test_revoke_says_what_it_did_and_turns_errors_into_exit(tmp_path, monkeypatch):
    monkeypatch.setattr(access, "apply_userlist", lambda api, users: ["bob"])
    monkeypatch.setattr("tasks.groups.apply_groups", lambda api, users: "")
    line = access.revoke_removed_users(tmp_path, local_endpoint(8443), "ab", USERS,
                                       lambda n: f"p-user-{n}")
    assert line == ("userlist: access removed for bob (server stopped, logins ended; "
                    "kept their volume p-user-bob)")
    monkeypatch.setattr("tasks.groups.apply_groups", lambda api, users: "groups: physics (2)")
    line = access.revoke_removed_users(tmp_path, local_endpoint(8443), "ab", USERS, str)
    assert line.endswith(")\ngroups: physics (2)")

    def fail_with(status):
        def fail(api, users):
            raise HubAPIError(f"GET /hub/api/groups/userlist answered {status}", status)
        return fail

    monkeypatch.setattr(access, "apply_userlist", fail_with(403))
    with pytest.raises(Exit, match="applying userlist through its API failed: GET /hub/api/"
                                   r"groups/userlist answered 403.\nThe hub does not know"):
        access.revoke_removed_users(tmp_path, local_endpoint(8443), "ab", USERS, str)
    monkeypatch.setattr(access, "apply_userlist", fail_with(500))
    with pytest.raises(Exit, match=r"answered 500.\nRun `inv up` again"):
        access.revoke_removed_users(tmp_path, local_endpoint(8443), "ab", USERS, str)


def test_the_token_is_made_once_private_and_kept(tmp_path):
    token = ensure_api_token(tmp_path)
    path = tmp_path / TOKEN_FILE
    assert len(token) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_api_token(tmp_path) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_token_is_never_in_the_api_repr():
    assert "s3cret" not in repr(HubAPI(local_endpoint(8443), "ab", "s3cret"))


def test_login_files(tmp_path):
    assert ensure_login_files(tmp_path) == f"secrets/{TOKEN_FILE}: made (mode 0600)"
    app = OAuthApp("Iv1.x", "y" * 40, "https://h/hub/oauth_callback")
    assert ensure_login_files(tmp_path, app) == (
        f"secrets/{TOKEN_FILE}: kept; secrets/oauth.env: written from the environment (mode 0600)")
    assert (tmp_path / "oauth.env").exists()


def test_the_fingerprint_changes_with_either_secret_and_only_then(tmp_path):
    empty = secrets_fingerprint(tmp_path)
    (tmp_path / TOKEN_FILE).write_text("t1\n")
    with_token = secrets_fingerprint(tmp_path)
    (tmp_path / "oauth.env").write_text("GITHUB_CLIENT_SECRET=a\n")
    with_oauth = secrets_fingerprint(tmp_path)
    assert len({empty, with_token, with_oauth}) == 3
    assert secrets_fingerprint(tmp_path) == with_oauth
    (tmp_path / "initial-passwords").write_text("ada pw\n")  # read by the hub on its own
    assert secrets_fingerprint(tmp_path) == with_oauth
    (tmp_path / "oauth.env").write_text("GITHUB_CLIENT_SECRET=b\n")
    assert secrets_fingerprint(tmp_path) != with_oauth


@pytest.fixture
def https_hub(tmp_path):
    """A local HTTPS server with a certificate made as `inv cert` makes it, answering like
    the hub's API and recording what it was sent."""
    import json
    import ssl
    import threading
    from datetime import datetime, timezone
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from tasks import certs

    cert_pem, key_pem = certs.make_self_signed(["127.0.0.1"], datetime.now(timezone.utc))
    (tmp_path / "c.pem").write_bytes(cert_pem)
    (tmp_path / "k.pem").write_bytes(key_pem)
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_DELETE(self):
            seen.append((self.command, self.path, self.headers.get("Authorization")))
            self.send_response(204)
            self.end_headers()

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.command, self.path, json.loads(body)))
            answer = json.dumps({"users": ["ada"]}).encode()
            self.send_response(201)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], certs.inspect_pair(cert_pem, key_pem).sha256, seen
    server.shutdown()


def test_hub_api_speaks_json_with_the_token_over_the_pinned_certificate(https_hub):
    port, sha256, seen = https_hub
    api = HubAPI(local_endpoint(port), sha256, "t0ken")
    assert api.call("DELETE", "users/bob") == (204, None)
    assert api.call("POST", "groups/userlist", {"users": ["ada"]}) == (201, {"users": ["ada"]})
    assert seen == [("DELETE", "/hub/api/users/bob", "token t0ken"),
                    ("POST", "/hub/api/groups/userlist", {"users": ["ada"]})]


def test_hub_api_refuses_another_certificate(https_hub):
    port, _, seen = https_hub
    with pytest.raises(HubAPIError, match="presents another certificate"):
        HubAPI(local_endpoint(port), "0" * 64, "t0ken").call("DELETE", "users/bob")
    assert seen == []  # the token was never sent


def test_hub_api_reports_an_engine_that_does_not_answer():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(HubAPIError, match="GET /hub/api/groups/userlist: "):
        HubAPI(local_endpoint(port), "0" * 64, "t0ken").call("GET", "groups/userlist")
