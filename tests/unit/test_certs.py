"""tasks.certs: names, making, reading back, deciding and writing the hub's certificate."""
import ipaddress
import os
import stat
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tasks import certs
from tasks.certs import (CertError, cert_names, inspect_pair, make_self_signed, plan_cert,
                         split_hostnames)

NOW = datetime(2026, 1, 15, 12, 0, 0, tzinfo=timezone.utc)
NAMES = ["hub.example.org", "localhost", "127.0.0.1", "::1"]


@pytest.fixture(scope="module")
def ours():
    return make_self_signed(NAMES, NOW)


@pytest.fixture(scope="module")
def other_key_pem():
    return make_self_signed(["other"], NOW)[1]


def user_pair(names=("hub.example.org",), not_after=NOW + timedelta(days=200)):
    """A certificate as an operator would bring it: signed elsewhere, without our marker."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Corp"),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=100)).not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


# cert_names

def test_cert_names_defaults():
    assert cert_names("hub.example.org") == ["hub.example.org", "localhost", "127.0.0.1"]


def test_cert_names_extra_stripped_deduplicated_in_order():
    extra = (" 10.0.0.5", "alt.example.org ", "localhost", "*.apps.example.org", "::1", "hub.example.org")
    got = cert_names("Hub.Example.org", extra)
    assert got == ["hub.example.org", "localhost", "127.0.0.1", "10.0.0.5",
                   "alt.example.org", "*.apps.example.org", "::1"]


def test_cert_names_host_may_be_an_ip():
    assert cert_names("127.0.0.1") == ["127.0.0.1", "localhost"]


@pytest.mark.parametrize("bad", ["bad_name.org", "-lead.example.org", "trail-.example.org",
                                 "a..b", "1.2.3.456", "x" * 64 + ".org", "foo.*.org", "http://hub"])
def test_cert_names_rejects_what_is_neither_ip_nor_dns(bad):
    with pytest.raises(CertError) as e:
        cert_names("hub.example.org", ("ok.example.org", bad))
    assert f"HUB_HOSTNAMES: {bad!r}" in str(e.value)


def test_cert_names_says_a_bad_host_name_is_the_hosts():
    with pytest.raises(CertError) as e:
        cert_names("my_laptop")
    assert str(e.value).startswith("the host's name (from -H, or this machine's name): 'my_laptop'")


def test_split_hostnames_splits_on_commas_only():
    assert split_hostnames(" a.org, two words.org,,b.org ,") == ["a.org", "two words.org", "b.org"]


def test_cert_names_label_of_63_is_fine():
    label = "x" * 63
    assert cert_names(f"{label}.org")[0] == f"{label}.org"


# make_self_signed, read back with cryptography itself

def test_self_signed_names_and_types(ours):
    cert = x509.load_pem_x509_certificate(ours[0])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical is False
    assert san.value.get_values_for_type(x509.DNSName) == ["hub.example.org", "localhost"]
    assert san.value.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "hub.example.org"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == certs.MARKER_ORG
    assert cert.issuer == cert.subject


def test_self_signed_extensions(ours):
    cert = x509.load_pem_x509_certificate(ours[0])
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert (bc.critical, bc.value.ca, bc.value.path_length) == (True, False, None)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature
    assert not (ku.value.key_cert_sign or ku.value.key_encipherment or ku.value.key_agreement)
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)


def test_self_signed_validity_window(ours):
    cert = x509.load_pem_x509_certificate(ours[0])
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert cert.not_valid_after_utc == NOW + timedelta(days=365)


def test_self_signed_key_is_p256_pkcs8_unencrypted_and_matches(ours):
    cert_pem, key_pem = ours
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key.curve, ec.SECP256R1)
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    cert_key = x509.load_pem_x509_certificate(cert_pem).public_key()
    assert key.public_key().public_bytes(der, spki) == cert_key.public_bytes(der, spki)


def test_self_signed_serials_differ_and_long_cn_truncated():
    long = "a" * 60 + ".example.org"
    a = x509.load_pem_x509_certificate(make_self_signed([long], NOW)[0])
    b = x509.load_pem_x509_certificate(make_self_signed([long], NOW)[0])
    assert a.serial_number != b.serial_number
    assert a.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == long[:64]
    assert a.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        .get_values_for_type(x509.DNSName) == [long]


# inspect_pair

def test_inspect_pair_of_ours(ours):
    info = inspect_pair(*ours)
    assert info.names == ("hub.example.org", "localhost", "127.0.0.1", "::1")
    assert info.not_after == NOW + timedelta(days=365)
    assert info.not_after.tzinfo is not None
    assert info.matches_key and info.self_made
    assert info.sha256 == x509.load_pem_x509_certificate(ours[0]).fingerprint(hashes.SHA256()).hex()
    assert len(info.sha256) == 64


def test_inspect_pair_user_and_mismatch(ours, other_key_pem):
    assert inspect_pair(*user_pair()).self_made is False
    assert inspect_pair(ours[0], other_key_pem).matches_key is False


def test_inspect_pair_names_the_unreadable_file(ours):
    with pytest.raises(CertError, match=r"jupyterhub\.crt cannot be read as a PEM certificate"):
        inspect_pair(b"not a cert", ours[1])
    with pytest.raises(CertError, match=r"jupyterhub\.key cannot be read as a PEM private key"):
        inspect_pair(ours[0], b"not a key")


def test_inspect_pair_passphrase_key_is_refused(ours):
    key = serialization.load_pem_private_key(ours[1], password=None)
    locked = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.BestAvailableEncryption(b"secret"))
    with pytest.raises(CertError, match=r"jupyterhub\.key is encrypted with a passphrase"):
        inspect_pair(ours[0], locked)


# plan_cert: ours

def test_plan_create_when_nothing_there():
    assert plan_cert(None, None, NAMES, NOW) == certs.CertPlan("create", "no certificate in secrets/")


def test_plan_create_over_a_lone_key(ours):
    plan = plan_cert(None, ours[1], NAMES, NOW)
    assert plan.action == "create" and "jupyterhub.key" in plan.reason


def test_plan_create_over_our_lone_cert(ours):
    plan = plan_cert(ours[0], None, NAMES, NOW)
    assert plan.action == "create" and "jupyterhub.key is missing" in plan.reason


def test_plan_keep_ours_when_valid(ours):
    plan = plan_cert(ours[0], ours[1], ["localhost", "hub.example.org"], NOW + timedelta(days=1))
    assert plan == certs.CertPlan(
        "keep", "valid until 2027-01-15, covers hub.example.org, localhost, 127.0.0.1, ::1")


def test_plan_renew_ours_when_expired(ours):
    plan = plan_cert(*ours, NAMES, NOW + timedelta(days=400))
    assert plan == certs.CertPlan("renew", "secrets/jupyterhub.crt expired on 2027-01-15")


def test_plan_renew_ours_when_expiring(ours):
    plan = plan_cert(*ours, NAMES, NOW + timedelta(days=340))
    assert plan == certs.CertPlan("renew", "expires 2027-01-15 (in 25 days)")


def test_plan_keep_ours_just_outside_renewal_window(ours):
    assert plan_cert(*ours, NAMES, NOW + timedelta(days=334)).action == "keep"


def test_plan_renew_ours_when_key_mismatches(ours, other_key_pem):
    plan = plan_cert(ours[0], other_key_pem, NAMES, NOW)
    assert plan.action == "renew" and "does not match" in plan.reason


def test_plan_renew_ours_when_a_name_is_missing(ours):
    plan = plan_cert(*ours, NAMES + ["new.example.org", "10.0.0.5"], NOW)
    assert plan == certs.CertPlan("renew", "does not cover: new.example.org, 10.0.0.5")


def test_plan_renew_ours_when_key_unreadable(ours):
    plan = plan_cert(ours[0], b"garbage", NAMES, NOW)
    assert plan.action == "renew" and "cannot be read" in plan.reason


def test_plan_refuses_unreadable_cert_it_cannot_tell_is_ours(ours):
    with pytest.raises(CertError, match=r"jupyterhub\.crt cannot be read"):
        plan_cert(b"garbage", ours[1], NAMES, NOW)


# plan_cert: the operator's own certificate

def test_plan_keep_user_cert_when_valid():
    plan = plan_cert(*user_pair(), ["hub.example.org"], NOW)
    assert plan == certs.CertPlan("keep", "valid until 2026-08-03, covers hub.example.org")


def test_plan_user_wildcard_covers_one_label():
    pair = user_pair(names=("*.example.org",))
    assert plan_cert(*pair, ["hub.example.org"], NOW).reason.startswith("valid until")
    assert "does not cover: a.hub.example.org" in plan_cert(*pair, ["a.hub.example.org"], NOW).reason


def test_plan_keep_user_cert_expiring_or_uncovered_with_warning():
    pair = user_pair(not_after=NOW + timedelta(days=10))
    plan = plan_cert(*pair, ["hub.example.org", "alt.example.org"], NOW)
    assert plan.action == "keep"
    assert plan.reason.startswith("warning: your secrets/jupyterhub.crt ")
    assert "expires 2026-01-25 (in 10 days)" in plan.reason
    assert "does not cover: alt.example.org" in plan.reason


def test_plan_user_cert_not_asked_for_loopback_names():
    plan = plan_cert(*user_pair(), cert_names("hub.example.org", ("::1",)), NOW)
    assert plan == certs.CertPlan("keep", "valid until 2026-08-03, covers hub.example.org")


def test_plan_user_cert_key_mismatch_is_an_error(other_key_pem):
    message = r"jupyterhub\.key does not match secrets/jupyterhub\.crt: replace both.*delete both"
    with pytest.raises(CertError, match=message):
        plan_cert(user_pair()[0], other_key_pem, ["hub.example.org"], NOW)


def test_plan_user_cert_expired_is_an_error():
    pair = user_pair(not_after=NOW - timedelta(days=1))
    with pytest.raises(CertError, match=r"jupyterhub\.crt expired on 2026-01-14: replace both"):
        plan_cert(*pair, ["hub.example.org"], NOW)


def test_plan_lone_user_cert_is_an_error():
    with pytest.raises(CertError, match=r"jupyterhub\.key is missing.*remove secrets/jupyterhub\.crt"):
        plan_cert(user_pair()[0], None, ["hub.example.org"], NOW)


def test_plan_user_key_unreadable_is_an_error():
    with pytest.raises(CertError, match=r"jupyterhub\.key cannot be read"):
        plan_cert(user_pair()[0], b"garbage", ["hub.example.org"], NOW)


# write_pair / read_pair

def test_write_pair_modes_and_read_back(tmp_path, ours):
    secrets = tmp_path / "deploy" / "secrets"
    old = os.umask(0o022)
    try:
        certs.write_pair(secrets, *ours)
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(secrets) == 0o700
    assert mode(secrets / "jupyterhub.key") == 0o600
    assert mode(secrets / "jupyterhub.crt") == 0o644
    assert certs.read_pair(secrets) == ours
    assert sorted(p.name for p in secrets.iterdir()) == ["jupyterhub.crt", "jupyterhub.key"]


def test_write_pair_replaces_and_leaves_existing_dir_mode(tmp_path, ours):
    tmp_path.chmod(0o750)
    certs.write_pair(tmp_path, b"old cert", b"old key")
    certs.write_pair(tmp_path, *ours)
    assert certs.read_pair(tmp_path) == ours
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o750
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jupyterhub.crt", "jupyterhub.key"]


def test_read_pair_missing_files(tmp_path, ours):
    assert certs.read_pair(tmp_path) == (None, None)
    (tmp_path / "jupyterhub.key").write_bytes(ours[1])
    assert certs.read_pair(tmp_path) == (None, ours[1])


def test_read_pair_unreadable_file_names_it(tmp_path):
    # A directory in the key's place: unreadable even for root, unlike chmod 000.
    (tmp_path / "jupyterhub.key").mkdir()
    with pytest.raises(CertError, match=r"jupyterhub\.key exists but cannot be read"):
        certs.read_pair(tmp_path)
