"""tasks.acmecert and tasks.acmestatus: the ACME settings read from .env and refused with the
setting's name, handed to the hub; the checks `inv up` makes of the name and the ACME server;
and how the tasks read the hub's ACME service's report: wait, ask, fail, describe."""
from datetime import datetime, timedelta, timezone

import pytest
from invoke.exceptions import Exit

from tasks.acmecert import (
    LETS_ENCRYPT, LETS_ENCRYPT_STAGING, Acme, directory_problem, ensure_hub_ca_file,
    host_addresses, hub_env, is_self_made, name_verdict, own_certificate_problem, parse_acme,
    require_name_points_here, resolved_addresses,
)
from tasks.acmestatus import (
    certificate_report, describe, failure_message, fitting_certificate, judge, served_info,
)
from tasks.certs import make_self_signed
from tasks.settings import parse_settings
from test_tasks_mock import FabricSeam, InvokeSeam

ON = {"ACME_DOMAIN": "hub.example.org", "ACME_EMAIL": "ops@example.org"}
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


# --- settings -------------------------------------------------------------------------------------

def test_no_domain_means_self_signed_as_before():
    acme, problems = parse_acme({})
    assert (acme, problems) == (Acme(), [])
    assert not acme.on
    env = hub_env(acme, 443)
    assert env["ACME_DOMAIN"] == "" and env["HUB_HTTP_PUBLISH"] == "127.0.0.1::8080"


@pytest.mark.parametrize("word, url", [("", LETS_ENCRYPT), ("production", LETS_ENCRYPT),
                                       ("staging", LETS_ENCRYPT_STAGING), ("Staging", LETS_ENCRYPT_STAGING),
                                       ("https://ca.example.org/acme/directory",
                                        "https://ca.example.org/acme/directory")])
def test_the_directory_is_lets_encrypt_one_word_away_from_staging_or_any_https_url(word, url):
    acme, problems = parse_acme({**ON, "ACME_DIRECTORY": word})
    assert (acme.directory, problems) == (url, [])


@pytest.mark.parametrize("changes, says", [
    ({"ACME_EMAIL": ""}, "ACME_EMAIL is empty"),
    ({"ACME_EMAIL": "ops"}, "ACME_EMAIL='ops' is not an e-mail address"),
    ({"ACME_DOMAIN": "hub"}, "ACME_DOMAIN='hub' is not a DNS name"),
    ({"ACME_DOMAIN": "hub_1.example.org"}, "is not a DNS name"),
    ({"ACME_DOMAIN": "*.example.org"}, "no wildcard"),
    ({"ACME_DOMAIN": "192.0.2.7"}, "no IP address"),
    ({"ACME_DOMAIN": "-hub.example.org"}, "is not a DNS name"),
    ({"ACME_DIRECTORY": "http://ca.example.org/dir"}, "ACME_DIRECTORY='http://ca.example.org/dir' must be"),
    ({"ACME_DIRECTORY": "ca.example.org/dir"}, "https address"),
    ({"ACME_DIRECTORY": "prod"}, "ACME_DIRECTORY='prod' must be production, staging"),
    ({"HUB_HTTP_PORT": "eighty"}, "HUB_HTTP_PORT='eighty' must be a port number"),
    ({"HUB_HTTP_PORT": "443"}, "HUB_HTTP_PORT=443 is HUB_PORT too"),
])
def test_a_bad_setting_is_refused_naming_it(changes, says):
    _, problems = parse_acme({**ON, **changes})
    assert len(problems) == 1 and says in problems[0], problems


def test_the_name_is_kept_in_one_spelling():
    acme, _ = parse_acme({**ON, "ACME_DOMAIN": "Hub.Example.ORG."})
    assert acme.domain == "hub.example.org"


def test_inv_refuses_acme_settings_with_the_others():
    base = {"COMPOSE_PROJECT_NAME": "p", "HUB_PORT": "443", "BASE_IMAGE": "debian:bookworm",
            "BUILD_CA_BUNDLE": "none", "HUB_AUTHENTICATOR": "native"}
    with pytest.raises(Exit) as refused:
        parse_settings({**base, "ACME_DOMAIN": "hub.example.org", "HUB_PORT": "0"}, {})
    assert "ACME_EMAIL is empty" in str(refused.value) and "HUB_PORT='0'" in str(refused.value)
    settings = parse_settings({**base, **ON}, {"ACME_DIRECTORY": "staging"})  # the shell wins
    assert settings.acme == Acme("hub.example.org", "ops@example.org", LETS_ENCRYPT_STAGING)


def test_the_hub_gets_the_settings_converted_and_the_challenge_port_published():
    acme, _ = parse_acme({**ON, "HUB_HTTP_PORT": "8080", "ACME_CA_BUNDLE": "/etc/my-ca.pem"})
    assert hub_env(acme, 8443) == {
        "ACME_DOMAIN": "hub.example.org", "ACME_EMAIL": "ops@example.org",
        "ACME_DIRECTORY_URL": LETS_ENCRYPT,
        "ACME_CA_FILE": "/srv/jupyterhub/secrets/acme-ca.pem", "ACME_HTTPS_PORT": "8443",
        "HUB_HTTP_PUBLISH": "8080:8080"}
    assert set(hub_env(Acme(), 443)) == set(hub_env(acme, 443))  # compose always gets them all


def test_acme_and_an_operators_own_certificate_are_not_both_served(tmp_path):
    cert_pem, _ = make_self_signed(["hub.example.org"], NOW)
    assert is_self_made(cert_pem) is True and is_self_made(None) is None
    assert own_certificate_problem(None) == "" and own_certificate_problem(True) == ""
    assert "secrets/jupyterhub.crt is your own certificate" in own_certificate_problem(False)


def test_the_ca_bundle_goes_into_secrets_private_and_leaves_with_the_setting(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    acme = Acme("hub.example.org", "ops@example.org", ca_bundle=str(bundle))
    assert "copied" in ensure_hub_ca_file(secrets, acme)
    assert (secrets / "acme-ca.pem").read_bytes() == bundle.read_bytes()
    assert (secrets / "acme-ca.pem").stat().st_mode & 0o777 == 0o600
    assert ensure_hub_ca_file(secrets, acme) == ""  # nothing to do
    assert "removed" in ensure_hub_ca_file(secrets, Acme("hub.example.org", "ops@example.org"))
    assert not (secrets / "acme-ca.pem").exists()
    assert ensure_hub_ca_file(secrets, Acme()) == ""


# --- does the name lead here? ---------------------------------------------------------------------

GETENT = """203.0.113.5     STREAM hub.example.org
203.0.113.5     DGRAM
203.0.113.5     RAW
2001:db8::5     STREAM
"""
IP_ADDR = """1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: eth0    inet 203.0.113.5/24 brd 203.0.113.255 scope global eth0\\       valid_lft forever
2: eth0    inet6 fe80::1/64 scope link \\       valid_lft forever preferred_lft forever
"""


def test_the_outputs_of_getent_and_ip_are_read_into_addresses():
    assert resolved_addresses(GETENT) == ["203.0.113.5", "2001:db8::5"]
    assert host_addresses(IP_ADDR) == ["127.0.0.1", "203.0.113.5", "fe80::1"]


@pytest.mark.parametrize("resolved, local, problem, note", [
    (["203.0.113.5"], ["127.0.0.1", "203.0.113.5"], "", ""),
    (["127.0.0.1"], ["127.0.0.1"], "", ""),
    (["127.0.1.1"], ["127.0.0.1"], "", ""),  # Debian's line for the host's own name
    ([], ["203.0.113.5"], "does not resolve on this machine", ""),
    (["10.1.2.3"], ["192.168.1.5"], "resolves to 10.1.2.3, which is not this machine", ""),
    (["93.184.215.14"], ["10.0.0.4"], "", "not an address of this machine: fine if a router"),
    (["198.51.100.9"], None, "", "cannot tell this host's addresses"),
])
def test_a_name_that_does_not_lead_here_is_refused_when_that_can_be_told(resolved, local,
                                                                        problem, note):
    found_problem, found_note = name_verdict("hub.example.org", resolved, local, "this machine")
    assert (problem in found_problem if problem else found_problem == "")
    assert (note in found_note if note else found_note == "")


@pytest.mark.parametrize("seam", [InvokeSeam, FabricSeam], ids=["invoke", "fabric"])
def test_the_name_is_looked_up_where_the_hub_runs(seam, capsys):
    ctx = seam()
    try:
        c = ctx.context((GETENT, 0), (IP_ADDR, 0))
        require_name_points_here(c, Acme("hub.example.org", "ops@example.org"))
        assert ctx.lines == ["getent ahosts hub.example.org", "ip -o addr show"]
    finally:
        ctx.close()
    ctx = seam()
    try:
        c = ctx.context(("", 2), (IP_ADDR, 0))
        with pytest.raises(Exit, match="ACME_DOMAIN=hub.example.org does not resolve on"):
            require_name_points_here(c, Acme("hub.example.org", "ops@example.org"))
    finally:
        ctx.close()


@pytest.mark.parametrize("status, body, says", [
    (200, b'{"newAccount": "a", "newNonce": "n", "newOrder": "o"}', ""),
    (404, b"", "answered HTTP 404"),
    (200, b"<html>hello</html>", "not with an ACME directory"),
    (200, b'{"newAccount": "a"}', "not with an ACME directory"),
])
def test_an_answer_that_is_no_acme_directory_is_refused(status, body, says):
    problem = directory_problem(status, body, "https://ca.example.org/dir")
    assert (says in problem) if says else problem == ""


# --- the hub's report -------------------------------------------------------------------------------

ACME = Acme("hub.example.org", "ops@example.org", "https://ca.example.org/dir")
CONFIG = {"domain": "hub.example.org", "email": "ops@example.org", "directory": "https://ca.example.org/dir"}
CERT = {"sha256": "ab" * 32, "issuer": "Example CA R1", "names": ["hub.example.org"],
        "not_before": "2026-11-01T00:00:00+00:00", "not_after": "2027-01-30T00:00:00+00:00",
        "renew_at": "2026-12-31T00:00:00+00:00", "directory": "https://ca.example.org/dir",
        "domain": "hub.example.org", "fits": True}


def report(**changes):
    status = {"config": CONFIG, "instance": "i2", "started": "2026-12-01T12:00:05+00:00",
              "state": "waiting", "failures": 0, "next_attempt": None, "last_attempt": None,
              "last_error": None, "last_success": None, "certificate": None}
    return {**status, **changes}


FAILED = {"started": "2026-12-01T12:00:06+00:00", "ended": "2026-12-01T12:00:09+00:00",
          "request": None, "instance": "i2", "ok": False}
ERROR = {"at": "2026-12-01T12:00:09+00:00", "kind": "validation", "message": "could not check"}
FRESH = datetime(2026, 12, 1, 12, 0, 4, 500000, tzinfo=timezone.utc)


@pytest.mark.parametrize("status, fresh, request_, renewing, verdict", [
    (None, None, None, False, "wait"),  # no report yet
    (report(certificate=CERT), None, None, False, "ok"),
    (report(config={**CONFIG, "domain": "old.example.org"}), None, None, False, "wait"),
    (report(state="attempting"), FRESH, None, False, "wait"),
    # a hub started by this `inv up`: its service's own first attempt is the answer
    (report(state="backing-off", last_attempt=FAILED, last_error=ERROR), FRESH, None, False, "failed"),
    (report(started="2026-12-01T11:00:00+00:00", state="backing-off", last_attempt=FAILED),
     FRESH, None, False, "wait"),  # the report of the service before the restart
    (report(state="backing-off", last_attempt={**FAILED, "instance": "i1"}), FRESH, None, False,
     "request"),  # waiting out an earlier backoff: ask
    # the hub was not restarted: an old failure is no answer; ask, then wait for that attempt
    (report(state="backing-off", last_attempt=FAILED), None, None, False, "request"),
    (report(state="backing-off", last_attempt=FAILED), None, "r1", False, "wait"),
    (report(state="backing-off", last_attempt={**FAILED, "request": "r1"}), None, "r1", False, "failed"),
    # --renew: only the asked attempt counts, not the certificate there was
    (report(certificate=CERT), None, "r1", True, "wait"),
    (report(certificate=CERT, last_attempt={**FAILED, "request": "r1", "ok": True}), None, "r1", True, "ok"),
    (report(certificate=CERT, last_attempt={**FAILED, "request": "r1"}), None, "r1", True, "failed"),
])
def test_what_inv_does_next_follows_the_services_report(status, fresh, request_, renewing, verdict):
    assert judge(status, ACME, fresh, request_, renewing) == verdict


def test_a_certificate_for_other_settings_is_not_the_one_asked_for():
    assert fitting_certificate(report(certificate=CERT), ACME) == CERT
    assert fitting_certificate(report(certificate={**CERT, "fits": False}), ACME) is None
    other = Acme("hub.example.org", "ops@example.org", LETS_ENCRYPT)
    assert fitting_certificate(report(certificate=CERT), other) is None


def test_the_failure_says_why_what_is_served_and_when_it_is_tried_again():
    message = failure_message(report(last_error=ERROR, next_attempt="2026-12-01T12:01:09+00:00"), ACME)
    assert message.startswith("No certificate from ca.example.org for hub.example.org: could not check.")
    assert "serves its self-signed certificate meanwhile" in message
    assert "tries again at 2026-12-01 12:01 UTC" in message
    kept = failure_message(report(last_error=ERROR, certificate=CERT), ACME)
    assert "keeps serving the certificate valid until 2027-01-30 00:00 UTC" in kept


def test_status_says_where_the_certificate_came_from_and_when_it_is_renewed():
    facts = certificate_report(report(certificate=CERT), ACME, now=NOW)
    assert facts["source"] == "acme" and facts["fits"] and facts["days_left"] == 59
    assert served_info(facts).sha256 == "ab" * 32
    assert describe(facts) == [
        "certificate: from ca.example.org (issuer Example CA R1) for hub.example.org, valid "
        "until 2027-01-30 00:00 UTC (59 days), renewed from 2026-12-31 00:00 UTC"]
    named = certificate_report(report(certificate=CERT), Acme(
        "hub.example.org", "ops@example.org", LETS_ENCRYPT), now=NOW)
    assert named["from"] == "Let's Encrypt"


def test_status_shows_a_failed_renewal_beside_the_certificate_kept():
    facts = certificate_report(report(certificate=CERT, failures=2, last_error=ERROR,
                                      next_attempt="2026-12-01T12:02:09+00:00"), ACME, now=NOW)
    lines = describe(facts)
    assert lines[0].startswith("certificate: from ca.example.org")
    assert lines[1] == ("certificate: the last attempt failed (2026-12-01 12:00 UTC, 2 in a row): "
                        "could not check; next attempt 2026-12-01 12:02 UTC")


def test_before_the_first_certificate_status_shows_the_self_signed_one_served():
    cert_pem, key_pem = make_self_signed(["vm"], NOW)
    from tasks.certs import inspect_pair

    fallback = inspect_pair(cert_pem, key_pem)
    facts = certificate_report(report(state="attempting"), ACME, fallback, now=NOW)
    assert facts["serving"] == "self-signed" and served_info(facts) is None
    assert facts["days_left"] == (fallback.not_after - NOW).days
    assert describe(facts) == [
        "certificate: none from ca.example.org for hub.example.org yet; the hub serves its "
        "self-signed certificate meanwhile", "certificate: an attempt is under way"]
    assert "has not reported" in describe(certificate_report(None, ACME, fallback, now=NOW))[0]


def test_a_late_attempt_counts_from_its_own_start_not_the_containers():
    # The service writes whole seconds; the engine's start has a fraction.
    started = report(started="2026-12-01T12:00:04+00:00", state="backing-off", last_attempt=FAILED)
    assert judge(started, ACME, FRESH + timedelta(microseconds=0)) == "failed"
