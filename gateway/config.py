"""Configuration: one TOML file → frozen, typed settings; errors name the file, key and reason.

Relative paths are resolved against the directory of the configuration file.  Every key is
documented in ``deploy/passerelle.example.toml``; defaults make a single box work.

The module stays whole (some 550 lines): the schema is the code that reads each key, so the
readers, the settings they fill and the checks between keys are one reading of one file.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gateway.errors import ConfigError, ConfigProblems

T = TypeVar("T")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# Where a command looks for its configuration when --config is not given, in this order.
CONFIG_ENV = "PASSERELLE_CONFIG"
DEFAULT_PATHS = (Path("passerelle.toml"), Path("/etc/passerelle/passerelle.toml"))

DEFAULT_TLS12_SUITES = (
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-RSA-AES256-SHA384:ECDHE-RSA-AES128-SHA256"
)


ADAPTERS = ("auto", "openpgp", "rnp", "sop", "command")


@dataclass(frozen=True)
class LegacyCryptoSettings:
    adapter: str = "auto"  # "auto" (rnp when librnp loads, else openpgp), "openpgp", "rnp",
    # "sop" or "command"
    gnupg_home: Path | None = None
    gateway_fingerprint: str = ""
    open_command: tuple[str, ...] = ()
    seal_command: tuple[str, ...] = ()
    key_dir: Path | None = None
    sop_command: tuple[str, ...] = ("sqop",)
    timeout: float = 30.0
    # command adapter: what the licensed tool's attachments and armoured bodies look like,
    # its attachment commands, its exit codes (see gateway/crypto/command.py)
    open_attachment_command: tuple[str, ...] = ()
    seal_attachment_command: tuple[str, ...] = ()
    armor_markers: tuple[str, ...] = ()
    attachment_suffixes: tuple[str, ...] = ()
    sealed_suffix: str = ""
    signer_pattern: str = ""
    exit_codes: dict[int, str] = field(default_factory=dict)
    # the legacy generation of a user whose address-book row does not say: "v2" (signature
    # required) or "v1" (unsigned accepted over the hub's authenticated session)
    default_mode: str = "v2"


@dataclass(frozen=True)
class HubSettings:
    """How the legacy hub proves itself on the legacy listener (``[legacy.hub]``): a client
    certificate (its subject DN and/or the SHA-256 of the certificate, verified against
    ``anchors``, by default ``[trust] anchors``) and/or SMTP AUTH with the credentials of
    ``auth_file`` (one line ``login:password``), offered only after STARTTLS.  Only a message
    received over such a session may carry unsigned parts of a first-generation (v1) user."""

    client_subject: str = ""
    client_fingerprint: str = ""  # SHA-256 of the DER certificate, 64 hex digits
    anchors: tuple[Path, ...] = ()
    crls: tuple[Path, ...] = ()
    auth_file: Path | None = None

    @property
    def certificate(self) -> bool:
        return bool(self.client_subject or self.client_fingerprint)

    @property
    def configured(self) -> bool:
        return self.certificate or self.auth_file is not None


@dataclass(frozen=True)
class TrustSettings:
    signing_cert: Path | None = None
    signing_key: Path | None = None
    chain: tuple[Path, ...] = ()
    server_cert: Path | None = None
    server_key: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    anchors: tuple[Path, ...] = ()
    crls: tuple[Path, ...] = ()
    domain_list: Path | None = None
    # who may sign the list of domains: its certificate, or its subject and issuer
    list_signer_cert: Path | None = None
    list_signer_subject: str = ""
    list_signer_issuer: str = ""
    accept_unsigned_list: bool = False  # tests only: a list without signature is read
    ciphers: str = DEFAULT_TLS12_SUITES
    accept_unsigned: bool = True  # policy for trust-space mail without S/MIME signature


@dataclass(frozen=True)
class DaemonSettings:
    legacy_listen: tuple[str, int] = ("127.0.0.1", 2525)
    trust_listen: tuple[str, int] = ("127.0.0.1", 2526)
    hostname: str = "mx.legacy.mssante.example"
    routes: dict[str, str] = field(default_factory=dict)
    mx_lookup: bool = True
    max_message_size: int = 30 * 1024 * 1024
    max_recipients: int = 100
    # what a legacy part, and all of a message's parts, may decrypt to (a compressed part can
    # expand a thousandfold): stopped while decrypting; default 4 × max_message_size
    max_decrypted_part: int = 0
    max_decrypted_message: int = 0
    # SMTP sessions open at once on each listener, from one client address, and the seconds
    # a session may stay silent
    max_connections: int = 1000
    max_connections_per_client: int = 50
    idle_timeout: float = 300.0
    retry_initial: float = 300.0
    retry_factor: float = 2.0
    retry_max: float = 3600.0
    delay_warning_after: float = 4 * 3600.0
    lifetime: float = 5 * 86400.0
    ops_listen: tuple[str, int] = ("127.0.0.1", 9325)
    workers: int = 2
    # translation in N worker processes (0: threads of the daemon process); default: the CPUs
    processes: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))
    per_destination: int = 4
    delivery_timeout: float = 60.0
    poll_interval: float = 1.0
    # seconds a worker holds a message; work held by a dead instance is taken over after it
    lease: float = 120.0

    @property
    def decrypted_part_limit(self) -> int:
        return self.max_decrypted_part or 4 * self.max_message_size

    @property
    def decrypted_message_limit(self) -> int:
        return self.max_decrypted_message or 4 * self.max_message_size


@dataclass(frozen=True)
class DirectorySettings:
    """The national directory (``[directory]``): where it is imported and how a mailbox is
    chosen when a clinician has several."""

    path: Path | None = None  # default: <state_dir>/directory.db
    types: tuple[str, ...] = ("PER", "CAB", "ORG", "APP")
    preferred_domains: tuple[str, ...] = ()
    hprim_alias: str = "hprim"  # <hprim_alias>@<domain>: routed by the HPRIM recipient line


@dataclass(frozen=True)
class ConsoleSettings:
    """The operator console (``[console]``, off by default): its own TLS listener; operators
    authenticate with a client certificate issued by ``client_ca`` or a bearer token listed in
    ``tokens_file`` (``name token`` per line)."""

    enabled: bool = False
    listen: tuple[str, int] = ("127.0.0.1", 9326)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    tokens_file: Path | None = None
    session_minutes: float = 480.0


@dataclass(frozen=True)
class RetentionSettings:
    """How long the spool keeps what (``[retention]``, in days): the content of delivered or
    bounced messages, of quarantined ones, of our own notices, and the rows left after
    (envelopes, states, digests).  The journal keeps its steps and digests, never content."""

    content_days: float = 7.0
    quarantine_days: float = 30.0
    notices_days: float = 7.0
    metadata_days: float = 365.0
    interval: float = 3600.0  # seconds between the daemon's purges


@dataclass(frozen=True)
class Settings:
    source: Path | None
    domain: str = "legacy.mssante.example"
    state_dir: Path = Path("state")
    addresses: Path = Path("mappings/addresses.csv")
    mappings_dir: Path = Path("mappings")
    spool_url: str = ""
    legacy: LegacyCryptoSettings = field(default_factory=LegacyCryptoSettings)
    trust: TrustSettings = field(default_factory=TrustSettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    directory: DirectorySettings = field(default_factory=DirectorySettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    hub: HubSettings = field(default_factory=HubSettings)
    # the keyring sealing the spool at rest (gateway.atrest); None: the systemd
    # credential passerelle-keys when there is one, else messages are stored in clear
    keys_file: Path | None = None
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    log_level: str = "info"
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def directory_target(self) -> Path | str:
        """Where the directory is: ``[directory] path`` if set, else the PostgreSQL spool
        database when there is one, else ``<state_dir>/directory.db``."""
        if self.directory.path is None and self.spool_url.startswith(
                ("postgresql://", "postgres://")):
            return self.spool_url
        return self.directory.path or self.state_dir / "directory.db"

    @property
    def journal_url(self) -> str:
        return self.spool_url or f"sqlite:///{self.state_dir / 'spool.db'}"


class _Schema:
    """What one reading of a file asked for and what was wrong: every key the code reads is
    recorded as it is read, so a key the file has and nobody read is unknown — a typo, or a
    key of another version — and the schema is the code itself, never a list kept beside it."""

    def __init__(self) -> None:
        self.known: dict[str, set[str]] = {}
        self.free: set[str] = set()  # tables whose keys are data (routes: domain → host)
        self.problems: list[tuple[str, str]] = []

    def unknown(self, data: dict[str, Any], prefix: str = "") -> None:
        if prefix in self.free:
            return
        known = self.known.get(prefix, set())
        for key, value in data.items():
            if key not in known:
                hint = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
                what = "table" if isinstance(value, dict) else "key"
                where = f"in [{prefix[:-1]}]" if prefix else "at the top level"
                self.problems.append((f"{prefix}{key}", f"unknown {what} {where}" + (
                    f"; did you mean {hint[0]!r}?" if hint else
                    f" (known: {', '.join(sorted(known)) or 'none'})")))
            elif isinstance(value, dict):
                self.unknown(value, f"{prefix}{key}.")


class _Reader:
    """Typed access to one table of the TOML document, with errors naming file and key.

    A wrong value is recorded and its default used, so that one reading names every problem
    (``config check``); ``from_dict`` then raises them all at once."""

    def __init__(self, data: dict[str, Any], base: Path, source: str, prefix: str = "",
                 schema: _Schema | None = None) -> None:
        self.data = data
        self.base = base
        self.source = source
        self.prefix = prefix
        self.schema = schema or _Schema()

    def _get(self, key: str, default: Any) -> Any:
        self.schema.known.setdefault(self.prefix, set()).add(key)
        return self.data.get(key, default)

    def _fail(self, key: str, why: str, default: T) -> T:
        self.schema.problems.append((f"{self.prefix}{key}", why))
        return default

    def table(self, key: str) -> _Reader:
        value = self._get(key, {})
        if not isinstance(value, dict):
            value = self._fail(key, "must be a table", {})
        return _Reader(value, self.base, self.source, f"{self.prefix}{key}.", self.schema)

    def free_table(self, key: str) -> _Reader:
        """A table whose keys are data, not settings (``[routes]``)."""
        reader = self.table(key)
        self.schema.free.add(reader.prefix)
        return reader

    def text(self, key: str, default: str) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            return self._fail(key, "must be a string", default)
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(key, default)
        if value.lower() not in choices:
            return self._fail(key, f"must be one of {', '.join(choices)}", default)
        return value.lower()

    def number(self, key: str, default: float) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            return self._fail(key, "must be a positive number", default)
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            return self._fail(key, "must be true or false", default)
        return value

    def path(self, key: str, default: Path | None = None) -> Path | None:
        value = self._get(key, None)
        if value is None:
            return None if default is None else self.base / default
        if not isinstance(value, str) or not value:
            return self._fail(key, "must be a path", None)
        return (self.base / value).resolve() if not Path(value).is_absolute() else Path(value)

    def paths(self, key: str) -> tuple[Path, ...]:
        value = self._get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return self._fail(key, "must be a list of paths", ())
        return tuple((self.base / v).resolve() for v in value)

    def listen(self, key: str, default: tuple[str, int]) -> tuple[str, int]:
        value = self._get(key, None)
        if value is None:
            return default
        if isinstance(value, str):
            host, colon, digits = value.rpartition(":")
            if not colon or not host:
                return self._fail(key, 'must be "host:port"', default)
            value = {"host": host, "port": digits}
        else:
            self.schema.known[f"{self.prefix}{key}."] = {"host", "port"}
        if not isinstance(value, dict):
            return self._fail(key, 'must be "host:port" or a table with host and port', default)
        try:
            host = str(value.get("host", default[0]))
            port = int(value.get("port", default[1]))
        except (TypeError, ValueError):
            return self._fail(key, "port must be a number", default)
        if not 0 <= port < 65536:  # 0: any free port (tests, benchmarks)
            return self._fail(f"{key}.port" if isinstance(self.data.get(key), dict) else key,
                              "must be a port number (0-65535)", default)
        return host, port

    def mapping(self, key: str) -> dict[str, str]:
        table = self.free_table(key)
        value = table.data
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            return self._fail(key, 'must be a table of "domain" = "host:port"', {})
        for domain, target in value.items():
            host, colon, port = target.rpartition(":")
            if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
                self._fail(f'{key}."{domain}"', 'must be "host:port"', None)
        return {k.lower(): v for k, v in value.items()}

    def integer(self, key: str, default: int) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            return self._fail(key, "must be a positive whole number", default)
        return value

    def count(self, key: str, default: int) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return self._fail(key, "must be a whole number, 0 or more", default)
        return value

    def words(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            return self._fail(key, "must be a list of strings", default)
        return tuple(value)

    def argv(self, key: str) -> tuple[str, ...]:
        value = self._get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return self._fail(key, "must be a list of strings (an argv template)", ())
        return tuple(value)


def find(path: Path | None) -> Path | None:
    """The configuration file a command uses: ``--config``, else ``$PASSERELLE_CONFIG``, else
    ``./passerelle.toml``, else ``/etc/passerelle/passerelle.toml`` — one order for every
    command, ``serve`` and ``config check`` alike; ``None`` when there is none."""
    if path is not None:
        return path
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    return next((p for p in DEFAULT_PATHS if p.exists()), None)


def locate(path: Path | None) -> Path:
    """``find(path)``, or a one-line error saying where it looked."""
    found = find(path)
    if found is not None:
        return found
    raise ConfigError(f"no configuration: give --config FILE or set ${CONFIG_ENV} (looked for "
                      f"{' and '.join(str(p) for p in DEFAULT_PATHS)})")


def load_located(path: Path | None) -> Settings:
    """``load(locate(path))``: what every command that needs a configuration calls."""
    return load(locate(path))


def load(path: Path | None) -> Settings:
    """Read the configuration file (``None``: the embedded defaults, relative to the cwd)."""
    if path is None:
        return Settings(source=None)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return from_dict(data, base=path.resolve().parent, source=str(path))


def from_dict(data: dict[str, Any], *, base: Path, source: str) -> Settings:
    """Settings from a parsed TOML document; every wrong value and every key the code does
    not read is an error (``ConfigProblems``, all of them at once)."""
    settings, schema = _read(data, base, source)
    schema.unknown(data)
    if schema.problems:
        raise ConfigProblems.found(source, schema.problems)
    return settings


def known_keys() -> dict[str, set[str]]:
    """Every key the configuration has, by table (``"retry."`` → ``{"initial", …}``; the
    top level is ``""``): what the code reads, for the example file's test and the docs."""
    return _read({}, Path("."), "(defaults)")[1].known


def _read(data: dict[str, Any], base: Path, source: str) -> tuple[Settings, _Schema]:
    top = _Reader(data, base, source)
    gw = top.table("gateway")
    maps = top.table("mappings")
    leg = top.table("legacy")
    trust = top.table("trust")
    spool = top.table("spool")
    state_dir = gw.path("state_dir") or base / "state"
    hub = leg.table("hub")
    legacy = LegacyCryptoSettings(
        adapter=leg.choice("adapter", "auto", ADAPTERS),
        gnupg_home=leg.path("gnupg_home"),
        gateway_fingerprint=leg.text("gateway_fingerprint", "").replace(" ", "").upper(),
        open_command=leg.argv("open_command"),
        seal_command=leg.argv("seal_command"),
        key_dir=leg.path("key_dir"),
        sop_command=leg.argv("sop_command") or ("sqop",),
        timeout=leg.number("timeout", 30.0),
        open_attachment_command=leg.argv("open_attachment_command"),
        seal_attachment_command=leg.argv("seal_attachment_command"),
        armor_markers=leg.words("armor_markers", ()),
        attachment_suffixes=tuple(x.lower() for x in leg.words("attachment_suffixes", ())),
        sealed_suffix=leg.text("sealed_suffix", ""),
        signer_pattern=_pattern(leg, "signer_pattern"),
        exit_codes=_exit_codes(leg),
        default_mode=_mode(leg),
    )
    trust_settings = TrustSettings(
        signing_cert=trust.path("signing_cert"),
        signing_key=trust.path("signing_key"),
        chain=trust.paths("chain"),
        server_cert=trust.path("server_cert"),
        server_key=trust.path("server_key"),
        client_cert=trust.path("client_cert"),
        client_key=trust.path("client_key"),
        anchors=trust.paths("anchors"),
        crls=trust.paths("crls"),
        domain_list=trust.path("domain_list"),
        list_signer_cert=trust.path("list_signer_cert"),
        list_signer_subject=trust.text("list_signer_subject", ""),
        list_signer_issuer=trust.text("list_signer_issuer", ""),
        accept_unsigned_list=trust.flag("accept_unsigned_list", False),
        ciphers=trust.text("ciphers", DEFAULT_TLS12_SUITES),
        accept_unsigned=trust.flag("accept_unsigned", True),
    )
    listen = top.table("listen")
    limits = top.table("limits")
    retry = top.table("retry")
    ops = top.table("ops")
    workers = top.table("workers")
    directory = top.table("directory")
    defaults = DaemonSettings()
    daemon = DaemonSettings(
        legacy_listen=listen.listen("legacy", defaults.legacy_listen),
        trust_listen=listen.listen("trust", defaults.trust_listen),
        hostname=gw.text("hostname", defaults.hostname),
        routes=top.mapping("routes"),
        mx_lookup=top.table("delivery").flag("mx_lookup", True),
        max_message_size=limits.integer("max_message_size", defaults.max_message_size),
        max_recipients=limits.integer("max_recipients", defaults.max_recipients),
        max_decrypted_part=limits.count("max_decrypted_part", defaults.max_decrypted_part),
        max_decrypted_message=limits.count("max_decrypted_message",
                                           defaults.max_decrypted_message),
        max_connections=limits.integer("max_connections", defaults.max_connections),
        max_connections_per_client=limits.integer("max_connections_per_client",
                                                  defaults.max_connections_per_client),
        idle_timeout=limits.number("idle_timeout", defaults.idle_timeout),
        retry_initial=retry.number("initial", defaults.retry_initial),
        retry_factor=retry.number("factor", defaults.retry_factor),
        retry_max=retry.number("max", defaults.retry_max),
        delay_warning_after=retry.number("delay_warning_after", defaults.delay_warning_after),
        lifetime=retry.number("lifetime", defaults.lifetime),
        ops_listen=ops.listen("listen", defaults.ops_listen),
        workers=workers.integer("translate", defaults.workers),
        processes=workers.count("processes", defaults.processes),
        per_destination=workers.integer("per_destination", defaults.per_destination),
        delivery_timeout=workers.number("delivery_timeout", defaults.delivery_timeout),
        poll_interval=workers.number("poll_interval", defaults.poll_interval),
        lease=workers.number("lease", defaults.lease),
    )
    if daemon.retry_initial > daemon.retry_max:
        retry._fail("initial", "is larger than retry.max", None)
    log_level = top.table("logging").choice("level", "info", LOG_LEVELS)
    settings = Settings(
        source=Path(source),
        domain=gw.text("domain", "legacy.mssante.example").lower(),
        state_dir=state_dir,
        addresses=maps.path("addresses") or base / "mappings" / "addresses.csv",
        mappings_dir=maps.path("dir") or base / "mappings",
        spool_url=spool.text("url", ""),
        legacy=legacy,
        trust=trust_settings,
        daemon=daemon,
        directory=_directory(directory),
        console=_console(top.table("console")),
        hub=_hub(hub, trust_settings),
        keys_file=top.table("keys").path("file"),
        retention=_retention(top.table("retention")),
        log_level=log_level,
        raw=data,
    )
    return settings, top.schema


def _retention(r: _Reader) -> RetentionSettings:
    d = RetentionSettings()
    settings = RetentionSettings(
        content_days=r.number("content_days", d.content_days),
        quarantine_days=r.number("quarantine_days", d.quarantine_days),
        notices_days=r.number("notices_days", d.notices_days),
        metadata_days=r.number("metadata_days", d.metadata_days),
        interval=r.number("interval", d.interval),
    )
    for key in ("content_days", "quarantine_days", "notices_days", "metadata_days"):
        if getattr(settings, key) < 0:
            r._fail(key, "must not be negative", None)
    if settings.metadata_days < max(settings.content_days, settings.quarantine_days,
                                    settings.notices_days):
        r._fail("metadata_days", "is shorter than the content it describes is kept", None)
    if settings.interval <= 0:
        r._fail("interval", "must be positive", None)
    return settings


def _console(console: _Reader) -> ConsoleSettings:
    defaults = ConsoleSettings()
    settings = ConsoleSettings(
        enabled=console.flag("enabled", False),
        listen=console.listen("listen", defaults.listen),
        tls_cert=console.path("tls_cert"),
        tls_key=console.path("tls_key"),
        client_ca=console.path("client_ca"),
        tokens_file=console.path("tokens_file"),
        session_minutes=console.number("session_minutes", defaults.session_minutes),
    )
    if settings.enabled:
        if settings.tls_cert is None or settings.tls_key is None:
            console._fail("tls_cert", "the console is served over TLS only: set tls_cert and "
                          "tls_key", None)
        if settings.client_ca is None and settings.tokens_file is None:
            console._fail("client_ca", "no way for an operator to authenticate: set client_ca "
                          "and/or tokens_file", None)
    return settings


def _mode(leg: _Reader) -> str:
    return leg.choice("default_mode", "v2", ("v1", "v2"))


def _pattern(leg: _Reader, key: str) -> str:
    import re

    text = leg.text(key, "")
    try:
        if text and re.compile(text).groups != 1:
            return leg._fail(key, "must be a regular expression with one group (the key id)",
                             "")
    except re.error as exc:
        return leg._fail(key, f"not a regular expression ({exc})", "")
    return text


def _exit_codes(leg: _Reader) -> dict[int, str]:
    """``[legacy.exit_codes]``: the licensed tool's exit status → a failure kind."""
    from gateway.errors import EXIT_KINDS

    table = leg.free_table("exit_codes")
    out: dict[int, str] = {}
    for code, kind in table.data.items():
        if not code.isdigit() or not 0 < int(code) < 256:
            table._fail(code, "must be an exit status (1-255)", None)
        elif kind not in EXIT_KINDS:
            table._fail(code, f"must be one of {', '.join(EXIT_KINDS)}", None)
        else:
            out[int(code)] = kind
    return out


def _hub(hub: _Reader, trust: TrustSettings) -> HubSettings:
    fingerprint = hub.text("client_fingerprint", "").replace(":", "").replace(" ", "").lower()
    if fingerprint and (len(fingerprint) != 64
                        or any(c not in "0123456789abcdef" for c in fingerprint)):
        fingerprint = hub._fail("client_fingerprint",
                                "must be the certificate's SHA-256 (64 hex digits)", "")
    return HubSettings(
        client_subject=hub.text("client_subject", ""),
        client_fingerprint=fingerprint,
        # the hub's own CA, or the trust space's anchors (and then their CRLs)
        anchors=hub.paths("anchors") or trust.anchors,
        crls=hub.paths("crls") or (() if hub.paths("anchors") else trust.crls),
        auth_file=hub.path("auth_file"),
    )


def _directory(directory: _Reader) -> DirectorySettings:
    defaults = DirectorySettings()
    types = tuple(t.upper() for t in directory.words("types", defaults.types))
    unknown = set(types) - set(defaults.types)
    if unknown:
        types = directory._fail("types", f"unknown mailbox type(s) {', '.join(sorted(unknown))}"
                                f"; known: {', '.join(defaults.types)}", defaults.types)
    alias = directory.text("hprim_alias", defaults.hprim_alias).lower()
    if not alias or "@" in alias or alias.startswith("rpps-"):
        alias = directory._fail("hprim_alias", "must be a local part (without @), not rpps-…",
                                defaults.hprim_alias)
    return DirectorySettings(
        path=directory.path("path"),
        types=types,
        preferred_domains=tuple(x.lower() for x in directory.words("preferred_domains", ())),
        hprim_alias=alias,
    )
