"""Asking the running hub whether it answers, over HTTPS, with the certificate pinned."""
import hashlib
import http.client
import json
import ssl
import time


class ProbeError(Exception):
    pass


def pinned_connection(host: str, port: int, cert_sha256: str, timeout: float):
    """An HTTPS connection, connected, to a server that presents exactly the certificate
    whose fingerprint we know (stronger than a CA check, and it works for the operator's own
    certificates too); ProbeError when it presents another. The caller closes it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # replaced by the fingerprint comparison below
    conn = http.client.HTTPSConnection(host, port, context=context, timeout=timeout)
    try:
        conn.connect()
        presented = hashlib.sha256(conn.sock.getpeercert(binary_form=True)).hexdigest()
    except BaseException:
        conn.close()
        raise
    if presented != cert_sha256:
        conn.close()
        raise ProbeError(
            f"the server on port {port} presents another certificate ({presented[:16]}...) "
            f"than secrets/jupyterhub.crt ({cert_sha256[:16]}...)"
        )
    return conn


def get_hub_api(host: str, port: int, cert_sha256: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET /hub/api from the server with our certificate (pinned_connection)."""
    conn = pinned_connection(host, port, cert_sha256, timeout)
    try:
        conn.request("GET", "/hub/api")
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_for_hub(host: str, port: int, cert_sha256: str, deadline_s: float = 120.0) -> dict:
    """Poll until /hub/api answers 200 (right after start the proxy answers 404 for a moment)."""
    end = time.monotonic() + deadline_s
    last = "no answer yet"
    while True:
        try:
            status, body = get_hub_api(host, port, cert_sha256)
            if status == 200:
                return json.loads(body)
            last = f"HTTP {status}"
        except ProbeError:
            raise
        except (OSError, http.client.HTTPException) as error:
            last = f"{type(error).__name__}: {error}"
        if time.monotonic() >= end:
            raise ProbeError(
                f"the hub did not answer https://{host}:{port}/hub/api with 200 within "
                f"{deadline_s:.0f} s; last seen: {last}. See `inv logs`."
            )
        time.sleep(0.25)
