"""A small GitHub-compatible OAuth server for the integration tier: the parts of GitHub (and
GitHub Enterprise) that OAuthenticator's GitHubOAuthenticator uses, and nothing else.

- GET  /login/oauth/authorize      the page a person sees: who they are, and "Authorize"
- POST /login/oauth/authorize      their approval: back to the app's callback with a code
- POST /login/oauth/access_token   the hub trades the code for a token (client secret, PKCE)
- GET  /api/v3/user, /user/emails, /user/teams, /orgs/ORG/members/NAME,
  /orgs/ORG/teams/TEAM/members/NAME   what the hub asks with that token
- GET  /_calls                     for the tests: which endpoints were called, from where

Like GitHub, it refuses an unknown client, a callback other than the registered one, a
wrong secret, a reused code and a PKCE verifier that does not match; a token error comes
back as HTTP 200 with an `error` field, as GitHub's does.

It runs with the standard library only (the tests start it in a container from the hub
image) and reads its settings from a JSON file, so the client secret never appears on a
command line:
    {"client_id": ..., "client_secret": ..., "callback": ...,
     "users": ["ada", ...], "teams": {"org:team": ["ada", ...]}}
"""
import base64
import hashlib
import html
import json
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

API = "/api/v3"


class State:
    def __init__(self, config):
        self.config = config
        self.codes = {}  # code -> grant
        self.tokens = {}  # token -> login
        self.calls = []  # (method, path without query, client address)
        self.lock = threading.Lock()

    def orgs_of(self, login):
        teams = self.config.get("teams", {})
        return {key.split(":")[0] for key, members in teams.items() if login in members}

    def in_team(self, org, team, login):
        return login in self.config.get("teams", {}).get(f"{org}:{team}", [])


class Handler(BaseHTTPRequestHandler):
    server_version = "FakeGitHub/1.0"
    state: State = None

    # --- plumbing --------------------------------------------------------------------------
    def log_message(self, fmt, *args):
        # One line per request, path only: query strings carry codes and states.
        sys.stdout.write(f"{self.address_string()} {self.command} {urlsplit(self.path).path}\n")
        sys.stdout.flush()

    def _record(self):
        with self.state.lock:
            self.state.calls.append((self.command, urlsplit(self.path).path, self.client_address[0]))

    def _send(self, status, body=b"", content_type="application/json", headers=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _form(self):
        length = int(self.headers.get("Content-Length") or 0)
        fields = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
        return {k: v[0] for k, v in fields.items()}

    def _query(self):
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}

    def _login_from_token(self):
        kind, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if kind.lower() not in ("bearer", "token"):
            return None
        return self.state.tokens.get(token)

    # --- the browser's side ----------------------------------------------------------------
    def _check_authorize(self, params):
        config = self.state.config
        if params.get("client_id") != config["client_id"]:
            return "The client_id does not belong to any registered application."
        if params.get("redirect_uri") != config["callback"]:
            return "The redirect_uri is not the callback registered for this application."
        if params.get("response_type", "code") != "code":
            return "Only response_type=code is supported."
        return ""

    def do_GET(self):
        self._record()
        path = urlsplit(self.path).path
        if path == "/login/oauth/authorize":
            return self._authorize_page(self._query())
        if path == "/_calls":
            return self._send(200, self.state.calls)
        if path.startswith(API + "/"):
            return self._api(path[len(API):])
        return self._send(404, {"message": "Not Found"})

    def _authorize_page(self, params):
        problem = self._check_authorize(params)
        if problem:
            return self._send(400, f"<h1>Application error</h1><p>{html.escape(problem)}</p>",
                              "text/html; charset=utf-8")
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in params.items()
        )
        page = f"""<!doctype html>
<html><head><title>Authorize application</title></head>
<body style="font-family: sans-serif; max-width: 30em; margin: 3em auto">
<h1>Sign in to GitHub (test server)</h1>
<p>to continue to <strong>JupyterHub</strong>, which asks for:
<code>{html.escape(params.get("scope", "") or "public data")}</code></p>
<form method="post" action="/login/oauth/authorize">
{hidden}
<label>Username or email address <input id="login_field" name="login" autofocus></label>
<p><button id="authorize" type="submit" name="authorize" value="1">Authorize</button></p>
</form></body></html>"""
        return self._send(200, page, "text/html; charset=utf-8")

    def do_POST(self):
        self._record()
        path = urlsplit(self.path).path
        if path == "/login/oauth/authorize":
            return self._approve(self._form())
        if path == "/login/oauth/access_token":
            return self._token(self._form())
        return self._send(404, {"message": "Not Found"})

    def _approve(self, form):
        problem = self._check_authorize(form)
        login = form.get("login", "").strip()
        if not problem and login not in self.state.config["users"]:
            problem = "Incorrect username or password."
        if problem:
            return self._send(400, f"<h1>Sign-in failed</h1><p>{html.escape(problem)}</p>",
                              "text/html; charset=utf-8")
        code = secrets.token_hex(10)
        with self.state.lock:
            self.state.codes[code] = {
                "login": login, "redirect_uri": form["redirect_uri"],
                "scope": form.get("scope", ""),
                "challenge": form.get("code_challenge", ""),
                "method": form.get("code_challenge_method", ""),
            }
        query = urlencode({"code": code, "state": form.get("state", "")})
        self._send(302, b"", "text/plain", headers=[("Location", f"{form['redirect_uri']}?{query}")])

    # --- the hub's side ------------------------------------------------------------------
    def _token(self, form):
        config = self.state.config
        with self.state.lock:
            grant = self.state.codes.pop(form.get("code", ""), None)  # a code works once
        error = ""
        if form.get("client_id") != config["client_id"] or form.get("client_secret") != config["client_secret"]:
            error = ("incorrect_client_credentials",
                     "The client_id and/or client_secret passed are incorrect.")
        elif grant is None:
            error = ("bad_verification_code", "The code passed is incorrect or expired.")
        elif form.get("redirect_uri") != grant["redirect_uri"]:
            error = ("redirect_uri_mismatch", "The redirect_uri does not match the authorization.")
        elif grant["challenge"]:
            verifier = form.get("code_verifier", "").encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode()
            if grant["method"] != "S256" or digest != grant["challenge"]:
                error = ("invalid_grant", "The code_verifier does not match the code_challenge.")
        if error:
            return self._send(200, {"error": error[0], "error_description": error[1]})
        token = "gho_" + secrets.token_hex(18)
        with self.state.lock:
            self.state.tokens[token] = grant["login"]
        self._send(200, {"access_token": token, "token_type": "bearer", "scope": grant["scope"]})

    def _api(self, path):
        login = self._login_from_token()
        if login is None:
            return self._send(401, {"message": "Requires authentication"})
        parts = path.strip("/").split("/")
        if parts == ["user"]:
            number = self.state.config["users"].index(login) + 1
            return self._send(200, {"login": login, "id": number, "name": login.title(),
                                    "email": f"{login}@users.noreply.invalid", "type": "User"})
        if parts == ["user", "emails"]:
            return self._send(200, [{"email": f"{login}@users.noreply.invalid",
                                     "primary": True, "verified": True}])
        if parts == ["user", "teams"]:
            teams = [
                {"slug": key.split(":")[1], "organization": {"login": key.split(":")[0]}}
                for key, members in self.state.config.get("teams", {}).items() if login in members
            ]
            return self._send(200, teams)
        if len(parts) == 4 and parts[0] == "orgs" and parts[2] == "members":
            member = parts[1] in self.state.orgs_of(parts[3])
            return self._send(204 if member else 404, b"" if member else {"message": "Not Found"})
        if len(parts) == 6 and parts[0] == "orgs" and parts[2] == "teams" and parts[4] == "members":
            member = self.state.in_team(parts[1], parts[3], parts[5])
            return self._send(204 if member else 404, b"" if member else {"message": "Not Found"})
        return self._send(404, {"message": "Not Found"})


def main(argv):
    config_path, port = argv[1], int(argv[2])
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    Handler.state = State(config)
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    print(f"fake GitHub listening on port {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv)
