"""Asking the running hub whether it answers, over HTTPS, with the certificate pinned."""
import hashlib
import http.client
import json
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Callable


class ProbeError(Exception):
    pass


@dataclass(frozen=True)
class HubEndpoint:
    """How to reach the hub's published port: `connect(timeout)` returns a connected socket
    (tasks/target.py makes one for this machine or for a host over SSH); `where` names the
    port in messages."""
    connect: Callable[[float], socket.socket]
    where: str


def local_endpoint(port: int, host: str = "127.0.0.1") -> HubEndpoint:
    return HubEndpoint(lambda timeout: socket.create_connection((host, port), timeout),
                       f"{host}:{port}")


def pinned_connection(endpoint: HubEndpoint, cert_sha256: str, timeout: float):
    """An HTTPS connection, connected, to a server that presents exactly the certificate
    whose fingerprint we know (stronger than a CA check, and it works for the operator's own
    certificates too); ProbeError when it presents another. The caller closes it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # replaced by the fingerprint comparison below
    raw = endpoint.connect(timeout)
    try:
        raw.settimeout(timeout)
        sock = context.wrap_socket(raw)
    except BaseException:
        raw.close()
        raise
    presented = hashlib.sha256(sock.getpeercert(binary_form=True)).hexdigest()
    if presented != cert_sha256:
        sock.close()
        raise ProbeError(
            f"the server at {endpoint.where} presents another certificate ({presented[:16]}...) "
            f"than expected ({cert_sha256[:16]}...: secrets/jupyterhub.crt, or the ACME one)"
        )
    # Requests go over the socket given here: http.client connects only when it has none.
    conn = http.client.HTTPConnection("127.0.0.1", timeout=timeout)
    conn.sock = sock
    return conn


def get_hub_api(endpoint: HubEndpoint, cert_sha256: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET /hub/api from the server with our certificate (pinned_connection)."""
    conn = pinned_connection(endpoint, cert_sha256, timeout)
    try:
        conn.request("GET", "/hub/api")
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_for_hub(endpoint: HubEndpoint, cert_sha256: str, deadline_s: float = 120.0) -> dict:
    """Poll until /hub/api answers 200 (right after start the proxy answers 404 for a moment)."""
    end = time.monotonic() + deadline_s
    last = "no answer yet"
    while True:
        try:
            status, body = get_hub_api(endpoint, cert_sha256)
            if status == 200:
                return json.loads(body)
            last = f"HTTP {status}"
        except ProbeError:
            raise
        except (OSError, http.client.HTTPException) as error:
            last = f"{type(error).__name__}: {error}"
        if time.monotonic() >= end:
            raise ProbeError(
                f"the hub did not answer /hub/api at {endpoint.where} with 200 within "
                f"{deadline_s:.0f} s; last seen: {last}"
            )
        time.sleep(0.25)
