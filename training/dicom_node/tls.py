"""DICOM over TLS (PS3.15 Annex B, the "Basic TLS Secure Transport Connection
Profile"; IHE ATNA's node authentication) for the node and its client side,
with Python's ``ssl`` contexts handed to pynetdicom.

* ``server_context(config)``: the node's certificate and key, TLS 1.2 or newer,
  and - the default with TLS on - **mutual TLS**: a caller must present a
  certificate signed by a CA in ``tls_ca_bundle``.
* ``client_context(config, peer)``: for associations to a peer marked
  ``tls = true``: the peer's certificate must chain to ``tls_ca_bundle`` (and
  name the peer's host, unless ``tls_check_hostname = false``); this node
  presents its own certificate.
* ``tls_failure_reason(text)``: an OpenSSL error turned into a sentence
  ("the client sent no certificate", "certificate has expired", "not signed
  by a CA this node trusts", "a plain DICOM connection came to the TLS port").

The handshake on the listening side runs in the connection's own thread with
a time limit (``scp.StorageServer``), so a client that connects and says
nothing never holds up other callers."""

from __future__ import annotations

import ssl
from pathlib import Path

from .config import ConfigError, NodeConfig, Peer

TLS_PORT = 2762  # DICOM's registered port for TLS ("dicom-tls")
VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def _file(path, what: str) -> str:
    if path is None or str(path) == "":
        raise ConfigError(f"TLS is on but no {what} is set ([tls] in the node configuration).")
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"The TLS {what} {p} does not exist (or is not a file).")
    return str(p)


def _load_own(ctx: ssl.SSLContext, config: NodeConfig) -> None:
    cert = _file(config.tls_certificate, "certificate")
    key = _file(config.tls_private_key, "private key")
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ConfigError(f"The TLS certificate {cert} and key {key} cannot be used together: "
                          f"{exc.reason or exc} (is the key the certificate's, in PEM, unencrypted?).") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read the TLS certificate or key: {exc.strerror or exc}.") from None


def _load_ca(ctx: ssl.SSLContext, config: NodeConfig) -> None:
    ca = _file(config.tls_ca_bundle, "CA bundle (the certificates of the CAs this node trusts)")
    try:
        ctx.load_verify_locations(cafile=ca)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"The TLS CA bundle {ca} cannot be read: {getattr(exc, 'reason', None) or exc}.") from None


def _minimum(config: NodeConfig) -> ssl.TLSVersion:
    return VERSIONS[config.tls_minimum_version]


def server_context(config: NodeConfig) -> ssl.SSLContext:
    """The listening side's context (``ConfigError`` with a plain reason when a file is not usable)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _minimum(config)
    _load_own(ctx, config)
    if config.tls_require_client_certificate or config.tls_ca_bundle:
        _load_ca(ctx, config)
    ctx.verify_mode = ssl.CERT_REQUIRED if config.tls_require_client_certificate else ssl.CERT_OPTIONAL
    return ctx


def client_context(config: NodeConfig, peer: Peer) -> tuple[ssl.SSLContext, str | None]:
    """``(context, server_hostname)`` for pynetdicom's ``tls_args`` when associating with ``peer``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = _minimum(config)
    _load_ca(ctx, config)
    ctx.check_hostname = bool(config.tls_check_hostname)
    ctx.verify_mode = ssl.CERT_REQUIRED
    if config.tls_certificate or config.tls_private_key:  # mutual TLS: present this node's certificate
        _load_own(ctx, config)
    return ctx, (peer.host if ctx.check_hostname else None)


def check_tls(config: NodeConfig) -> None:
    """Fail early (``ConfigError``) when TLS is on and its files are not usable."""
    if config.tls:
        server_context(config)
    if any(p.tls for p in config.peers):
        _load_ca(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), config)


_REASONS = (  # (OpenSSL text, sentence): the first that occurs in the error wins
    ("wrong version number", "the other side does not speak TLS here (a plain DICOM connection to a TLS port, or "
                             "a TLS connection to a plain port)"),
    ("http request", "the other side does not speak TLS here (it sent plain text)"),
    ("unexpected eof", "the other side closed the connection during the TLS handshake"),
    ("peer did not return a certificate", "the client sent no certificate, and this node requires one "
                                          "(mutual TLS)"),
    ("certificate required", "the other side requires a client certificate and this node sent none"),
    ("certificate has expired", "a certificate has expired"),
    ("certificate is not yet valid", "a certificate is not valid yet (check the clocks)"),
    ("self-signed certificate in certificate chain", "the certificate is not signed by a CA this side trusts "
                                                    "(its chain ends at an unknown CA)"),
    ("self signed certificate in certificate chain", "the certificate is not signed by a CA this side trusts "
                                                    "(its chain ends at an unknown CA)"),
    ("self-signed certificate", "the certificate is self-signed and not in the CA bundle"),
    ("self signed certificate", "the certificate is self-signed and not in the CA bundle"),
    ("unable to get local issuer certificate", "the certificate is not signed by a CA this side trusts"),
    ("unknown ca", "the other side does not trust the CA that signed this node's certificate"),
    ("bad certificate", "the other side refused this node's certificate"),
    ("certificate expired", "the other side says this node's certificate has expired"),
    ("hostname mismatch", "the certificate does not name the host that was called"),
    ("ip address mismatch", "the certificate does not name the address that was called"),
    ("unsupported protocol", "no TLS version both sides accept (this node needs TLS 1.2 or newer)"),
    ("no protocols available", "no TLS version both sides accept (this node needs TLS 1.2 or newer)"),
    ("handshake failure", "the TLS handshake failed (no cipher or version both sides accept)"),
    ("timed out", "the TLS handshake did not finish in time"),
    ("certificate verify failed", "the certificate could not be verified"),
)


def tls_failure_reason(text, *, client_side: bool = False) -> str | None:
    """A sentence for an OpenSSL / ``ssl.SSLError`` text, or None when it is not a TLS failure."""
    low = str(text or "").lower().replace("_", " ")
    if not any(k in low for k in ("ssl", "tls", "certificate", "handshake")):
        return None
    for needle, sentence in _REASONS:
        if needle in low:
            return sentence
    return "the TLS handshake failed"


__all__ = ["server_context", "client_context", "check_tls", "tls_failure_reason", "TLS_PORT"]
