"""Configuration: one TOML file → frozen, typed settings; errors name the file, key and reason.

Relative paths are resolved against the directory of the configuration file.  Every key is
documented in ``deploy/passerelle.example.toml``; defaults make a single box work.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError

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


@dataclass(frozen=True)
class DirectorySettings:
    """The national directory (``[directory]``): where it is imported and how a mailbox is
    chosen when a clinician has several."""

    path: Path | None = None  # default: <state_dir>/directory.db
    types: tuple[str, ...] = ("PER", "CAB", "ORG", "APP")
    preferred_domains: tuple[str, ...] = ()
    hprim_alias: str = "hprim"  # <hprim_alias>@<domain>: routed by the HPRIM recipient line


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


class _Reader:
    """Typed access to one table of the TOML document, with errors naming file and key."""

    def __init__(self, data: dict[str, Any], base: Path, source: str, prefix: str = "") -> None:
        self.data = data
        self.base = base
        self.source = source
        self.prefix = prefix

    def _err(self, key: str, why: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.prefix}{key}: {why}")

    def table(self, key: str) -> _Reader:
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            raise self._err(key, "must be a table")
        return _Reader(value, self.base, self.source, f"{self.prefix}{key}.")

    def text(self, key: str, default: str) -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str):
            raise self._err(key, "must be a string")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self._err(key, "must be a positive number")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self._err(key, "must be true or false")
        return value

    def path(self, key: str, default: Path | None = None) -> Path | None:
        value = self.data.get(key)
        if value is None:
            return None if default is None else self.base / default
        if not isinstance(value, str) or not value:
            raise self._err(key, "must be a path")
        return (self.base / value).resolve() if not Path(value).is_absolute() else Path(value)

    def paths(self, key: str) -> tuple[Path, ...]:
        value = self.data.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._err(key, "must be a list of paths")
        return tuple((self.base / v).resolve() for v in value)

    def listen(self, key: str, default: tuple[str, int]) -> tuple[str, int]:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, str):
            host, _, port = value.rpartition(":")
            value = {"host": host, "port": port}
        if not isinstance(value, dict):
            raise self._err(key, 'must be "host:port" or a table with host and port')
        try:
            return str(value.get("host", default[0])), int(value.get("port", default[1]))
        except (TypeError, ValueError):
            raise self._err(key, "port must be a number") from None

    def mapping(self, key: str) -> dict[str, str]:
        value = self.data.get(key, {})
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise self._err(key, 'must be a table of "domain" = "host:port"')
        return {k.lower(): v for k, v in value.items()}

    def integer(self, key: str, default: int) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self._err(key, "must be a positive whole number")
        return value

    def count(self, key: str, default: int) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self._err(key, "must be a whole number, 0 or more")
        return value

    def words(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.data.get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self._err(key, "must be a list of strings")
        return tuple(value)

    def argv(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._err(key, "must be a list of strings (an argv template)")
        return tuple(value)


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
    top = _Reader(data, base, source)
    gw = top.table("gateway")
    maps = top.table("mappings")
    leg = top.table("legacy")
    trust = top.table("trust")
    spool = top.table("spool")
    state_dir = gw.path("state_dir") or base / "state"
    adapter = leg.text("adapter", "auto")
    if adapter not in ADAPTERS:
        raise ConfigError(f"{source}: legacy.adapter: must be \"auto\", \"openpgp\", \"rnp\", "
                          "\"sop\" or \"command\"")
    legacy = LegacyCryptoSettings(
        adapter=adapter,
        gnupg_home=leg.path("gnupg_home"),
        gateway_fingerprint=leg.text("gateway_fingerprint", "").replace(" ", "").upper(),
        open_command=leg.argv("open_command"),
        seal_command=leg.argv("seal_command"),
        key_dir=leg.path("key_dir"),
        sop_command=leg.argv("sop_command") or ("sqop",),
        timeout=leg.number("timeout", 30.0),
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
    return Settings(
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
        raw=data,
    )


def _directory(directory: _Reader) -> DirectorySettings:
    defaults = DirectorySettings()
    types = tuple(t.upper() for t in directory.words("types", defaults.types))
    unknown = set(types) - set(defaults.types)
    if unknown:
        raise directory._err("types", f"unknown mailbox type(s) {', '.join(sorted(unknown))}; "
                     f"known: {', '.join(defaults.types)}")
    alias = directory.text("hprim_alias", defaults.hprim_alias).lower()
    if not alias or "@" in alias or alias.startswith("rpps-"):
        raise directory._err("hprim_alias", "must be a local part (without @), not rpps-…")
    return DirectorySettings(
        path=directory.path("path"),
        types=types,
        preferred_domains=tuple(x.lower() for x in directory.words("preferred_domains", ())),
        hprim_alias=alias,
    )
