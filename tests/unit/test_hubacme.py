"""hub/hubacme.py, the hub's ACME service, without a CA: when it renews, how it backs off,
what it says about a failure, the files it keeps, its HTTP answers, and its decisions step by
step with the protocol replaced; and hub/jupyterhub_config.py running it as a managed service.
The protocol itself, against a real ACME server, is in tests/integration/test_acme_pebble.py."""
import json
import stat
import sys
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from acme import challenges, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tasks.acmecert import Acme, hub_env
from tasks.limits import Limits, hub_env as limits_env
from tasks.names import user_volume_template

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hub"))
import hubacme  # noqa: E402

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
DIRECTORY = "https://ca.example.org/dir"


def certificate(name="hub.example.org", days=90, start=T0):
    """(key_pem, chain_pem) as a CA would give them: a certificate for `name`."""
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example CA R1")])
    cert = (x509.CertificateBuilder().subject_name(issuer)
            .issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


# --- when --------------------------------------------------------------------------------------------

def test_a_certificate_is_renewed_with_a_third_of_its_life_left():
    assert hubacme.renew_at(T0, T0 + timedelta(days=90)) == T0 + timedelta(days=60)
    assert hubacme.renew_at(T0, T0 + timedelta(seconds=60)) == T0 + timedelta(seconds=40)


def test_failures_back_off_doubling_from_a_minute_to_six_hours():
    assert [hubacme.backoff_s(n) for n in range(0, 6)] == [0, 60, 120, 240, 480, 960]
    assert hubacme.backoff_s(10) == 6 * 3600 and hubacme.backoff_s(500) == 6 * 3600


def served(domain="hub.example.org", directory=DIRECTORY, days=90):
    return hubacme.Served(directory, domain, "ab" * 32, T0, T0 + timedelta(days=days),
                          "Example CA R1", (domain,))


@pytest.mark.parametrize("cert, failures, retry_at, when, why", [
    (None, 0, None, T0, "no certificate for hub.example.org yet"),
    (served(), 0, None, T0 + timedelta(days=60), "renewal"),
    (served(domain="old.example.org"), 0, None, T0, "the certificate is for old.example.org"),
    (served(directory="https://other.example.org/dir"), 0, None, T0,
     "the certificate is for hub.example.org from https://other"),
    (None, 2, T0 + timedelta(minutes=2), T0 + timedelta(minutes=2), "after 2 failed attempts"),
    (served(), 1, T0 - timedelta(seconds=1), T0 + timedelta(days=60), "renewal"),  # backoff over
])
def test_the_next_attempt(cert, failures, retry_at, when, why):
    found_when, found_why = hubacme.next_attempt(T0, cert, "hub.example.org", DIRECTORY,
                                                 failures, retry_at)
    assert found_when == when and found_why.startswith(why)


# --- what went wrong, in words ------------------------------------------------------------------

LE_RATE_LIMIT = ("too many certificates (5) already issued for this exact set of identifiers in "
                 "the last 168h0m0s, retry after 2026-12-02 10:00:00 UTC: see "
                 "https://letsencrypt.org/docs/rate-limits/#new-certificates-per-exact-set-of-hostnames")


def test_a_rate_limit_says_until_when_and_is_waited_out():
    error = messages.Error(typ="urn:ietf:params:acme:error:rateLimited", detail=LE_RATE_LIMIT)
    kind, message, until = hubacme.explain(error, "hub.example.org", DIRECTORY)
    assert kind == "rate-limit" and until == datetime(2026, 12, 2, 10, tzinfo=timezone.utc)
    assert message.startswith("the ACME server refuses more certificates for hub.example.org "
                              "until 2026-12-02T10:00:00+00:00 (rate limit)")


def test_an_acme_server_that_does_not_answer_is_named():
    error = requests.exceptions.ConnectionError("Max retries exceeded with url: /dir (Caused by "
                                                "NewConnectionError('<urllib3...>: Failed to "
                                                "establish a new connection: [Errno 111] "
                                                "Connection refused'))")
    kind, message, _ = hubacme.explain(error, "hub.example.org", DIRECTORY)
    assert kind == "unreachable"
    assert message == (f"the ACME server {DIRECTORY} cannot be reached (Failed to establish a "
                       "new connection: [Errno 111] Connection refused)")


def test_a_failed_validation_says_what_the_ca_saw_and_what_to_check():
    challenge = messages.ChallengeBody(
        chall=challenges.HTTP01(token=b"t" * 32), status=messages.STATUS_INVALID,
        error=messages.Error(typ="urn:ietf:params:acme:error:connection",
                             detail="203.0.113.5: Fetching http://hub.example.org/.well-known/"
                                    "acme-challenge/x: Timeout during connect"))
    authz = messages.AuthorizationResource(body=messages.Authorization(
        identifier=messages.Identifier(typ=messages.IDENTIFIER_FQDN, value="hub.example.org"),
        challenges=[challenge], status=messages.STATUS_INVALID))
    kind, message, _ = hubacme.explain(errors.ValidationError([authz]), "hub.example.org", DIRECTORY)
    assert kind == "validation"
    assert "Timeout during connect" in message
    assert "Check that hub.example.org points at this host and that port 80 reaches the hub" in message


# --- files ---------------------------------------------------------------------------------------

def test_everything_is_kept_private_and_the_pair_before_is_kept(tmp_path):
    store = hubacme.Store(tmp_path / "acme")
    assert stat.S_IMODE((tmp_path / "acme").stat().st_mode) == 0o700
    store.account_key()
    first, second = certificate(), certificate(days=30)
    store.replace_served(*first, served())
    store.replace_served(*second, served())
    for name in ("account.key", "current.pem", "previous.pem", "current.json"):
        assert stat.S_IMODE((tmp_path / "acme" / name).stat().st_mode) == 0o600, name
    assert (tmp_path / "acme" / "previous.pem").read_bytes() == first[0] + first[1].encode()
    now = store.served()
    assert now.not_after == T0 + timedelta(days=30) and now.fits("hub.example.org", DIRECTORY)
    assert sorted(p.name for p in (tmp_path / "acme").iterdir()) == [
        "account.key", "current.json", "current.pem", "previous.pem"]  # no temporary left


def test_the_account_key_is_made_once(tmp_path):
    store = hubacme.Store(tmp_path)
    key = store.account_key()
    assert store.account_key().private_numbers() == key.private_numbers()


def test_a_request_is_taken_once(tmp_path):
    store = hubacme.Store(tmp_path)
    assert store.take_request() is None
    (tmp_path / "renew-now").write_text("r1\n")
    assert store.take_request() == "r1" and store.take_request() is None


# --- HTTP ---------------------------------------------------------------------------------------

@pytest.fixture
def responder():
    r = hubacme.Responder("https://hub.example.org:8443/", port=0, host="127.0.0.1")
    yield r
    r.close()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def get(port, path):
    opener = urllib.request.build_opener(NoRedirect)
    try:
        response = opener.open(f"http://127.0.0.1:{port}{path}", timeout=5)
        return response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers


def test_the_challenge_is_answered_and_everything_else_goes_to_https(responder):
    responder.answers["tok"] = "tok.thumbprint"
    assert get(responder.port, "/.well-known/acme-challenge/tok")[:2] == (200, b"tok.thumbprint")
    assert get(responder.port, "/.well-known/acme-challenge/other")[0] == 404
    status, _, headers = get(responder.port, "/hub/login?next=%2Fhub%2F")
    assert status == 301
    assert headers["Location"] == "https://hub.example.org:8443/hub/login?next=%2Fhub%2F"


# --- the service, step by step --------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


@pytest.fixture
def service(tmp_path, monkeypatch):
    """A Service with the protocol replaced: `outcomes` is what each attempt returns or raises."""
    outcomes = []

    def issue(settings, store, responder):
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(hubacme, "issue", issue)
    settings = hubacme.Settings("hub.example.org", "ops@example.org", DIRECTORY, "",
                                "https://hub.example.org/")
    clock = Clock()

    def make(chosen=settings):
        s = hubacme.Service(chosen, hubacme.Store(tmp_path), None, clock)
        s.outcomes, s.clock_, s.make, s.folder = outcomes, clock, make, tmp_path
        return s

    return make()


def status(s):
    return json.loads((s.folder / "status.json").read_text())


UNREACHABLE = requests.exceptions.ConnectionError("refused")


def test_a_first_certificate_is_asked_for_at_once_and_then_renewal_waits(service):
    service.outcomes.append(certificate(start=T0))
    assert service.step() == 0
    report = status(service)
    assert report["certificate"]["fits"] and report["failures"] == 0
    assert report["last_attempt"]["ok"] is True
    assert report["next_attempt"] == "2027-01-30T12:00:00+00:00"  # day 60 of 90
    assert service.step() == hubacme.IDLE_CHECK_S  # nothing due: no attempt
    service.clock_.now = T0 + timedelta(days=60, seconds=1)
    service.outcomes.append(certificate(start=service.clock_.now))
    assert service.step() == 0 and service.outcomes == []
    assert status(service)["last_attempt"]["why"] == "renewal"


def test_a_failure_keeps_the_certificate_backs_off_and_a_restart_keeps_the_backoff(service):
    service.outcomes.append(certificate(start=T0))
    service.step()
    pem = (service.folder / "current.pem").read_bytes()
    service.clock_.now = T0 + timedelta(days=61)
    service.outcomes.append(UNREACHABLE)
    service.step()
    report = status(service)
    assert (service.folder / "current.pem").read_bytes() == pem
    assert report["failures"] == 1 and report["last_error"]["kind"] == "unreachable"
    assert report["state"] == "backing-off" and report["certificate"]["fits"]
    assert report["next_attempt"] == "2027-01-31T12:01:00+00:00"
    assert service.step() == hubacme.IDLE_CHECK_S  # within the backoff: no attempt
    again = service.make()  # the hub restarts
    assert again.failures == 1 and again.retry_at == T0 + timedelta(days=61, minutes=1)
    service.clock_.now += timedelta(minutes=1)
    service.outcomes.append(UNREACHABLE)
    again.step()
    assert status(again)["failures"] == 2
    assert status(again)["next_attempt"] == "2027-01-31T12:03:00+00:00"  # 2 min after


def test_a_request_is_attempted_at_once_even_while_backing_off(service):
    service.outcomes.append(UNREACHABLE)
    service.step()
    assert status(service)["failures"] == 1
    (service.folder / "renew-now").write_text("r7")
    service.outcomes.append(certificate(start=T0))
    assert service.step() == 0
    report = status(service)
    assert report["last_attempt"]["request"] == "r7" and report["last_attempt"]["ok"]
    assert report["failures"] == 0 and report["last_error"] is None


def test_new_settings_start_afresh(service):
    service.outcomes.append(UNREACHABLE)
    service.step()
    fresh = service.make(hubacme.Settings("new.example.org", "ops@example.org", DIRECTORY, "", ""))
    assert fresh.failures == 0  # the backoff belonged to other settings


def test_the_service_refuses_to_start_without_its_settings():
    with pytest.raises(SystemExit, match="ACME_EMAIL, ACME_DIRECTORY_URL not set"):
        hubacme.Settings.from_env({"ACME_DOMAIN": "hub.example.org"})
    settings = hubacme.Settings.from_env({"ACME_DOMAIN": "Hub.example.org", "ACME_EMAIL": "o@e.org",
                                          "ACME_DIRECTORY_URL": DIRECTORY, "ACME_HTTPS_PORT": "8443"})
    assert settings.domain == "hub.example.org" and settings.https_url == "https://hub.example.org:8443/"


# --- the hub's configuration ----------------------------------------------------------------------

ENV = {
    "COMPOSE_PROJECT_NAME": "proj", "DOCKER_NETWORK_NAME": "proj-network",
    "DOCKER_NOTEBOOK_IMAGE": "img:1", "HUB_AUTHENTICATOR": "native",
    "JUPYTERHUB_ADMINS": "ann", "JUPYTERHUB_USERS": "bob",
    "USER_VOLUME_TEMPLATE": user_volume_template("proj"), "GITHUB_URL": None,
    "GITHUB_ALLOWED_ORGS": None, **limits_env(Limits()),
}
ACME = Acme("hub.example.org", "ops@example.org", DIRECTORY)


def test_without_acme_the_hub_serves_the_certificate_from_secrets(hub_config, tmp_path):
    c = hub_config({**ENV, "HUB_SECRETS_DIR": str(tmp_path), **hub_env(Acme(), 443)})
    assert c.JupyterHub.ssl_cert == str(tmp_path / "jupyterhub.crt")
    assert "--follow-ssl-cert" not in c.ConfigurableHTTPProxy.command
    assert all(s["name"] != "acme" for s in c.JupyterHub.services)


def test_with_acme_the_hub_runs_the_service_and_the_proxy_follows_its_file(hub_config, tmp_path):
    acme_dir = tmp_path / "acme"
    c = hub_config({**ENV, "HUB_SECRETS_DIR": str(tmp_path), "HUB_ACME_DIR": str(acme_dir),
                    **hub_env(ACME, 443)})
    # No certificate from the CA yet: the self-signed one, followed until the first comes.
    assert c.JupyterHub.ssl_cert == str(tmp_path / "jupyterhub.crt")
    command = c.ConfigurableHTTPProxy.command
    assert command[-2:] == ["--follow-ssl-cert", str(acme_dir / "current.pem")]
    service = next(s for s in c.JupyterHub.services if s["name"] == "acme")
    assert service["command"][1:] == ["-m", "hubacme"]
    assert service["environment"]["ACME_DIRECTORY_URL"] == DIRECTORY
    assert service["environment"]["HUB_ACME_DIR"] == str(acme_dir)
    assert not any(r.get("services") == ["acme"] for r in c.JupyterHub.load_roles)  # no scopes
    acme_dir.mkdir()
    (acme_dir / "current.pem").write_text("key and chain")
    c = hub_config({**ENV, "HUB_SECRETS_DIR": str(tmp_path), "HUB_ACME_DIR": str(acme_dir),
                    **hub_env(ACME, 443)})
    assert c.JupyterHub.ssl_cert == c.JupyterHub.ssl_key == str(acme_dir / "current.pem")


def test_a_refused_nonce_is_asked_again_at_once_and_other_errors_are_not():
    from acme import messages

    import hubacme

    calls = []

    def attempt(fail_with):
        def run():
            calls.append(1)
            if len(calls) <= fail_with:
                raise messages.Error(typ="urn:ietf:params:acme:error:badNonce", detail="bad")
            return "issued"
        return run

    assert hubacme.with_fresh_nonces(attempt(2), tries=4) == "issued"
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(messages.Error):
        hubacme.with_fresh_nonces(attempt(9), tries=4)
    assert len(calls) == 4
    calls.clear()

    def refused():
        calls.append(1)
        raise messages.Error(typ="urn:ietf:params:acme:error:unauthorized", detail="no")
    with pytest.raises(messages.Error):
        hubacme.with_fresh_nonces(refused, tries=4)
    assert len(calls) == 1
