"""Who keeps access: the tool's own API token for the hub, and taking access away from names
removed from userlist.

The hub keeps every user it has ever let in (JupyterHub's `allow_existing_users`, which is
also what keeps users an admin added in the admin panel), so dropping a name from userlist
alone would not lock that person out. `inv up` therefore deletes, through the hub's REST
API, each name that was in userlist the last time and is no longer: their server stops and
their tokens and logins die at once; their volume stays.

"The last time" is the hub group `userlist`, which `inv up` keeps equal to the file: the
record lives in the hub's database next to the users it describes, and admins see it in the
admin panel. Users added in the admin panel are not in it, so they are never removed.
"""
import hashlib
import http.client
import json
import secrets
import time
from pathlib import Path
from urllib.parse import quote

from invoke.exceptions import Exit

TOKEN_FILE = "hub-api-token"
GROUP = "userlist"


class HubAPIError(Exception):
    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


def ensure_api_token(secrets_dir: Path) -> str:
    """The token the hub registers for this tool (service `jupyterhub-deploy`, scopes to
    manage users and groups only); made once, mode 0600, never printed. A file others can
    read was refused before (tasks/secretfiles.py)."""
    from tasks.files import write_private

    path = secrets_dir / TOKEN_FILE
    if not path.exists():
        write_private(path, secrets.token_hex(32) + "\n")
    return path.read_text(encoding="utf-8").strip()


def ensure_login_files(secrets_dir: Path, oauth_app=None) -> str:
    """The secret files the hub reads at start: the tool's API token and, for GitHub login,
    secrets/oauth.env; returns what was done."""
    from tasks.oauth import ensure_oauth_file

    existed = (secrets_dir / TOKEN_FILE).exists()
    ensure_api_token(secrets_dir)
    done = f"secrets/{TOKEN_FILE}: {'kept' if existed else 'made (mode 0600)'}"
    if oauth_app is not None:
        done += "; " + ensure_oauth_file(secrets_dir, oauth_app)
    return done


def secrets_fingerprint(secrets_dir: Path, names=(TOKEN_FILE, "oauth.env")) -> str:
    """A digest of the secret files the hub reads only at start, handed to compose so that
    a new client secret or token recreates the hub. The files hold long random values, so
    their digest tells nothing about them."""
    digest = hashlib.sha256()
    for name in names:
        path = secrets_dir / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    return digest.hexdigest()


def plan_removals(recorded, users) -> list:
    """Names recorded as coming from userlist that it no longer has."""
    return sorted(set(recorded) - set(users.everyone))


class HubAPI:
    """The hub's REST API at an endpoint (tasks/probe.py), over HTTPS pinned to our
    certificate, with our token."""

    def __init__(self, endpoint, cert_sha256: str, token: str):
        self.endpoint, self.cert_sha256 = endpoint, cert_sha256
        self._token = token

    def __repr__(self):
        return f"HubAPI({self.endpoint.where})"  # never the token

    def call(self, method: str, path: str, body=None) -> tuple:
        """(status, parsed JSON or None) for one request to /hub/api/PATH."""
        from tasks.probe import ProbeError, pinned_connection

        try:
            conn = pinned_connection(self.endpoint, self.cert_sha256, timeout=60)
        except ProbeError as error:
            raise HubAPIError(str(error)) from None
        except (OSError, http.client.HTTPException) as error:
            raise HubAPIError(f"{method} /hub/api/{path}: {error}") from None
        try:
            headers = {"Authorization": f"token {self._token}"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, "/hub/api/" + path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            return response.status, (json.loads(raw) if raw.strip() else None)
        except (OSError, http.client.HTTPException, ValueError) as error:
            raise HubAPIError(f"{method} /hub/api/{path}: {error}") from None
        finally:
            conn.close()

    def expect(self, method, path, body=None, ok=(200, 201, 204)):
        status, answer = self.call(method, path, body)
        if status not in ok:
            message = (answer or {}).get("message", "") if isinstance(answer, dict) else ""
            raise HubAPIError(f"{method} /hub/api/{path} answered {status} {message}".rstrip(), status)
        return status, answer


def _user_path(name: str) -> str:
    return "users/" + quote(name, safe="")


def delete_user(api: HubAPI, name: str, deadline_s: float = 60.0) -> None:
    """Delete a user (the hub stops their server first); gone already counts as done."""
    end = time.monotonic() + deadline_s
    while True:
        status, answer = api.call("DELETE", _user_path(name))
        if status in (204, 404):
            return
        message = (answer or {}).get("message", "") if isinstance(answer, dict) else ""
        # 400 "... is in the process of stopping": the hub is still stopping their server.
        if status != 400 or "stopping" not in message or time.monotonic() >= end:
            raise HubAPIError(f"deleting {name} answered {status} {message}".rstrip(), status)
        time.sleep(0.5)


def apply_userlist(api: HubAPI, users) -> list:
    """Remove the names dropped from userlist, then record the current userlist; returns
    the names removed. Recording comes last, so a failure is retried by the next `inv up`."""
    status, group = api.expect("GET", f"groups/{GROUP}", ok=(200, 404))
    recorded = set(group.get("users", [])) if status == 200 else set()
    removed = plan_removals(recorded, users)
    for name in removed:
        delete_user(api, name)
    if status == 404:
        api.expect("POST", f"groups/{GROUP}", {"users": list(users.everyone)})
    else:
        missing = [n for n in users.everyone if n not in recorded]
        if missing:
            api.expect("POST", f"groups/{GROUP}/users", {"users": missing})
    return removed


def revoke_removed_users(secrets_dir: Path, endpoint, cert_sha256: str, users, volume_of,
                         c=None) -> str:
    """`inv up`'s last step, with the hub's endpoint as the tasks reach it (tasks/probe.py);
    returns the line to print. Commands are named as they work for `c`."""
    from tasks.groups import apply_groups
    from tasks.target import command_line

    api = HubAPI(endpoint, cert_sha256, ensure_api_token(secrets_dir))
    try:
        removed = apply_userlist(api, users)
        grouped = apply_groups(api, users)  # after: a removed user is in no group
    except HubAPIError as error:
        hint = ("The hub does not know the tool's token (secrets/hub-api-token): its image "
                f"predates it; run `{command_line(c, 'build', 'up')}`." if error.status in (401, 403)
                else f"Run `{command_line(c, 'up')}` again; if it keeps failing, see "
                     f"`{command_line(c, 'logs')}`.")
        raise Exit(f"The hub is up, but applying userlist through its API failed: {error}.\n{hint}")
    groups = f"\n{grouped}" if grouped else ""
    if not removed:
        return "userlist: applied, nobody removed" + groups
    kept = ", ".join(volume_of(name) for name in removed)
    return (f"userlist: access removed for {', '.join(removed)} (server stopped, logins ended; "
            f"kept their volume{'s' if len(removed) > 1 else ''} {kept})" + groups)
