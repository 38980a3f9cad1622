"""A client that does what a person does with the hub: log in through the form, start a
server, run code in a kernel over its websocket, read and write files.

Every request verifies TLS against the deployment's own certificate (passed per request:
REQUESTS_CA_BUNDLE, when set, would override a session-level `verify`).
"""
import json
import ssl
import time
import uuid

import requests
import websocket


class HubClient:
    def __init__(self, base_url: str, cafile: str):
        self.base = base_url.rstrip("/")
        self.cafile = cafile
        self.session = requests.Session()
        self.token = None

    # --- plumbing ---------------------------------------------------------------------------
    def request(self, method, path, *, auth="token", **kwargs):
        headers = kwargs.pop("headers", {})
        if auth == "token" and self.token:
            headers["Authorization"] = f"token {self.token}"
        elif auth == "cookie":
            headers["X-XSRFToken"] = self.session.cookies.get("_xsrf", path="/hub/", default="")
        return self.session.request(
            method, self.base + path, headers=headers, verify=self.cafile, timeout=30, **kwargs
        )

    # --- what a person does -----------------------------------------------------------------
    def login(self, username: str, password: str) -> requests.Response:
        """Fill in and send the login form, as a browser does."""
        self.session.get(self.base + "/hub/login", verify=self.cafile, timeout=30).raise_for_status()
        xsrf = self.session.cookies.get("_xsrf", path="/hub/", default="")
        return self.session.post(
            self.base + "/hub/login?next=",
            data={"username": username, "password": password, "_xsrf": xsrf},
            verify=self.cafile, timeout=30, allow_redirects=False,
        )

    def browse(self, path: str) -> requests.Response:
        """GET with the browser's cookies only (no token), following redirects like a browser."""
        return self.session.get(self.base + path, verify=self.cafile, timeout=30)

    def make_token(self, username: str) -> str:
        response = self.request(
            "POST", f"/hub/api/users/{username}/tokens", auth="cookie",
            json={"note": "integration test", "expires_in": 3600},
        )
        response.raise_for_status()
        self.token = response.json()["token"]
        return self.token

    def user(self, username: str) -> dict:
        response = self.request("GET", f"/hub/api/users/{username}")
        response.raise_for_status()
        return response.json()

    def start_server(self, username: str, deadline_s: float = 120) -> dict:
        response = self.request("POST", f"/hub/api/users/{username}/server")
        if response.status_code not in (201, 202, 400):  # 400: already running
            response.raise_for_status()
        end = time.monotonic() + deadline_s
        last = None
        while time.monotonic() < end:
            last = self.user(username)
            server = last.get("servers", {}).get("")
            if server and server.get("ready"):
                return server
            time.sleep(0.25)
        raise AssertionError(f"{username}'s server not ready within {deadline_s} s; last: {last}")

    def stop_server(self, username: str, deadline_s: float = 60) -> None:
        self.request("DELETE", f"/hub/api/users/{username}/server")
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if not self.user(username).get("servers"):
                return
            time.sleep(0.25)
        raise AssertionError(f"{username}'s server did not stop within {deadline_s} s")

    def put_file(self, username: str, path: str, text: str) -> None:
        response = self.request(
            "PUT", f"/user/{username}/api/contents/{path}",
            json={"type": "file", "format": "text", "content": text},
        )
        response.raise_for_status()

    def get_file(self, username: str, path: str) -> str:
        response = self.request("GET", f"/user/{username}/api/contents/{path}?content=1")
        response.raise_for_status()
        return response.json()["content"]

    def run_code(self, username: str, code: str, deadline_s: float = 60) -> str:
        """Start a kernel, execute `code` over the websocket, return the text/plain result."""
        kernel = self.start_kernel(username)
        try:
            return self.execute(username, kernel, code, deadline_s)
        finally:
            self.request("DELETE", f"/user/{username}/api/kernels/{kernel}")

    def start_kernel(self, username: str) -> str:
        response = self.request("POST", f"/user/{username}/api/kernels", json={"name": "python3"})
        response.raise_for_status()
        return response.json()["id"]

    def send(self, username: str, kernel: str, code: str) -> None:
        """Start `code` in a running kernel and return at once, without waiting for it."""
        ws = self._channels(username, kernel, 30)
        try:
            ws.send(json.dumps(self._execute_request(username, uuid.uuid4().hex, code)))
        finally:
            ws.close()

    def _channels(self, username: str, kernel: str, timeout: float):
        # http -> ws, https -> wss: the same client talks to the hub or straight to a server.
        url = "ws" + self.base[len("http"):] + f"/user/{username}/api/kernels/{kernel}/channels"
        sslopt = {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": self.cafile} if self.cafile else {}
        return websocket.create_connection(
            url, header=[f"Authorization: token {self.token}"], sslopt=sslopt, timeout=timeout,
        )

    @staticmethod
    def _execute_request(username: str, msg_id: str, code: str) -> dict:
        return {
            "header": {"msg_id": msg_id, "username": username, "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False},
        }

    def execute(self, username: str, kernel: str, code: str, deadline_s: float = 60) -> str:
        """Execute `code` in a running kernel over its websocket; the text/plain result."""
        ws = self._channels(username, kernel, deadline_s)
        try:
            msg_id = uuid.uuid4().hex
            ws.send(json.dumps(self._execute_request(username, msg_id, code)))
            end = time.monotonic() + deadline_s
            seen = []
            while time.monotonic() < end:
                # A short timeout per receive: the server's websocket pings are answered
                # inside recv() without returning, so one long recv() could outlast the
                # deadline by as long as the pings keep coming.
                ws.settimeout(max(0.1, min(5.0, end - time.monotonic())))
                try:
                    message = json.loads(ws.recv())
                except websocket.WebSocketTimeoutException:
                    continue
                if message.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = message["msg_type"]
                seen.append(kind)
                if kind == "execute_result":
                    return message["content"]["data"]["text/plain"]
                if kind == "error":
                    raise AssertionError(f"kernel error: {message['content']}")
            raise AssertionError(f"no execute_result within {deadline_s} s; saw {seen}")
        finally:
            ws.close()
