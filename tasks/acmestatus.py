"""What the hub's ACME service (hub/hubacme.py) reports, read through the engine; how `inv up`
waits for its certificate; how `inv cert --renew` asks it to try at once; and how `inv cert`
and `inv status` say where the certificate came from.

The service keeps its report in the hub's data volume (/data/acme/status.json). The tasks
read it with the engine's archive API (`get_archive`) and leave a request there the same way
(`put_archive`): plain requests that work on a running container, here and on a host reached
with -H, with nothing to run inside the hub. The report holds no secret (fingerprints, dates,
the last error); the keys never leave the volume.
"""
import io
import json
import tarfile
import time
from datetime import datetime, timezone

from invoke.exceptions import Exit

ACME_DIR = "/data/acme"
STATUS_FILE = "status.json"
REQUEST_FILE = "renew-now"
ISSUE_DEADLINE_S = 180  # Let's Encrypt validates in seconds; a private CA may sleep between tries
SERVED_DEADLINE_S = 20  # the proxy looks at the file once a second (hub/proxy.js)


# --- Pure: what a report says ---------------------------------------------------------------------

def expected_config(acme) -> dict:
    return {"domain": acme.domain, "email": acme.email, "directory": acme.directory}


def fitting_certificate(status, acme):
    """The report's certificate when it is one for these settings, else None."""
    if not status or status.get("config") != expected_config(acme):
        return None
    cert = status.get("certificate")
    return cert if cert and cert.get("fits") else None


def cert_info(cert: dict):
    """The certificate of a report as a certs.CertInfo (what the probes pin)."""
    from tasks.certs import CertInfo

    return CertInfo(not_after=datetime.fromisoformat(cert["not_after"]), names=tuple(cert["names"]),
                    matches_key=True, self_made=False, sha256=cert["sha256"])


def judge(status, acme, fresh_since=None, request=None, renewing=False) -> str:
    """What `inv up` (or `inv cert --renew`) does next, from the service's report: "ok" (a
    certificate for these settings), "failed" (the attempt it waits for failed), "request"
    (ask for an attempt now), or "wait".

    `fresh_since`: when the hub was (re)started by this `inv up`, the container's start: the
    service's own first attempt is then the one to wait for, and a report from before is stale.
    `request`: the id of the attempt asked for, once asked; `renewing`: only the outcome of
    that attempt counts, not a certificate there was before."""
    last = (status or {}).get("last_attempt") or {}
    if renewing:
        if not (request and last.get("request") == request and last.get("ended")):
            return "wait"
        return "ok" if last.get("ok") and fitting_certificate(status, acme) else "failed"
    if fitting_certificate(status, acme):
        return "ok"
    if not status or status.get("config") != expected_config(acme):
        return "wait"  # the service with these settings has not reported yet
    if request:
        return "failed" if last.get("request") == request and last.get("ended") else "wait"
    if status.get("state") == "attempting":
        return "wait"
    if fresh_since is not None:
        started = _time(status.get("started"))
        if started is None or started < fresh_since.replace(microsecond=0):  # it says seconds
            return "wait"  # the report of the service before the restart
        if last.get("instance") == status.get("instance") and last.get("ended"):
            return "failed"
        if status.get("state") == "starting":
            return "wait"
    return "request"


def _time(text):
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def source_name(directory: str) -> str:
    from urllib.parse import urlsplit

    from tasks.acmecert import LETS_ENCRYPT, LETS_ENCRYPT_STAGING

    return {LETS_ENCRYPT: "Let's Encrypt", LETS_ENCRYPT_STAGING: "Let's Encrypt (staging)"}.get(
        directory, urlsplit(directory).netloc or directory)


def _day(text) -> str:
    moment = _time(text)
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "?"


def failure_message(status, acme) -> str:
    """`inv up`'s message when the certificate it waited for was refused."""
    error = (status or {}).get("last_error") or {}
    cert = (status or {}).get("certificate")
    kept = (f"keeps serving the certificate valid until {_day(cert['not_after'])}" if cert
            else "serves its self-signed certificate meanwhile")
    return (f"No certificate from {source_name(acme.directory)} for {acme.domain}: "
            f"{error.get('message', 'no reason given')}.\nThe hub is up and {kept}; its ACME "
            f"service tries again at {_day(status.get('next_attempt'))} (`inv logs` shows each "
            "attempt). Fix the cause and run `inv up` again to try at once.")


def certificate_report(status, acme, fallback=None, now=None) -> dict:
    """The certificate part of `inv status` (and `--json`) with ACME on: what the hub serves
    (the ACME server's certificate; before the first one, `fallback`, the self-signed
    CertInfo), whether it is the one the settings ask for, and the service's last word."""
    now = now or datetime.now(timezone.utc)
    status = status or {}
    report = {"source": "acme", "from": source_name(acme.directory), "directory": acme.directory,
              "domain": acme.domain, "fits": False, "issuer": None, "renew_at": None,
              "reported": bool(status), "state": status.get("state"),
              "failures": status.get("failures", 0), "next_attempt": status.get("next_attempt"),
              "last_error": status.get("last_error"), "last_success": status.get("last_success")}
    cert = status.get("certificate") if status.get("config") == expected_config(acme) else None
    if cert:
        report.update(valid_until=cert["not_after"], names=cert["names"], sha256=cert["sha256"],
                      days_left=(_time(cert["not_after"]) - now).days, issuer=cert["issuer"],
                      renew_at=cert["renew_at"], fits=bool(cert.get("fits")),
                      serving=cert["domain"])
    elif fallback is not None:
        report.update(valid_until=fallback.not_after.isoformat(), names=list(fallback.names),
                      sha256=fallback.sha256, days_left=(fallback.not_after - now).days,
                      serving="self-signed")
    return report


def served_info(report: dict):
    """The ACME server's certificate the hub serves, as a CertInfo for the probes to pin;
    None while it serves the self-signed one."""
    if report.get("serving") in (None, "self-signed"):
        return None
    return cert_info({"not_after": report["valid_until"], "names": report["names"],
                      "sha256": report["sha256"]})


def describe(report: dict) -> list:
    """Lines for `inv cert` and `inv status` from certificate_report's answer."""
    from tasks.show import shown

    if not report["reported"]:
        return [f"certificate: none from {report['from']} yet (the hub's ACME service has "
                "not reported: see `inv logs`)"]
    lines = []
    if report["fits"]:
        lines.append(f"certificate: from {report['from']} (issuer {shown(report['issuer'])}) for "
                     f"{report['domain']}, valid until {_day(report['valid_until'])} "
                     f"({report['days_left']} days), renewed from {_day(report['renew_at'])}")
    else:
        serving = report.get("serving")
        lines.append(f"certificate: none from {report['from']} for {report['domain']} yet; the "
                     "hub serves " + ("its self-signed certificate" if serving in (None, "self-signed")
                                      else f"the one for {serving}") + " meanwhile")
    error = report["last_error"]
    if error:
        lines.append(f"certificate: the last attempt failed ({_day(error['at'])}, "
                     f"{report['failures']} in a row): {shown(error['message'])}; next attempt "
                     f"{_day(report['next_attempt'])}")
    elif report["state"] == "attempting":
        lines.append("certificate: an attempt is under way")
    return lines


# --- Through the engine ---------------------------------------------------------------------------

def read_status(container):
    """The service's report (a dict), or None when there is none (yet) or it cannot be read."""
    import docker

    try:
        stream, _ = container.get_archive(f"{ACME_DIR}/{STATUS_FILE}")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            return json.loads(tar.extractfile(member).read()) if member and member.isfile() else None
    except (docker.errors.NotFound, docker.errors.APIError, tarfile.TarError, ValueError,
            AttributeError):
        return None


def request_attempt(container) -> str | None:
    """Ask the service to try at once: its id, or None when the service has no folder yet."""
    import secrets

    import docker

    ident = secrets.token_hex(6)
    data = ident.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(REQUEST_FILE)
        info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
        tar.addfile(info, io.BytesIO(data))
    try:
        container.put_archive(ACME_DIR, buffer.getvalue())
    except docker.errors.NotFound:
        return None
    return ident


def running_hub(client, project: str):
    from tasks.checks import hub_container

    hub = hub_container(client, project)
    return hub if hub is not None and hub.status == "running" else None


def wait_for_certificate(container, acme, fresh_since=None, request=None, renewing=False,
                         deadline_s: float = ISSUE_DEADLINE_S, poll_s: float = 0.5) -> dict:
    """Wait until the service reports a certificate for these settings; ask for an attempt
    when it is waiting for nothing useful. Raises Exit when the attempt fails or the deadline
    passes, with what the service last said. Returns the report."""
    end = time.monotonic() + deadline_s
    status = None
    while True:
        status = read_status(container)
        verdict = judge(status, acme, fresh_since, request, renewing)
        if verdict == "ok":
            return status
        if verdict == "failed":
            raise Exit(failure_message(status, acme))
        if verdict == "request":
            request = request_attempt(container)
        if time.monotonic() >= end:
            said = (f"state {status.get('state')}" + (f", last error: {status['last_error']['message']}"
                    if status.get("last_error") else "")) if status else "nothing yet"
            raise Exit(f"No certificate from {source_name(acme.directory)} for {acme.domain} "
                       f"within {deadline_s:.0f} s; the hub's ACME service said: {said}. The hub is "
                       "up with its previous certificate; `inv logs` shows the service's attempts.")
        time.sleep(poll_s)


def wait_until_served(endpoint, sha256: str, deadline_s: float = SERVED_DEADLINE_S) -> None:
    """Until the proxy presents the certificate with this fingerprint (it swaps within a
    second of the file changing)."""
    import http.client

    from tasks.probe import ProbeError, pinned_connection

    end = time.monotonic() + deadline_s
    while True:
        try:
            pinned_connection(endpoint, sha256, 5.0).close()
            return
        except (ProbeError, OSError, http.client.HTTPException) as error:
            last = str(error)
        if time.monotonic() >= end:
            raise Exit(f"The hub did not serve its new certificate ({sha256[:16]}...) within "
                       f"{deadline_s:.0f} s: {last}. See `inv logs`.")
        time.sleep(0.25)


def require_no_rate_limit(client, project: str, acme) -> None:
    """Refuse `inv up` before anything changes while the ACME server's rate limit, as the
    hub's service last heard it, still holds and there is no certificate to keep serving."""
    hub = running_hub(client, project)
    status = read_status(hub) if hub is not None else None
    if not status or fitting_certificate(status, acme) or status.get("config") != expected_config(acme):
        return
    error = status.get("last_error") or {}
    until = _time(status.get("next_attempt"))
    if error.get("kind") == "rate-limit" and until and until > datetime.now(timezone.utc):
        raise Exit(f"{error['message']}.\nNothing was changed: run `inv up` again after "
                   f"{_day(status['next_attempt'])}; the hub's ACME service tries again then by itself.")


def started_at(container):
    """When the engine started the container (its clock, UTC), or None."""
    from tasks.backup.helper import parse_engine_time

    nanoseconds = parse_engine_time((container.attrs.get("State") or {}).get("StartedAt", ""))
    return datetime.fromtimestamp(nanoseconds / 1e9, timezone.utc) if nanoseconds else None


def served_by_hub(ready, hub_before: str | None):
    """After `compose up` with ACME on: wait for the certificate, then until the proxy serves
    it; its CertInfo, for the probes to pin. `hub_before`: the hub container's id before
    `compose up`; another one now means a service that makes its own first attempt."""
    from tasks.target import hub_endpoint

    settings = ready.settings
    hub = running_hub(ready.client, settings.project)
    if hub is None:
        raise Exit("The hub is not running after `docker compose up`: see `inv logs`.")
    fresh_since = started_at(hub) if hub.id != hub_before else None
    started = time.monotonic()
    status = wait_for_certificate(hub, settings.acme, fresh_since)
    cert = fitting_certificate(status, settings.acme)
    with hub_endpoint(ready.run.c, settings.port) as endpoint:
        wait_until_served(endpoint, cert["sha256"])
    print(f"certificate: from {source_name(settings.acme.directory)} for {settings.acme.domain} "
          f"(issuer {cert['issuer']}), valid until {_day(cert['not_after'])}, renewed from "
          f"{_day(cert['renew_at'])} by the hub itself ({time.monotonic() - started:.1f} s)")
    return cert_info(cert)


def report_certificate(run, renew: bool = False) -> None:
    """`inv cert` with ACME on: what the hub's service says; with --renew, an attempt now."""
    acme = run.settings.acme
    if not acme.on:
        if renew:
            raise Exit("--renew asks the hub's ACME service for a new certificate, and ACME is "
                       "off (ACME_DOMAIN is empty); the self-signed certificate is renewed by "
                       "`inv cert` itself when due.")
        return
    hub = running_hub(run.client, run.settings.project)
    if hub is None:
        raise Exit(f"certificate: the hub is not running; `inv up` starts it, and its ACME "
                   f"service gets the certificate for {acme.domain}.")
    if renew:
        request = request_attempt(hub)
        if request is None:
            raise Exit("The hub's ACME service has not started yet: see `inv logs`, then try again.")
        try:
            status = wait_for_certificate(hub, acme, request=request, renewing=True)
        except Exit as failed:
            raise Exit(f"renewal failed: {failed.message}")
        # "Renewed" means served: the proxy takes a new file up to a second after it changes.
        from tasks.target import hub_endpoint

        cert = fitting_certificate(status, acme)
        if cert:
            with hub_endpoint(run.c, run.settings.port) as endpoint:
                wait_until_served(endpoint, cert["sha256"])
        print(f"certificate: renewed just now ({request})")
    for line in describe(certificate_report(read_status(hub), acme)):
        print(line)
