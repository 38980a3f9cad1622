"""A certificate from an ACME CA (Let's Encrypt) for the hub: the `.env` settings ACME_DOMAIN,
ACME_EMAIL, ACME_DIRECTORY, ACME_CA_BUNDLE and HUB_HTTP_PORT, and what `inv up` checks about
them before anything changes.

The hub's ACME service (hub/hubacme.py) gets and renews the certificate; the tasks hand it the
settings, read and checked here (`parse_acme`, pure), converted for the hub (`hub_env`). What
only the deployment's host can tell (what the name resolves to there, whether the ACME server
answers from there, whether port 80 is free) is asked through `c` and judged by pure functions,
so that the same checks run here and on a host reached with -H.
"""
import ipaddress
import re
import shlex
from dataclasses import dataclass
from urllib.parse import urlsplit

from invoke.exceptions import Exit

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
WORDS = {"production": LETS_ENCRYPT, "staging": LETS_ENCRYPT_STAGING}
DEFAULTS = {"ACME_DOMAIN": "", "ACME_EMAIL": "", "ACME_DIRECTORY": "production",
            "ACME_CA_BUNDLE": "", "HUB_HTTP_PORT": "80"}
KEYS = tuple(DEFAULTS)
# Where the hub finds ACME_CA_BUNDLE: inv copies it into secrets/, which travels to a remote
# host and is mounted read-only into the hub (docker-compose.yml).
HUB_CA_FILE = "acme-ca.pem"
HUB_SECRETS = "/srv/jupyterhub/secrets"
CHALLENGE_PORT = 8080  # in the hub container (hub/hubacme.py)
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})+")
_EMAIL = re.compile(r"[^@\s,;<>\"']+@" + rf"{_LABEL}(\.{_LABEL})+", re.IGNORECASE)


@dataclass(frozen=True)
class Acme:
    """What `.env` says about ACME; with no domain it is off and the hub is self-signed."""
    domain: str = ""
    email: str = ""
    directory: str = LETS_ENCRYPT
    ca_bundle: str = ""  # a file on the machine that runs inv, or ""
    http_port: int = 80

    @property
    def on(self) -> bool:
        return bool(self.domain)


def parse_directory(text: str) -> tuple:
    """(url, problem): a word for Let's Encrypt's servers, or any https URL."""
    value = text.strip() or DEFAULTS["ACME_DIRECTORY"]
    if value.lower() in WORDS:
        return WORDS[value.lower()], ""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        parts = None
    if parts is None or parts.scheme != "https" or not parts.hostname or parts.username:
        return "", (f"ACME_DIRECTORY={text.strip()!r} must be production, staging, or the https "
                    "address of an ACME server's directory (an ACME server is only ever asked "
                    "over HTTPS).")
    return value, ""


def parse_acme(values: dict, https_port: int = 443) -> tuple:
    """(Acme, problems) from the settings (DEFAULTS for what is not set)."""
    def get(key):
        return (values.get(key) or "").strip() or DEFAULTS[key]

    problems = []
    port_text = get("HUB_HTTP_PORT")
    http_port = int(port_text) if port_text.isascii() and port_text.isdigit() else 0
    if not 1 <= http_port <= 65535:
        problems.append(f"HUB_HTTP_PORT={port_text!r} must be a port number from 1 to 65535.")
    domain = get("ACME_DOMAIN").lower().rstrip(".")
    if not domain:
        return Acme(http_port=http_port or 80), problems
    if _ip(domain) or len(domain) > 253 or not _DOMAIN.fullmatch(domain) \
            or domain.rsplit(".", 1)[-1].isdigit():
        problems.append(f"ACME_DOMAIN={get('ACME_DOMAIN')!r} is not a DNS name like "
                        "hub.example.org: the hub's public name, with letters, digits, hyphens "
                        "and dots only (no wildcard, no IP address).")
    email = get("ACME_EMAIL")
    if not email:
        problems.append("ACME_EMAIL is empty: with ACME_DOMAIN set, give an e-mail address for "
                        "the ACME account (the CA writes there about the certificate).")
    elif not _EMAIL.fullmatch(email):
        problems.append(f"ACME_EMAIL={email!r} is not an e-mail address like you@example.org.")
    directory, problem = parse_directory(get("ACME_DIRECTORY"))
    problems += [problem] if problem else []
    if http_port == https_port:
        problems.append(f"HUB_HTTP_PORT={http_port} is HUB_PORT too: the ACME challenge needs a "
                        "port of its own (80).")
    return Acme(domain, email, directory, get("ACME_CA_BUNDLE"), http_port), problems


def hub_env(acme: Acme, https_port: int) -> dict:
    """The variables docker-compose.yml hands the hub (and publishes the challenge port with).
    With ACME off, the challenge port goes to a random port on loopback, where nothing listens:
    compose cannot leave a port out by a variable, and this keeps port 80 free."""
    if not acme.on:
        return {"ACME_DOMAIN": "", "ACME_EMAIL": "", "ACME_DIRECTORY_URL": "", "ACME_CA_FILE": "",
                "ACME_HTTPS_PORT": "", "HUB_HTTP_PUBLISH": f"127.0.0.1::{CHALLENGE_PORT}"}
    return {
        "ACME_DOMAIN": acme.domain,
        "ACME_EMAIL": acme.email,
        "ACME_DIRECTORY_URL": acme.directory,
        "ACME_CA_FILE": f"{HUB_SECRETS}/{HUB_CA_FILE}" if acme.ca_bundle else "",
        "ACME_HTTPS_PORT": str(https_port),
        "HUB_HTTP_PUBLISH": f"{acme.http_port}:{CHALLENGE_PORT}",
    }


def _ip(text):
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


# --- Does the name lead here? -------------------------------------------------------------------

def resolved_addresses(getent_output: str) -> list:
    """The addresses in `getent ahosts NAME` output, in order, each once."""
    found = []
    for line in getent_output.splitlines():
        address = _ip(line.split()[0]) if line.split() else None
        if address is not None and str(address) not in found:
            found.append(str(address))
    return found


def host_addresses(ip_output: str) -> list:
    """The addresses in `ip -o addr show` output."""
    return [str(ip) for ip in (_ip(match.split("/")[0]) for match in
                               re.findall(r"\binet6? (\S+)", ip_output)) if ip is not None]


def name_verdict(name: str, resolved: list, local: list | None, where: str) -> tuple:
    """(problem, note) about ACME_DOMAIN resolving, at the deployment's host, to `resolved`,
    when the host's own addresses are `local` (None: unknown). A problem stops `inv up`; a
    note is said and `inv up` goes on, because only the CA can tell (a router or a load
    balancer may forward a public address to this host)."""
    fix = (f"point {name} (an A or AAAA record) at this host's public address, wait until "
           "the change reaches the resolvers, then run this again")
    if not resolved:
        return f"ACME_DOMAIN={name} does not resolve on {where}: {fix}.", ""
    if local is None:
        return "", f"ACME_DOMAIN={name} resolves to {', '.join(resolved)}; cannot tell this host's addresses to compare"
    addresses = [_ip(a) for a in resolved]
    mine = {_ip(a) for a in local}
    if any(a in mine or a.is_loopback for a in addresses):
        return "", ""
    if all(a.is_global for a in addresses):
        return "", (f"ACME_DOMAIN={name} resolves to {', '.join(resolved)}, which is not an "
                    f"address of {where}: fine if a router or load balancer forwards ports "
                    "80 and HUB_PORT there; the ACME server will tell")
    return (f"ACME_DOMAIN={name} resolves to {', '.join(resolved)}, which is not {where} (its "
            f"addresses: {', '.join(local) or 'none'}): {fix}."), ""


def require_name_points_here(c, acme: Acme) -> None:
    """Refuse a name that does not resolve to the deployment's host, when that can be told."""
    from tasks.target import place

    lookup = c.run(shlex.join(["getent", "ahosts", acme.domain]), hide=True, warn=True)
    mine = c.run(shlex.join(["ip", "-o", "addr", "show"]), hide=True, warn=True)
    problem, note = name_verdict(acme.domain, resolved_addresses(lookup.stdout) if lookup.ok else [],
                                 host_addresses(mine.stdout) if mine.ok else None, place(c))
    if problem:
        raise Exit(f"Bad settings in .env: {problem}")
    if note:
        print(f"certificate: note: {note}")


# --- Does the ACME server answer from there? -----------------------------------------------------

def directory_problem(status: int, body: bytes, url: str) -> str:
    """Why an answer to GET ACME_DIRECTORY is not an ACME directory; "" when it is one."""
    import json

    if status != 200:
        return f"ACME_DIRECTORY {url} answered HTTP {status}, not an ACME directory"
    try:
        directory = json.loads(body)
    except ValueError:
        directory = None
    if not isinstance(directory, dict) or not {"newAccount", "newNonce", "newOrder"} <= directory.keys():
        return (f"ACME_DIRECTORY {url} answered, but not with an ACME directory (RFC 8555 "
                "newAccount, newNonce, newOrder): check the address")
    return ""


def require_directory_answers(c, acme: Acme, timeout: float = 10.0) -> None:
    """GET the directory as the deployment's host would (over SSH from there, for -H), its
    certificate checked against ACME_CA_BUNDLE or the system's CAs; refuse when it does not
    answer as an ACME server."""
    import http.client
    import ssl

    from tasks.target import hub_endpoint, place

    parts = urlsplit(acme.directory)
    port = parts.port or 443
    try:
        context = ssl.create_default_context(cafile=acme.ca_bundle or None)
        with hub_endpoint(c, port, host=parts.hostname) as endpoint:
            raw = endpoint.connect(timeout)
            sock = context.wrap_socket(raw, server_hostname=parts.hostname)
            conn = http.client.HTTPConnection(parts.hostname, port, timeout=timeout)
            conn.sock = sock
            try:
                conn.request("GET", parts.path or "/", headers={"Host": parts.netloc})
                response = conn.getresponse()
                status, body = response.status, response.read(1 << 20)
            finally:
                conn.close()
    except ssl.SSLCertVerificationError as error:
        raise Exit(f"Bad settings in .env: ACME_DIRECTORY {acme.directory} presents a "
                   f"certificate that is not trusted ({error.verify_message}); for a private "
                   "ACME server, give its CA in ACME_CA_BUNDLE.")
    except (OSError, http.client.HTTPException) as error:
        raise Exit(f"The ACME server cannot be reached from {place(c)}: {acme.directory} "
                   f"({error}). Check ACME_DIRECTORY and that {place(c)} can reach it (a "
                   "firewall, a proxy); nothing was changed.")
    problem = directory_problem(status, body, acme.directory)
    if problem:
        raise Exit(f"Bad settings in .env: {problem}.")


# --- Files and the operator's certificate ---------------------------------------------------------

def ca_bundle_problem(acme: Acme) -> str:
    """Why ACME_CA_BUNDLE cannot be used; "" when it can (or is not set)."""
    if not acme.ca_bundle:
        return ""
    try:
        text = open(acme.ca_bundle, "rb").read()
    except OSError as error:
        return (f"ACME_CA_BUNDLE={acme.ca_bundle!r} cannot be read ({error.strerror}): point "
                "it at a PEM file with the CA certificates of your ACME server, or leave it empty.")
    if b"-----BEGIN CERTIFICATE-----" not in text:
        return f"ACME_CA_BUNDLE={acme.ca_bundle!r} holds no PEM certificate."
    return ""


def ensure_hub_ca_file(secrets_dir, acme: Acme) -> str:
    """secrets/acme-ca.pem as ACME_CA_BUNDLE says (a copy, 0600, or none); what was done, or ""."""
    from pathlib import Path

    from tasks.files import write_atomic

    target = Path(secrets_dir) / HUB_CA_FILE
    wanted = open(acme.ca_bundle, "rb").read() if acme.on and acme.ca_bundle else None
    have = target.read_bytes() if target.exists() else None
    if wanted == have:
        return ""
    if wanted is None:
        target.unlink()
        return f"ACME CA bundle: removed secrets/{HUB_CA_FILE} (ACME_CA_BUNDLE is not set)"
    write_atomic(target, wanted, 0o600)
    return f"ACME CA bundle: copied ACME_CA_BUNDLE into secrets/{HUB_CA_FILE} for the hub"


def own_certificate_problem(self_made: bool | None) -> str:
    """ACME and a certificate the operator put in secrets/ cannot both be served: say so
    rather than silently prefer one. `self_made` is None when secrets/ holds none."""
    if self_made is None or self_made:
        return ""
    return ("ACME_DOMAIN is set, and secrets/jupyterhub.crt is your own certificate: leave "
            "ACME_DOMAIN empty to keep serving yours, or remove secrets/jupyterhub.crt and "
            "secrets/jupyterhub.key to serve one from the ACME server.")


def is_self_made(cert_pem: bytes | None) -> bool | None:
    """Whether secrets/ holds the self-signed certificate inv makes (None: no certificate).
    One that cannot be read counts as ours: plan_cert refuses it already when it is not."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from tasks.certs import MARKER_ORG

    if cert_pem is None:
        return None
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return True
    return any(a.value == MARKER_ORG for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))


def check_acme(c, root, acme: Acme, starting: bool, client=None, project: str = "") -> None:
    """Every check of the ACME settings that needs more than the settings: the certificate in
    secrets/, ACME_CA_BUNDLE, HUB_HTTP_PORT free, the name, the ACME server, a rate limit the
    hub's service still waits out. Raises Exit; changes nothing."""
    from tasks import certs

    if not acme.on:
        return
    cert_pem, _ = certs.read_pair(root / "secrets")
    for problem in (own_certificate_problem(is_self_made(cert_pem)), ca_bundle_problem(acme)):
        if problem:
            raise Exit(f"Bad settings in .env: {problem}")
    if starting and client is not None:
        from tasks.checks import require_port_free

        require_port_free(c, client, project, acme.http_port, setting="HUB_HTTP_PORT")
    require_name_points_here(c, acme)
    require_directory_answers(c, acme)
    if client is not None:
        from tasks.acmestatus import require_no_rate_limit

        require_no_rate_limit(client, project, acme)
