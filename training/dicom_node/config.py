"""Network settings of the DICOM node: this node's AE title, address and port,
its peers, the local store, and which calling AE titles may send to it.

The headless node reads them from a TOML file (``load_config``); the app keeps
the same fields in QSettings and builds a :class:`NodeConfig` from them.
Security defaults: listen on 127.0.0.1 only, accept C-STORE only from
configured calling AE titles (the configured peers are always allowed, so a
C-MOVE from the PACS can deliver), ``accept_any_calling_ae`` off."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from training.common.errors import XrayError

ROLE_QUERY = "query_retrieve"  # a PACS to search (C-FIND) and retrieve from (C-GET / C-MOVE)
ROLE_RESULTS = "results"  # where SR + secondary capture results are sent (C-STORE)
ROLES = (ROLE_QUERY, ROLE_RESULTS)
_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # 16 chars, printable, no backslash


class ConfigError(XrayError):
    code = "config"


def check_ae_title(value: str, what: str = "AE title") -> str:
    text = str(value).strip()
    if not text or not _AE_RE.match(text):
        raise ConfigError(f"The {what} {value!r} is not valid: use 1 to 16 letters, digits, '_' or '-' "
                          "(no backslash).")
    return text


def check_port(value, what: str = "port", *, allow_zero: bool = False) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"The {what} {value!r} is not a number.") from None
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise ConfigError(f"The {what} {port} is out of range (1-65535).")
    return port


@dataclass
class Peer:
    """A remote DICOM application: a PACS, a modality, a results archive."""

    name: str
    ae_title: str
    host: str
    port: int
    roles: tuple[str, ...] = (ROLE_QUERY, ROLE_RESULTS)
    tls: bool = False  # associate over TLS (the node's certificate, key and CA bundle: NodeConfig.tls_*)

    def __post_init__(self):
        self.name = str(self.name).strip() or self.ae_title
        self.ae_title = check_ae_title(self.ae_title, f"AE title of peer {self.name!r}")
        self.host = str(self.host).strip()
        if not self.host:
            raise ConfigError(f"Peer {self.name!r} has no host (an IP address or a name).")
        self.port = check_port(self.port, f"port of peer {self.name!r}")
        roles = tuple(str(r) for r in self.roles)
        for r in roles:
            if r not in ROLES:
                raise ConfigError(f"Peer {self.name!r}: unknown role {r!r} (use {' or '.join(ROLES)}).")
        self.roles = roles
        self.tls = bool(self.tls)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class NodeConfig:
    ae_title: str = "XRAYNODE"
    host: str = "127.0.0.1"
    port: int = 11112
    store: Path = Path("xray-node-store")
    peers: list[Peer] = field(default_factory=list)
    allowed_calling_ae_titles: list[str] = field(default_factory=list)
    accept_any_calling_ae: bool = False
    auto_send: bool = True
    retry_seconds: float = 30.0  # first retry after a failed send; doubles up to retry_max_seconds
    retry_max_seconds: float = 600.0
    timeout_seconds: float = 60.0  # network timeout: an idle connection is closed after this
    connect_timeout_seconds: float = 5.0  # TCP connection to a peer
    acse_timeout_seconds: float = 10.0  # answer to an association request / release
    dimse_timeout_seconds: float = 30.0  # answer to each C-ECHO / C-FIND / C-GET / C-STORE message
    model: Path | None = None  # None: the shipped model
    threshold: float | None = None
    threads: int = 1  # torch CPU threads of the classifier
    lung_attention: bool = True  # Grad-CAM pass for the heatmap share inside the lungs (as the app)
    # DICOM over TLS ([tls] in the TOML file; training.dicom_node.tls, docs/DICOM_NODE.md)
    tls: bool = False  # listen on tls_port with TLS
    tls_port: int = 2762  # DICOM's registered TLS port
    listen_plain: bool = True  # with TLS on, also listen on `port` without TLS
    tls_certificate: Path | None = None  # this node's certificate (PEM), also shown to TLS peers
    tls_private_key: Path | None = None  # its private key (PEM, unencrypted: keep it readable by the service only)
    tls_ca_bundle: Path | None = None  # the CAs whose certificates this node trusts (callers and peers)
    tls_require_client_certificate: bool = True  # mutual TLS: callers must present a trusted certificate
    tls_minimum_version: str = "1.2"  # "1.2" or "1.3"
    tls_check_hostname: bool = True  # a TLS peer's certificate must name the host this node calls

    def __post_init__(self):
        self.ae_title = check_ae_title(self.ae_title, "AE title of this node")
        self.port = check_port(self.port, "port of this node", allow_zero=True)
        self.store = Path(self.store)
        self.allowed_calling_ae_titles = [check_ae_title(a, "allowed calling AE title")
                                          for a in self.allowed_calling_ae_titles]
        names = [p.name for p in self.peers]
        if len(set(names)) != len(names):
            raise ConfigError("Two peers have the same name; give each peer its own name.")
        if self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}.")
        self.tls_port = check_port(self.tls_port, "TLS port of this node", allow_zero=True)
        self.tls_minimum_version = str(self.tls_minimum_version).strip()
        if self.tls_minimum_version not in ("1.2", "1.3"):
            raise ConfigError(f"tls minimum_version must be \"1.2\" or \"1.3\", got {self.tls_minimum_version!r}.")
        for key in ("tls_certificate", "tls_private_key", "tls_ca_bundle"):
            value = getattr(self, key)
            setattr(self, key, Path(value) if value not in (None, "") else None)
        if self.tls and self.listen_plain and self.port and self.tls_port == self.port:
            raise ConfigError(f"The TLS port and the plain port are both {self.port}: use two ports, or turn "
                              "the plain port off (plain_port = false).")
        for key in ("timeout_seconds", "connect_timeout_seconds", "acse_timeout_seconds", "dimse_timeout_seconds",
                    "retry_seconds", "retry_max_seconds"):
            try:
                value = float(getattr(self, key))
            except (TypeError, ValueError):
                raise ConfigError(f"{key} must be a number of seconds, got {getattr(self, key)!r}.") from None
            if not value > 0:
                raise ConfigError(f"{key} must be more than 0 seconds, got {value:g}.")
            setattr(self, key, value)

    # ------------------------------------------------------------------ peers
    def peers_for(self, role: str) -> list[Peer]:
        return [p for p in self.peers if role in p.roles]

    def peer(self, role: str, name: str | None = None) -> Peer:
        """The peer named ``name`` (or the first one) with ``role``."""
        for p in self.peers_for(role):
            if name is None or p.name == name:
                return p
        what = "query/retrieve source (PACS)" if role == ROLE_QUERY else "results destination"
        raise ConfigError(f"No {what} is configured" + (f" under the name {name!r}." if name else "."))

    def calling_ae_allowed(self, ae_title: str) -> bool:
        if self.accept_any_calling_ae:
            return True
        return ae_title.strip() in self.allowed_callers()

    def allowed_callers(self) -> list[str]:
        """The configured calling AE titles plus every peer's (a PACS delivering a C-MOVE)."""
        out = list(self.allowed_calling_ae_titles)
        out += [p.ae_title for p in self.peers if p.ae_title not in out]
        return out

    @property
    def listens_on_all_interfaces(self) -> bool:
        return self.host in ("0.0.0.0", "::", "")

    def to_toml(self) -> str:
        """The same settings as a TOML file ``load_config`` reads back."""
        def s(v) -> str:
            return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

        lines = ["[node]", f"ae_title = {s(self.ae_title)}", f"host = {s(self.host)}", f"port = {self.port}",
                 f"store = {s(self.store)}",
                 "allowed_calling_ae_titles = [" + ", ".join(s(a) for a in self.allowed_calling_ae_titles) + "]",
                 f"accept_any_calling_ae = {str(self.accept_any_calling_ae).lower()}",
                 f"auto_send = {str(self.auto_send).lower()}", f"retry_seconds = {self.retry_seconds}",
                 f"retry_max_seconds = {self.retry_max_seconds}", f"timeout_seconds = {self.timeout_seconds}",
                 f"connect_timeout_seconds = {self.connect_timeout_seconds}",
                 f"acse_timeout_seconds = {self.acse_timeout_seconds}",
                 f"dimse_timeout_seconds = {self.dimse_timeout_seconds}",
                 "", "[classifier]", f"threads = {self.threads}",
                 f"lung_attention = {str(self.lung_attention).lower()}"]
        if self.model is not None:
            lines.append(f"model = {s(self.model)}")
        if self.threshold is not None:
            lines.append(f"threshold = {self.threshold}")
        lines += ["", "[tls]", f"enabled = {str(self.tls).lower()}", f"port = {self.tls_port}",
                  f"plain_port = {str(self.listen_plain).lower()}"]
        for key in ("certificate", "private_key", "ca_bundle"):
            value = getattr(self, "tls_" + key)
            if value is not None:
                lines.append(f"{key} = {s(value)}")
        lines += [f"require_client_certificate = {str(self.tls_require_client_certificate).lower()}",
                  f"minimum_version = {s(self.tls_minimum_version)}",
                  f"check_hostname = {str(self.tls_check_hostname).lower()}"]
        for p in self.peers:
            lines += ["", "[[peers]]", f"name = {s(p.name)}", f"ae_title = {s(p.ae_title)}", f"host = {s(p.host)}",
                      f"port = {p.port}", "roles = [" + ", ".join(s(r) for r in p.roles) + "]"]
            if p.tls:
                lines.append("tls = true")
        return "\n".join(lines) + "\n"


_NODE_KEYS = {"ae_title", "host", "port", "store", "allowed_calling_ae_titles", "accept_any_calling_ae", "auto_send",
              "retry_seconds", "retry_max_seconds", "timeout_seconds", "connect_timeout_seconds",
              "acse_timeout_seconds", "dimse_timeout_seconds"}
_CLF_KEYS = {"model", "threshold", "threads", "lung_attention"}
_PEER_KEYS = {"name", "ae_title", "host", "port", "roles", "tls"}
_TLS_KEYS = {"enabled": "tls", "port": "tls_port", "plain_port": "listen_plain", "certificate": "tls_certificate",
             "private_key": "tls_private_key", "ca_bundle": "tls_ca_bundle",
             "require_client_certificate": "tls_require_client_certificate",
             "minimum_version": "tls_minimum_version", "check_hostname": "tls_check_hostname"}


def _unknown(section: str, got: dict, known: set[str]) -> None:
    extra = sorted(set(got) - known)
    if extra:
        raise ConfigError(f"Unknown setting(s) in [{section}]: {', '.join(extra)} "
                          f"(known: {', '.join(sorted(known))}).")


def config_from_dict(data: dict, base: Path | None = None) -> NodeConfig:
    """Build a config from parsed TOML; relative paths are taken from ``base``."""
    extra = sorted(set(data) - {"node", "classifier", "peers", "tls"})
    if extra:
        raise ConfigError(f"Unknown section(s) in the node configuration: {', '.join(extra)}.")
    node, clf, tls = dict(data.get("node", {})), dict(data.get("classifier", {})), dict(data.get("tls", {}))
    _unknown("node", node, _NODE_KEYS)
    _unknown("classifier", clf, _CLF_KEYS)
    _unknown("tls", tls, set(_TLS_KEYS))
    peers = []
    for i, raw in enumerate(data.get("peers", [])):
        _unknown(f"peers #{i + 1}", raw, _PEER_KEYS)
        missing = [k for k in ("ae_title", "host", "port") if k not in raw]
        if missing:
            raise ConfigError(f"Peer #{i + 1} lacks {', '.join(missing)}.")
        peers.append(Peer(name=raw.get("name", raw["ae_title"]), ae_title=raw["ae_title"], host=raw["host"],
                          port=raw["port"], roles=tuple(raw.get("roles", ROLES)), tls=bool(raw.get("tls", False))))

    def path(v):
        p = Path(v).expanduser()
        return p if p.is_absolute() or base is None else base / p

    kwargs = dict(node)
    if "store" in kwargs:
        kwargs["store"] = path(kwargs["store"])
    for key in ("model", "threshold", "threads", "lung_attention"):
        if key in clf:
            kwargs[key] = path(clf[key]) if key == "model" else clf[key]
    for key, field_name in _TLS_KEYS.items():
        if key in tls:
            value = tls[key]
            kwargs[field_name] = path(value) if key in ("certificate", "private_key", "ca_bundle") else value
    try:
        return NodeConfig(peers=peers, **kwargs)
    except TypeError as exc:  # pragma: no cover - keys are checked above
        raise ConfigError(f"The node configuration is not valid: {exc}") from None


def load_config(path) -> NodeConfig:
    """Read a ``node.toml``; ``ConfigError`` with a plain reason when it is not usable."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read the node configuration {p}: {exc.strerror or exc}.") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"The node configuration {p} is not valid TOML: {exc}.") from None
    return config_from_dict(data, base=p.resolve().parent)


__all__ = ["NodeConfig", "Peer", "ConfigError", "load_config", "config_from_dict", "ROLE_QUERY", "ROLE_RESULTS",
           "ROLES", "check_ae_title", "check_port"]
