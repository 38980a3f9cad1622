"""The hub's TLS certificate: the names it must cover, when to make one, and its files.

Pure logic. A certificate we made carries MARKER_ORG, so we may replace it at will;
any other is the operator's, and we only ever read it.
"""
import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding, NoEncryption, PrivateFormat, PublicFormat, load_pem_private_key)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tasks.files import sync_dir, write_atomic

CERT_FILE = "jupyterhub.crt"
KEY_FILE = "jupyterhub.key"
MARKER_ORG = "jupyterhub-deploy self-signed"
RENEW_BEFORE = timedelta(days=30)
VALID_FOR = timedelta(days=365)

# Messages name the files where the operator finds them.
_CERT = f"secrets/{CERT_FILE}"
_KEY = f"secrets/{KEY_FILE}"
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DNS_NAME = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*", re.IGNORECASE)


class CertError(Exception):
    """A problem the operator must fix; str() is a whole message: the problem and the fix."""


def _ip(name):
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def canonical_name(name: str) -> str:
    """One spelling per host name or address, so that "::1" meets "0::1" and "[::1]", and
    "Hub" meets "hub"."""
    name = name.strip("[]")
    ip = _ip(name)
    return str(ip) if ip else name.lower()


def _is_dns_name(name):
    # An all-digit last label is a mistyped IP address (1.2.3.456), not a host name.
    last_label = name.rsplit(".", 1)[-1]
    return len(name) <= 253 and bool(_DNS_NAME.fullmatch(name)) and not last_label.isdigit()


def split_hostnames(text: str) -> list[str]:
    """HUB_HOSTNAMES as documented: entries separated by commas, spaces around them dropped.
    Only commas: a space inside an entry is a mistake to report, not a second name."""
    return [entry.strip() for entry in text.split(",") if entry.strip()]


def name_problem(name: str, source: str) -> str:
    """Why `name` cannot go into the certificate, naming where it came from; "" if it can."""
    if _ip(name) or _is_dns_name(name):
        return ""
    spaces = " (separate names with commas)" if any(ch.isspace() for ch in name) else ""
    return (f"{source}: {name!r} is neither an IP address nor a DNS name{spaces}; a DNS name "
            "has letters, digits, hyphens and dots only")


def cert_names(hostname: str, extra=()) -> list[str]:
    """The names the hub's certificate must cover: the host, the loopback names, then
    `extra` (HUB_HOSTNAMES, already split)."""
    names = []
    sources = [(hostname, "the host's name (from -H, or this machine's name)"),
               ("localhost", ""), ("127.0.0.1", ""), *((item, "HUB_HOSTNAMES") for item in extra)]
    for item, source in sources:
        item = item.strip()
        if not item:
            continue
        problem = name_problem(item, source)
        if problem:
            raise CertError(problem)
        if canonical_name(item) not in names:
            names.append(canonical_name(item))
    return names


@dataclass(frozen=True)
class CertInfo:
    not_after: datetime
    names: tuple[str, ...]
    matches_key: bool
    self_made: bool
    sha256: str


@dataclass(frozen=True)
class CertPlan:
    action: str  # "keep" | "create" | "renew"
    reason: str


def make_self_signed(names: list[str], now: datetime) -> tuple[bytes, bytes]:
    """A new (cert_pem, key_pem) pair valid from just before `now` for VALID_FOR."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        # CN is capped at 64 characters by X.509; the SANs carry the full names anyway.
        x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64]),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, MARKER_ORG),
    ])
    sans = [x509.IPAddress(ip) if (ip := _ip(n)) else x509.DNSName(n) for n in names]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Backdated a little so a client whose clock lags ours still accepts it.
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # ECDHE and TLS 1.3 only need an ECDSA key to sign; key_agreement would serve the
        # static-ECDH suites nobody should negotiate.
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return cert.public_bytes(Encoding.PEM), key_pem


def _load_cert(cert_pem):
    try:
        return x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise CertError(f"{_CERT} cannot be read as a PEM certificate: replace it with one, "
                        "or delete it and the key to have a self-signed pair made") from None


def _spki(public_key):
    return public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _self_made(cert):
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return any(a.value == MARKER_ORG for a in orgs)


def inspect_pair(cert_pem: bytes, key_pem: bytes) -> CertInfo:
    """What a certificate and key say about themselves and each other."""
    cert = _load_cert(cert_pem)
    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        # The hub starts unattended, so a key behind a passphrase is as unusable as a broken one.
        why = "is encrypted with a passphrase" if isinstance(e, TypeError) else "cannot be read"
        raise CertError(f"{_KEY} {why} as a PEM private key: replace it with the certificate's "
                        "unencrypted key, or delete both files to have a self-signed pair made"
                        ) from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ips = san.get_values_for_type(x509.IPAddress)
        names = (*san.get_values_for_type(x509.DNSName), *map(str, ips))
    except x509.ExtensionNotFound:
        names = ()
    return CertInfo(not_after=cert.not_valid_after_utc, names=names,
                    matches_key=_spki(cert.public_key()) == _spki(key.public_key()),
                    self_made=_self_made(cert), sha256=cert.fingerprint(hashes.SHA256()).hex())


def _covers(have_names, name):
    have = {canonical_name(n) for n in have_names}
    name = canonical_name(name)
    # A wildcard stands for exactly one leftmost label, and never for an IP address.
    return name in have or (not _ip(name) and "." in name and "*." + name.split(".", 1)[1] in have)


def plan_cert(cert_pem: bytes | None, key_pem: bytes | None, names: list[str],
              now: datetime) -> CertPlan:
    """Keep, create or renew the hub's certificate; CertError when only the operator can fix it."""
    if cert_pem is None:
        # A lone key is of no use to anyone without its certificate, so it is ours to replace.
        return CertPlan("create", "no certificate in secrets/" if key_pem is None
                        else f"{_KEY} has no certificate beside it")
    # A certificate we cannot read might be anybody's: never overwrite it.
    ours = _self_made(_load_cert(cert_pem))
    if key_pem is None:
        if ours:
            return CertPlan("create", f"{_KEY} is missing")
        raise CertError(f"{_CERT} is there but {_KEY} is missing: put the certificate's key in "
                        f"{_KEY}, or remove {_CERT} to have a self-signed pair made")
    try:
        info = inspect_pair(cert_pem, key_pem)
    except CertError:
        if ours:
            return CertPlan("renew", f"{_KEY} cannot be read")
        raise
    until = info.not_after.date().isoformat()
    fix = f"replace both {_CERT} and {_KEY}, or delete both to have a self-signed pair made"
    broken = None
    if not info.matches_key:
        broken = f"{_KEY} does not match {_CERT}"
    elif info.not_after <= now:
        broken = f"{_CERT} expired on {until}"
    if broken:
        if ours:
            return CertPlan("renew", broken)
        raise CertError(f"{broken}: {fix}")
    problems = []
    if info.not_after - now <= RENEW_BEFORE:
        problems.append(f"expires {until} (in {(info.not_after - now).days} days)")
    # No public CA will sign the loopback names, so asking that of the operator's certificate
    # would only make a warning nobody can ever clear.
    wanted = names if ours else [n for n in names if canonical_name(n) not in _LOOPBACK]
    missing = [n for n in wanted if not _covers(info.names, n)]
    if missing:
        problems.append("does not cover: " + ", ".join(missing))
    if problems and ours:
        return CertPlan("renew", "; ".join(problems))
    if problems:
        # The operator's certificate still serves the names it has: keep it, and say what to fix.
        return CertPlan("keep", f"warning: your {_CERT} " + "; ".join(problems) + f"; {fix}")
    return CertPlan("keep", f"valid until {until}, covers {', '.join(info.names)}")


def write_pair(secrets_dir: Path, cert_pem: bytes, key_pem: bytes) -> None:
    """Write the pair into `secrets_dir` (made 0700 if new): key 0600, certificate 0644."""
    secrets_dir = Path(secrets_dir)
    if not secrets_dir.is_dir():
        secrets_dir.mkdir(parents=True)
        secrets_dir.chmod(0o700)  # mkdir's mode is filtered by the umask; chmod is not
    # Key first: a crash between the two leaves a mismatched pair of ours, which plan_cert renews.
    write_atomic(secrets_dir / KEY_FILE, key_pem, 0o600)
    write_atomic(secrets_dir / CERT_FILE, cert_pem, 0o644)
    sync_dir(secrets_dir)  # so the renames themselves survive a power cut


def _read(path):
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CertError(f"{path} exists but cannot be read ({e.strerror}): make it a file "
                        "readable by the user who runs inv, or delete it") from None


def read_pair(secrets_dir: Path) -> tuple[bytes | None, bytes | None]:
    """(cert_pem, key_pem) from `secrets_dir`, None for a file that is not there."""
    return _read(Path(secrets_dir) / CERT_FILE), _read(Path(secrets_dir) / KEY_FILE)
