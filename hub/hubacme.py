"""The hub's certificate from an ACME CA (RFC 8555; Let's Encrypt unless ACME_DIRECTORY says
otherwise), issued and renewed while the hub runs.

JupyterHub runs this as a managed service when ACME_DOMAIN is set (jupyterhub_config.py), and
starts it again if it exits. It answers the CA's HTTP-01 challenges on port 8080, which compose
publishes on HUB_HTTP_PORT (80), and sends every other request there to the hub's HTTPS
address. The protocol is the `acme` library's (certbot's own); this file only decides when to
ask and keeps the results, in the hub's data volume (so `inv backup --hub` has them), in
/data/acme (0700, every file 0600):

  account.key    the ACME account's key, made once
  account.json   the account's address at each ACME server it registered with
  current.pem    the key and certificate chain the proxy serves, one file so they change as one
  current.json   where current.pem came from: server, name, fingerprint
  previous.pem   the pair current.pem replaced
  status.json    this service's report (`inv status` and `inv cert` read it through the engine),
                 and the backoff it keeps across restarts
  renew-now      a request (`inv up`, `inv cert --renew`): try at once

The proxy (proxy.js) serves current.pem as soon as it changes: a renewal restarts
nothing, and connections already open keep going. A failed attempt changes nothing in
current.pem; the next one comes after 1, 2, 4... minutes (at most 6 hours), or when the CA's
rate limit says.
"""
import datetime as dt
import json
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
CHALLENGE_PORT = 8080
CHALLENGE_PATH = "/.well-known/acme-challenge/"
# Renew when a third of the lifetime is left: day 60 of Let's Encrypt's 90, as certbot and
# Let's Encrypt advise; it scales with whatever lifetime the CA gives.
RENEW_AT_FRACTION = 2 / 3
BACKOFF_FIRST_S = 60
BACKOFF_MAX_S = 6 * 3600
ORDER_DEADLINE_S = 120  # validation and issuance, once asked; Let's Encrypt takes seconds
NETWORK_TIMEOUT_S = 30
BAD_NONCE_TRIES = 4  # whole attempts, each with the library's own one retry
IDLE_CHECK_S = 1.0  # how often a waiting service looks for a renew-now request

log = logging.getLogger("acme")


# --- Pure: when to act, and what to say ---------------------------------------------------------

def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso(moment) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def parse_iso(text):
    return dt.datetime.fromisoformat(text) if text else None


def renew_at(not_before: dt.datetime, not_after: dt.datetime) -> dt.datetime:
    """When a certificate valid from not_before to not_after is renewed."""
    return not_before + (not_after - not_before) * RENEW_AT_FRACTION


def backoff_s(failures: int) -> int:
    """Seconds to wait after the n-th failure in a row: 60, 120, 240... at most 6 hours."""
    if failures <= 0:
        return 0
    return min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** min(failures - 1, 20))


def human_s(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h".replace(".0 h", " h")


@dataclass(frozen=True)
class Served:
    """What current.pem holds, as current.json and the certificate say."""
    directory: str
    domain: str
    sha256: str
    not_before: dt.datetime
    not_after: dt.datetime
    issuer: str
    names: tuple

    def fits(self, domain: str, directory: str) -> bool:
        return self.domain == domain and self.directory == directory and domain in self.names


def next_attempt(now, served, domain, directory, failures, retry_at):
    """(when, why) the next attempt is due; `when` may be now or in the past (at once)."""
    if failures and retry_at and retry_at > now:
        return retry_at, f"after {failures} failed attempt{'s' if failures > 1 else ''}"
    if served is None:
        return now, f"no certificate for {domain} yet"
    if not served.fits(domain, directory):
        return now, (f"the certificate is for {served.domain} from {served.directory}; "
                     f"the settings ask for {domain} from {directory}")
    return renew_at(served.not_before, served.not_after), "renewal"


_RETRY_AFTER = re.compile(r"retry after (\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)(?: UTC)?", re.IGNORECASE)


def rate_limit_until(detail: str):
    """The time a rate limit ends, as Let's Encrypt writes it in the error ("retry after
    2026-12-01 18:00:00 UTC"), or None."""
    match = _RETRY_AFTER.search(detail or "")
    if not match:
        return None
    return dt.datetime.fromisoformat(match.group(1).replace(" ", "T")).replace(tzinfo=dt.timezone.utc)


def explain(error, domain: str, directory: str) -> tuple:
    """(kind, message, retry_at or None): what went wrong, in words the operator can act on."""
    import requests
    from acme import errors, messages

    if isinstance(error, requests.exceptions.SSLError):
        return "unreachable", (f"the ACME server {directory} answered with a certificate this hub "
                               f"does not trust ({error}); for a private ACME server, give its CA "
                               "in ACME_CA_BUNDLE"), None
    if isinstance(error, requests.exceptions.RequestException):
        return "unreachable", f"the ACME server {directory} cannot be reached ({_short(error)})", None
    if isinstance(error, errors.ValidationError):
        problems = "; ".join(str(ch.error.detail or ch.error) for authz in error.failed_authzrs
                             for ch in authz.body.challenges if ch.error is not None)
        return "validation", (f"the ACME server could not check that this hub is {domain}: "
                              f"{problems}. Check that {domain} points at this host and that "
                              "port 80 reaches the hub (HUB_HTTP_PORT)"), None
    if isinstance(error, errors.TimeoutError):
        return "timeout", (f"the ACME server did not finish validating {domain} within "
                           f"{ORDER_DEADLINE_S} s"), None
    if isinstance(error, errors.IssuanceError):
        error = error.error
    if isinstance(error, messages.Error):
        if error.code == "rateLimited":
            until = rate_limit_until(error.detail)
            when = f" until {iso(until)}" if until else " for now"
            return "rate-limit", (f"the ACME server refuses more certificates for {domain}{when} "
                                  f"(rate limit): {error.detail}"), until
        return error.code or "acme", f"the ACME server refused: {error.detail or error}", None
    return "error", f"{type(error).__name__}: {error}", None


def _short(error) -> str:
    """A requests error without the urllib3 object reprs it nests."""
    text = str(error)
    match = re.search(r"\(Caused by \w+\([^:]*: ?(.*)\)\)$", text)
    return match.group(1).strip("'\"") if match else text


# --- Files -------------------------------------------------------------------------------------------

def write_private(path: Path, data: bytes) -> None:
    """Replace `path` whole with `data`, mode 0600: a reader sees the old file or the new one.
    (tasks/files.py's write_atomic, again: the hub image has the hub's files, not the tasks'.)"""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # so the rename itself survives a power cut
    finally:
        os.close(folder)


class Store:
    """The files in /data/acme."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)

    def path(self, name) -> Path:
        return self.folder / name

    def read_json(self, name) -> dict:
        try:
            return json.loads(self.path(name).read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def write_json(self, name, value) -> None:
        write_private(self.path(name), json.dumps(value, indent=1).encode())

    def account_key(self):
        """The account's key (EC P-256), made and kept on first use."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        path = self.path("account.key")
        if path.exists():
            return serialization.load_pem_private_key(path.read_bytes(), password=None)
        key = ec.generate_private_key(ec.SECP256R1())
        write_private(path, _key_pem(key))
        log.info("made a new ACME account key in %s", path)
        return key

    def served(self):
        """What current.pem holds, or None when there is none (or it cannot be read)."""
        from cryptography import x509

        info = self.read_json("current.json")
        try:
            cert = x509.load_pem_x509_certificate(self.path("current.pem").read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        return summary(cert, info.get("directory", ""), info.get("domain", ""))

    def replace_served(self, key_pem: bytes, chain_pem: str, served: Served) -> None:
        """Make key and chain the served pair; the pair before is kept as previous.pem."""
        current = self.path("current.pem")
        if current.exists():
            write_private(self.path("previous.pem"), current.read_bytes())
        write_private(current, key_pem + chain_pem.encode())
        self.write_json("current.json", {"directory": served.directory, "domain": served.domain,
                                         "sha256": served.sha256})

    def take_request(self):
        """The id of a pending renew-now request, which is then gone; None if there is none."""
        path = self.path("renew-now")
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            return None
        path.unlink(missing_ok=True)
        return text or "renew-now"


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def summary(cert, directory: str, domain: str) -> Served:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    try:
        names = tuple(cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    issuer = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return Served(directory=directory, domain=domain,
                  sha256=cert.fingerprint(hashes.SHA256()).hex(),
                  not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                  issuer=issuer[0].value if issuer else cert.issuer.rfc4514_string(), names=names)


# --- The CA's challenges, and a way to HTTPS for everyone else -----------------------------------

class Responder:
    """HTTP on port 8080: the key authorizations the CA asks for, and a redirect to the hub's
    HTTPS address for any other request (someone typing http://)."""

    def __init__(self, https_url: str, port: int = CHALLENGE_PORT, host: str = "0.0.0.0"):
        self.answers = {}  # token -> key authorization
        responder = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "jupyterhub-deploy-acme"
            sys_version = ""

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if path.startswith(CHALLENGE_PATH):
                    token = path[len(CHALLENGE_PATH):]
                    answer = responder.answers.get(token)
                    log.info("challenge %s asked by %s: %s", token[:12], self.client_address[0],
                             "answered" if answer else "not ours (404)")
                    body = (answer or "").encode()
                    self.send_response(200 if answer else 404)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.command == "GET":
                        self.wfile.write(body)
                    return
                self.send_response(301)
                self.send_header("Location", https_url.rstrip("/") + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET

            def log_message(self, *args):  # the challenges are logged above; the rest is noise
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True, name="acme-http").start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --- One attempt ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    domain: str
    email: str
    directory: str
    ca_file: str  # a CA bundle to trust the ACME server with, or "" for the usual ones
    https_url: str

    @classmethod
    def from_env(cls, env) -> "Settings":
        domain = env.get("ACME_DOMAIN", "").strip().lower()
        missing = [k for k in ("ACME_DOMAIN", "ACME_EMAIL", "ACME_DIRECTORY_URL") if not env.get(k)]
        if missing:
            raise SystemExit(f"{', '.join(missing)} not set: start the hub with `inv up`, "
                             "which checks the ACME settings in .env and sets them.")
        port = env.get("ACME_HTTPS_PORT", "443")
        return cls(domain=domain, email=env["ACME_EMAIL"].strip(),
                   directory=env["ACME_DIRECTORY_URL"].strip(),
                   ca_file=env.get("ACME_CA_FILE", "").strip(),
                   https_url=f"https://{domain}{'' if port == '443' else ':' + port}/")


def issue(settings: Settings, store: Store, responder: Responder) -> tuple:
    """Ask the CA for a certificate for settings.domain: (key_pem, chain_pem). Raises what the
    acme library or the network raise."""
    import josepy as jose
    from acme import client, crypto_util, errors, messages
    from cryptography.hazmat.primitives.asymmetric import ec

    account_key = jose.JWKEC(key=store.account_key())
    net = client.ClientNetwork(account_key, alg=jose.ES256, verify_ssl=settings.ca_file or True,
                               user_agent="jupyterhub-deploy", timeout=NETWORK_TIMEOUT_S)
    acme = client.ClientV2(client.ClientV2.get_directory(settings.directory, net), net)
    _use_account(acme, store, settings)
    key = ec.generate_private_key(ec.SECP256R1())  # a new key with every certificate
    csr = crypto_util.make_csr(_key_pem(key), [settings.domain])
    try:
        order = acme.new_order(csr)
    except messages.Error as error:
        if error.code != "accountDoesNotExist":
            raise
        # The server forgot the account (a private CA reset, say): the same key signs up again.
        log.warning("the ACME server no longer knows the account; registering it again")
        _forget_account(store, settings.directory)
        _use_account(acme, store, settings)
        order = acme.new_order(csr)
    try:
        for authz in order.authorizations:
            if authz.body.status == messages.STATUS_VALID:
                continue  # the CA still trusts an earlier validation
            challenge = next((c for c in authz.body.challenges
                              if c.chall.typ == "http-01"), None)
            if challenge is None:
                raise errors.Error(f"the ACME server offers no http-01 challenge for "
                                   f"{authz.body.identifier.value}")
            response, validation = challenge.response_and_validation(account_key)
            responder.answers[challenge.chall.encode("token")] = validation
            acme.answer_challenge(challenge, response)
        deadline = dt.datetime.now() + dt.timedelta(seconds=ORDER_DEADLINE_S)
        order = acme.poll_and_finalize(order, deadline)
    finally:
        responder.answers.clear()
    return _key_pem(key), order.fullchain_pem


def with_fresh_nonces(attempt, tries: int = BAD_NONCE_TRIES):
    """attempt() again at once when the CA refused a request's nonce (badNonce), up to
    `tries` times in all. RFC 8555 6.5: a client retries such a request; the acme library
    does so once, and a CA may refuse two in a row (Pebble refuses 5 % at random, on
    purpose). Counted as a failed attempt, it would wait a backoff of a minute or more for
    nothing; anything else is raised as it is."""
    from acme import errors, messages

    for left in range(tries - 1, -1, -1):
        try:
            return attempt()
        except (messages.Error, errors.IssuanceError) as error:
            inner = error.error if isinstance(error, errors.IssuanceError) else error
            if left == 0 or getattr(inner, "code", None) != "badNonce":
                raise
            log.info("the ACME server refused a nonce (%s); asking again at once", _short(inner))


def _use_account(acme, store: Store, settings: Settings) -> None:
    """The account at this ACME server: the one kept, or a new one (its contact the e-mail)."""
    from acme import errors, messages

    accounts = store.read_json("account.json")
    known = accounts.get(settings.directory)
    if known:
        acme.net.account = messages.RegistrationResource(uri=known["uri"], body=messages.Registration())
        if known.get("email") != settings.email:
            acme.update_registration(acme.net.account, messages.Registration.from_data(
                email=settings.email))
            accounts[settings.directory] = {**known, "email": settings.email}
            store.write_json("account.json", accounts)
            log.info("account's e-mail is now %s", settings.email)
        return
    # Setting ACME_DOMAIN is agreeing to the CA's terms (README says so, as certbot's
    # --agree-tos does).
    registration = messages.NewRegistration.from_data(email=settings.email,
                                                      terms_of_service_agreed=True)
    acme.net.account = None  # a new account is asked for with the key itself, not an account's URL
    try:
        account = acme.new_account(registration)
        uri = account.uri
    except errors.ConflictError as existing:  # this key already has an account there
        uri = existing.location
        acme.net.account = messages.RegistrationResource(uri=uri, body=messages.Registration())
    accounts[settings.directory] = {"uri": uri, "email": settings.email}
    store.write_json("account.json", accounts)
    log.info("ACME account at %s: %s", settings.directory, uri)


def _forget_account(store: Store, directory: str) -> None:
    accounts = store.read_json("account.json")
    accounts.pop(directory, None)
    store.write_json("account.json", accounts)


# --- The service -------------------------------------------------------------------------------

class Service:
    """Decides when to attempt, attempts, and keeps status.json saying so."""

    def __init__(self, settings: Settings, store: Store, responder: Responder, clock=now_utc):
        self.settings, self.store, self.responder, self.clock = settings, store, responder, clock
        self.instance = secrets.token_hex(6)
        self.started = clock()
        old = store.read_json("status.json")
        same = old.get("config") == self.config
        # The backoff outlives a restart, so a hub that restarts cannot hammer the CA.
        self.failures = old.get("failures", 0) if same else 0
        self.retry_at = parse_iso(old.get("next_attempt")) if same and self.failures else None
        self.last_attempt = old.get("last_attempt") if same else None
        self.last_error = old.get("last_error") if same else None
        self.last_success = old.get("last_success") if same else None
        self.state = "starting"
        self.announced = None  # the (when, why) of the next attempt last reported

    @property
    def config(self) -> dict:
        s = self.settings
        return {"domain": s.domain, "email": s.email, "directory": s.directory}

    def report(self, served, due=None, why="") -> dict:
        status = {
            "config": self.config, "instance": self.instance, "started": iso(self.started),
            "state": self.state, "failures": self.failures,
            "next_attempt": iso(due), "next_attempt_why": why,
            "last_attempt": self.last_attempt, "last_success": self.last_success,
            "last_error": self.last_error, "certificate": None,
        }
        if served is not None:
            status["certificate"] = {
                "sha256": served.sha256, "issuer": served.issuer, "names": list(served.names),
                "not_before": iso(served.not_before), "not_after": iso(served.not_after),
                "renew_at": iso(renew_at(served.not_before, served.not_after)),
                "directory": served.directory, "domain": served.domain,
                "fits": served.fits(self.settings.domain, self.settings.directory)}
        self.store.write_json("status.json", status)
        return status

    def step(self) -> float:
        """Attempt if one is due or asked for; else say (once) when the next one is, and
        return how long to wait before looking again."""
        now = self.clock()
        served = self.store.served()
        due, why = next_attempt(now, served, self.settings.domain, self.settings.directory,
                                self.failures, self.retry_at)
        request = self.store.take_request()
        if request is None and due > now:
            if self.announced != (due, why):
                self.announced = (due, why)
                self.state = "backing-off" if self.failures else "waiting"
                self.report(served, due, why)
                log.info("next attempt at %s (%s), in %s", iso(due), why,
                         human_s((due - now).total_seconds()))
            return IDLE_CHECK_S
        self.announced = None
        self.attempt(served, why if request is None else f"asked for ({request})", request)
        return 0

    def attempt(self, served, why: str, request) -> None:
        s = self.settings
        started = self.clock()
        self.last_attempt = {"started": iso(started), "ended": None, "why": why,
                             "request": request, "instance": self.instance, "ok": None}
        self.state = "attempting"
        self.report(served)
        log.info("asking %s for a certificate for %s (%s)", s.directory, s.domain, why)
        try:
            key_pem, chain_pem = with_fresh_nonces(
                lambda: issue(s, self.store, self.responder))
            from cryptography import x509

            new = summary(x509.load_pem_x509_certificate(chain_pem.encode()), s.directory, s.domain)
            self.store.replace_served(key_pem, chain_pem, new)
        except Exception as error:  # noqa: BLE001  every failure is reported and retried
            kind, message, until = explain(error, s.domain, s.directory)
            self.failures += 1
            ended = self.clock()
            wait = backoff_s(self.failures)
            self.retry_at = max(until or ended, ended + dt.timedelta(seconds=wait))
            self.last_attempt.update(ended=iso(ended), ok=False)
            self.last_error = {"at": iso(ended), "kind": kind, "message": message}
            kept = (f"the certificate valid until {iso(served.not_after)} stays in use"
                    if served else "the hub keeps its self-signed certificate")
            log.error("no certificate for %s: %s; %s; attempt %d failed, next in %s (at %s)",
                      s.domain, message, kept, self.failures,
                      human_s((self.retry_at - ended).total_seconds()), iso(self.retry_at))
            self.state = "backing-off"
            why = f"after {self.failures} failed attempt{'s' if self.failures > 1 else ''}"
            self.report(served, self.retry_at, why)
            self.announced = (self.retry_at, why)
            return
        ended = self.clock()
        self.failures, self.retry_at, self.last_error = 0, None, None
        self.last_attempt.update(ended=iso(ended), ok=True)
        self.last_success = iso(ended)
        log.info("certificate for %s from %s (sha256 %s), valid until %s, renews from %s; took %.1f s",
                 s.domain, new.issuer, new.sha256[:16], iso(new.not_after),
                 iso(renew_at(new.not_before, new.not_after)), (ended - started).total_seconds())
        self.state = "waiting"
        due = renew_at(new.not_before, new.not_after)
        self.report(new, due, "renewal")
        self.announced = (due, "renewal")

    def run(self) -> None:
        served = self.store.served()
        if served is not None:
            log.info("serving the certificate for %s from %s, valid until %s", served.domain,
                     served.issuer, iso(served.not_after))
        while True:
            wait = self.step()
            if wait:
                time.sleep(wait)


def main(env=None) -> None:
    env = os.environ if env is None else env
    logging.basicConfig(level=logging.INFO, datefmt="%Y-%m-%d %H:%M:%S",
                        format="[%(levelname).1s %(asctime)s.%(msecs)03d acme] %(message)s")
    settings = Settings.from_env(env)
    store = Store(env.get("HUB_ACME_DIR", "/data/acme"))
    responder = Responder(settings.https_url, int(env.get("ACME_CHALLENGE_PORT", CHALLENGE_PORT)))
    log.info("answering ACME challenges for %s on port %d; CA: %s", settings.domain,
             responder.port, settings.directory)
    Service(settings, store, responder).run()


if __name__ == "__main__":
    main()
