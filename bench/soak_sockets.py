"""The websockets of the proxy soak's person (bench/proxy_soak.py): a kernel's and a
terminal's, opened through the proxy, used, and tried again after their server stopped, as a
JupyterLab tab does."""
import json
import time

from bench.deployment import BenchError


def closed_by_proxy(ws, wait_s: float) -> bool:
    """Whether the proxy ends this websocket within `wait_s` (the server under it is gone)."""
    import websocket

    end = time.monotonic() + max(0.05, wait_s)
    while time.monotonic() < end:
        ws.settimeout(max(0.05, end - time.monotonic()))
        try:
            if ws.recv() == "" and not ws.connected:
                return True
        except websocket.WebSocketTimeoutException:
            return False
        except (websocket.WebSocketException, OSError):
            return True
    return False


def ws_url(client, path: str) -> str:
    return "ws" + client.base[len("http"):] + path


def ws_connect(client, path: str, timeout: float = 30):
    import ssl

    import websocket

    return websocket.create_connection(
        ws_url(client, path), header=[f"Authorization: token {client.token}"],
        sslopt={"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": client.cafile}, timeout=timeout)


def reconnect(client, path: str) -> str:
    """One attempt of a tab to get a websocket back: what it was answered (a status, or the
    error; 101 would be a server still there)."""
    import websocket

    try:
        ws_connect(client, path, timeout=10).close()
        return "101"
    except websocket.WebSocketBadStatusException as error:
        return str(error.status_code)
    except (websocket.WebSocketException, OSError) as error:
        return type(error).__name__


def open_terminal(client, name: str):
    """A terminal through the proxy and its websocket, answering an echo."""
    response = client.request("POST", f"/user/{name}/api/terminals")
    response.raise_for_status()
    path = f"/user/{name}/terminals/websocket/{response.json()['name']}"
    ws = ws_connect(client, path)
    ws.send(json.dumps(["stdin", "echo soak-$((6*7))\r"]))
    end = time.monotonic() + 30
    while time.monotonic() < end:
        message = json.loads(ws.recv())
        if message[0] == "stdout" and "soak-42" in message[1]:
            return ws, path
    raise BenchError(f"{name}'s terminal did not echo")


def run_on(ws, client, name: str, code: str, deadline_s: float = 60) -> str:
    """Execute `code` over an open kernel websocket, which stays open."""
    import uuid

    import websocket

    msg_id = uuid.uuid4().hex
    ws.send(json.dumps(client._execute_request(name, msg_id, code)))
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        ws.settimeout(max(0.1, min(5.0, end - time.monotonic())))
        try:
            message = json.loads(ws.recv())
        except websocket.WebSocketTimeoutException:
            continue
        if message.get("parent_header", {}).get("msg_id") == msg_id:
            if message["msg_type"] == "execute_result":
                return message["content"]["data"]["text/plain"]
            if message["msg_type"] == "error":
                raise BenchError(f"{name}'s kernel: {message['content']}")
    raise BenchError(f"{name}'s kernel gave no result within {deadline_s} s")
