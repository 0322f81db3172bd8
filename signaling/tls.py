"""`classroom tls init`: a school's own certificate authority and the server's certificate.

Browsers open cameras only on secure pages: a school LAN with no certificate of its
own gets one here. A local CA (kept in `<data-dir>/tls/`, made once) signs a server
certificate for the names and addresses the projector PCs use to reach the server;
each projector PC trusts the CA once, and later certificates (a new address) need
nothing more on the PCs. The CA may sign only those names and addresses (X.509 name
constraints, RFC 5280 §4.2.1.10): its key, if stolen, cannot vouch for another site.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TLS_DIR = "tls"
CA_CERT, CA_KEY = "ca.crt", "ca.key"
SERVER_CERT, SERVER_KEY = "server.crt", "server.key"
CA_DAYS = 10 * 365
# Browsers refuse publicly trusted certificates valid longer than 398 days; a local
# root is exempt, but a year keeps the habit (and `tls init` again renews it).
SERVER_DAYS = 397

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class TlsFiles:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / CA_CERT

    @property
    def ca_key(self) -> Path:
        return self.directory / CA_KEY

    @property
    def cert(self) -> Path:
        return self.directory / SERVER_CERT

    @property
    def key(self) -> Path:
        return self.directory / SERVER_KEY


def default_names(host: str, public_host: str | None) -> list[str]:
    """What projector PCs may type: this machine's names and addresses, and localhost."""
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()]
    for candidate in (host, public_host):
        if candidate and candidate not in ("0.0.0.0", "::"):
            names.append(candidate)
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except OSError:
        infos = []
    names += [str(info[4][0]) for info in infos]
    return names


def split_names(names: Iterable[str]) -> tuple[list[str], list[IpAddress]]:
    """DNS names and IP addresses, each once, in order."""
    dns: list[str] = []
    ips: list[IpAddress] = []
    for name in names:
        name = name.strip().strip("[]")
        if not name:
            continue
        try:
            ip = ipaddress.ip_address(name.split("%")[0])
        except ValueError:
            if name.lower() not in dns:
                dns.append(name.lower())
            continue
        if ip not in ips:
            ips.append(ip)
    return dns, ips


def init(directory: Path, names: Iterable[str], now: dt.datetime | None = None) -> TlsFiles:
    """Make the CA (unless `directory` has one) and a new server certificate for `names`.

    A CA made before is kept, so that the PCs that trust it go on trusting the server;
    but a name outside its constraints needs a new one: delete `ca.*` first.
    """
    now = now or dt.datetime.now(dt.UTC)
    files = TlsFiles(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dns, ips = split_names(names)
    if not dns and not ips:
        raise ValueError("a certificate needs at least one name or address")
    if files.ca_cert.exists() and files.ca_key.exists():
        ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        loaded = serialization.load_pem_private_key(files.ca_key.read_bytes(), None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{files.ca_key} is not this tool's CA key")
        ca_key = loaded
        _check_within(ca_cert, dns, ips)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _ca(ca_key, dns, ips, now)
        _write_key(files.ca_key, ca_key)
        files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _server(key, ca_key, ca_cert, dns, ips, now)
    _write_key(files.key, key)
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


def spki_sha256(cert_pem: bytes) -> str:
    """Base64 SHA-256 of the certificate's public key (Chromium's
    `--ignore-certificate-errors-spki-list` takes this: it pins exactly this key)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def how_to_trust(files: TlsFiles, url: str) -> str:
    """What to do on each projector PC, once."""
    spki = spki_sha256(files.cert.read_bytes())
    return f"""\
The school's certificate authority: {files.ca_cert}
Copy it to each projector PC as classroom-ca.crt (a USB stick will do), trust it once:
  Windows (as administrator):  certutil -addstore -f Root classroom-ca.crt
    or double-click it -> Install Certificate -> Local Machine ->
    "Trusted Root Certification Authorities". Chrome and Edge use it at once.
  Debian/Ubuntu (Chromium):    sudo apt install libnss3-tools
    certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n classroom-ca -i classroom-ca.crt
  macOS:  sudo security add-trusted-cert -d -r trustRoot \\
    -k /Library/Keychains/System.keychain classroom-ca.crt
Or, on a kiosk PC with its own Chromium profile, pin this server's key alone:
  chromium --user-data-dir=... --ignore-certificate-errors-spki-list={spki} {url}
Then serve with it:
  classroom serve --tls   (or --tls-cert {files.cert} --tls-key {files.key})
and open {url}
"""


def _ca(
    key: ec.EllipticCurvePrivateKey, dns: list[str], ips: list[IpAddress], now: dt.datetime
) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "classroom"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"classroom local CA {now:%Y-%m-%d}"),
        ]
    )
    permitted: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    permitted += [x509.IPAddress(ipaddress.ip_network(ip)) for ip in ips]
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _server(
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    dns: list[str],
    ips: list[IpAddress],
    now: dt.datetime,
) -> x509.Certificate:
    first = dns[0] if dns else str(ips[0])
    alt: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    alt += [x509.IPAddress(ip) for ip in ips]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _check_within(ca: x509.Certificate, dns: list[str], ips: list[IpAddress]) -> None:
    """A kept CA may sign only the names it was made for (its name constraints)."""
    try:
        constraints = ca.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return
    subtrees = constraints.permitted_subtrees or []
    allowed_dns = {g.value for g in subtrees if isinstance(g, x509.DNSName)}
    networks = [
        g.value
        for g in subtrees
        if isinstance(g, x509.IPAddress)
        and isinstance(g.value, ipaddress.IPv4Network | ipaddress.IPv6Network)
    ]
    outside = [d for d in dns if not any(d == a or d.endswith("." + a) for a in allowed_dns)]
    outside += [str(ip) for ip in ips if not any(ip in net for net in networks)]
    if outside:
        raise ValueError(
            f"the existing CA may not sign {', '.join(outside)}: delete ca.crt and ca.key "
            "to make a new one (and trust it again on the PCs)"
        )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Only the server's user may read a private key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)
