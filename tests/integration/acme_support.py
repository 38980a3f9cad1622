"""A private ACME CA for the tests: Debian's Pebble (an RFC 8555 test server) with its own CA,
a DNS server that says where the hub's name leads, and a view of /etc/hosts in which the
name resolves for `inv` too. Validation is real: Pebble fetches the HTTP-01 answer from the
hub's published challenge port, as Let's Encrypt would from port 80.

Where everything listens, so that all traffic stays on loopback and the deployment's own
network:
- the DNS server: 127.0.0.1 (only Pebble asks it);
- Pebble's ACME API: the deployment network's gateway address, which is this machine's
  address on that network: the hub container reaches it there, and `inv` checks it from here;
- Pebble's management API (its CA's root): 127.0.0.1, for the tests only;
- Pebble validates at hub.test -> 127.0.0.1, on the port the hub publishes for challenges.
"""
import ipaddress
import json
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HUB_NAME = "hub.test"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class TinyDNS:
    """A DNS server on 127.0.0.1 that answers A queries for the names it is given (an empty
    answer for other types, NXDOMAIN for other names), and keeps the questions it was asked."""

    def __init__(self, names: dict):
        self.names = {name.lower(): address for name, address in names.items()}
        self.questions = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True, name="tinydns").start()

    def _serve(self):
        while True:
            try:
                query, peer = self.sock.recvfrom(512)
                self.sock.sendto(self.answer(query), peer)
            except OSError:
                return  # closed
            except (IndexError, struct.error, UnicodeDecodeError):
                continue  # not a question we can read: no answer, as a server under load

    def answer(self, query: bytes) -> bytes:
        ident, flags = struct.unpack("!HH", query[:4])
        end, labels = 12, []
        while query[end]:
            labels.append(query[end + 1:end + 1 + query[end]].decode("ascii"))
            end += 1 + query[end]
        qtype = struct.unpack("!H", query[end + 1:end + 3])[0]
        question = query[12:end + 5]
        name = ".".join(labels).lower()
        self.questions.append((name, qtype))
        address = self.names.get(name)
        record = b""
        if address and qtype == 1:  # A
            record = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 0, 4) + socket.inet_aton(address)
        rcode = 0 if address else 3
        header = struct.pack("!HHHHHH", ident, 0x8400 | (flags & 0x0100) | rcode, 1,
                             1 if record else 0, 0, 0)
        return header + question + record

    def close(self):
        self.sock.close()


def _pem(obj) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def api_certificate(folder: Path, address: str) -> Path:
    """A CA of the test's own and, signed by it, the certificate Pebble's API presents at
    `address`. Returns the CA's file: what ACME_CA_BUNDLE names."""
    now = datetime.now(timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jupyterhub-deploy test ACME API CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address(address)),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    (folder / "api-ca.pem").write_bytes(_pem(ca))
    (folder / "api-cert.pem").write_bytes(_pem(cert))
    (folder / "api-key.pem").write_bytes(_pem(key))
    return folder / "api-ca.pem"


class Pebble:
    """Debian's pebble, started and stopped by the tests. Its CA is new at every start (that
    is Pebble's way), and so are its accounts."""

    def __init__(self, folder: Path, address: str, challenge_port: int, dns_port: int):
        self.folder, self.address = folder, address
        self.challenge_port, self.dns_port = challenge_port, dns_port
        self.api_port = free_port()
        self.management_port = free_port()
        self.ca_bundle = api_certificate(folder, address)
        self.process = None
        self.log_path = folder / "pebble.log"
        self.starts = 0

    @property
    def directory(self) -> str:
        return f"https://{self.address}:{self.api_port}/dir"

    def start(self, validity_s: int = 0) -> None:
        """Start it; `validity_s` shortens the certificates it issues (Pebble's
        certificateValidityPeriod; its default is five years)."""
        config = {"pebble": {
            "listenAddress": f"{self.address}:{self.api_port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(self.folder / "api-cert.pem"),
            "privateKey": str(self.folder / "api-key.pem"),
            "httpPort": self.challenge_port, "tlsPort": free_port(),
            "ocspResponderURL": "", "externalAccountBindingRequired": False,
            **({"certificateValidityPeriod": validity_s} if validity_s else {}),
        }}
        path = self.folder / f"pebble-{self.starts}.json"
        path.write_text(json.dumps(config))
        self.starts += 1
        log = open(self.log_path, "a")
        # Real validation: none of PEBBLE_VA_ALWAYS_VALID, PEBBLE_VA_NOSLEEP; Pebble keeps
        # its random waits before validating and its 5% of refused nonces, as it ships.
        self.process = subprocess.Popen(
            [shutil.which("pebble") or "pebble", "-config", str(path), "-dnsserver",
             f"127.0.0.1:{self.dns_port}", "-strict=false"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.folder)
        log.close()
        end = time.monotonic() + 20
        last = None
        while time.monotonic() < end:
            try:
                self.get(self.directory, self.ca_bundle)
                return
            except OSError as error:
                last = error
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"pebble did not answer {self.directory} within 20 s (last: {last});"
                           f" its log:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    @staticmethod
    def get(url: str, cafile) -> bytes:
        context = ssl.create_default_context(cafile=str(cafile))
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            return response.read()

    def root(self) -> bytes:
        """The PEM of the CA Pebble issues under now (new at each start)."""
        return self.get(f"https://127.0.0.1:{self.management_port}/roots/0", self.ca_bundle)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def issued(self) -> int:
        """How many certificates it has issued since the tests began."""
        return self.log().count("Issued certificate serial")


def served_certificate(port: int, name: str = HUB_NAME, cafile=None):
    """The certificate the hub presents on 127.0.0.1:port for `name` (x509), verified against
    `cafile` with the name checked when given, unverified otherwise."""
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else ssl._create_unverified_context()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=name) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def fingerprint(cert) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def hosts_view(folder: Path, names: dict) -> tuple:
    """A Deployment.program that runs `inv` where /etc/hosts holds `names` and nothing else
    is asked (no DNS query leaves the machine), in a mount namespace of its own: the
    machine's own /etc/hosts is never touched. `python -c CODE ARGS` execs unshare, which
    mounts the two files over the real ones and execs `python -m invoke ARGS`."""
    hosts = folder / "hosts"
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{a} {n}\n" for n, a in names.items()))
    nsswitch = folder / "nsswitch.conf"
    nsswitch.write_text("hosts: files\n")
    script = 'mount --bind "$0" /etc/hosts && mount --bind "$1" /etc/nsswitch.conf && shift && exec "$@"'
    code = ("import os, sys; os.execvp('unshare', ['unshare', '--mount', 'sh', '-c', "
            f"{script!r}, {str(hosts)!r}, {str(nsswitch)!r}, sys.executable, '-m', 'invoke', "
            "*sys.argv[1:]])")
    return ("-c", code)
