"""Host configuration: defaults, then ``<home>/config.json``, then environment.

Every knob a test or a browser-launched host needs is settable by environment
variable, because the browser's environment is all a native host inherits.
Paths are plain strings: this module is on the start-up path and ``pathlib``
costs ~3 ms to import (docs/performance.md).
"""

from __future__ import annotations

import json
import math
import os
import sys

from flattr_host.core.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

#: The extension ids this host serves unless configured otherwise. The Chromium id
#: is fixed by the public key in extension/manifest.json; the Firefox id by its
#: browser_specific_settings.gecko.id.
CHROMIUM_EXTENSION_ID = "jimjcpbicodoomdmhndojmkjllmolafb"
FIREFOX_EXTENSION_ID = "companion@flattr-companion.example"

LOG_LEVELS = ("debug", "info", "warning", "error")
#: Where the token's key is kept (flattr_host.storage.keys): the OS keyring if reachable, else
#: the file; the keyring only; the file only.
KEY_BACKENDS = ("auto", "keyring", "file")


def default_home() -> str:
    """The platform's per-user data directory for the host."""
    user = os.path.expanduser("~")
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(user, "AppData", "Local")
        return os.path.join(base, "flattr-companion")
    if sys.platform == "darwin":
        return os.path.join(user, "Library", "Application Support", "flattr-companion")
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(user, ".local", "share")
    return os.path.join(base, "flattr-companion")


class Config:
    """Every setting of the host (docs/configuration.md). Read-only by convention."""

    home: str
    log_level: str = "info"
    log_max_bytes: int = 1024 * 1024
    log_backups: int = 3
    allowed_extensions: tuple[str, ...] = (CHROMIUM_EXTENSION_ID, FIREFOX_EXTENSION_ID)
    max_inbound_frame: int = 1024 * 1024
    api_base: str = "https://api.flattr.com"
    ca_bundle: str | None = None
    request_timeout_s: float = 30.0
    retry_base_s: float = 60.0
    retry_cap_s: float = 3840.0
    submit_delay_s: float = 1.0
    lease_s: float = 60.0
    batch_max: int = 500
    done_retention_s: float = 7 * 86400.0
    pending_expiry_s: float = 30 * 86400.0
    exit_grace_s: float = 5.0
    store_wait_s: float = 2.0
    inspect: bool = False
    attention_scale: float = 1.0
    attention_max_age_s: float = 90 * 86400.0
    key_backend: str = "auto"

    def __init__(self, **values: Any) -> None:
        for name, value in values.items():
            if name not in FIELDS:
                raise ConfigError(f"unknown setting {name!r}")
            setattr(self, name, value)
        if "home" not in values:
            self.home = default_home()

    def replace(self, **changes: Any) -> Config:
        """A copy with some settings changed."""
        return Config(**{**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Config({self.as_dict()!r})"

    @property
    def db_path(self) -> str:
        return os.path.join(self.home, "host.db")

    @property
    def key_path(self) -> str:
        return os.path.join(self.home, "token.key")

    @property
    def log_dir(self) -> str:
        return os.path.join(self.home, "logs")


#: field name -> type name, from the class annotations (strings: postponed evaluation)
FIELDS: dict[str, str] = dict(Config.__annotations__)

#: environment variable -> field name
ENV = {
    "FLATTR_HOST_HOME": "home",
    "FLATTR_LOG_LEVEL": "log_level",
    "FLATTR_ALLOWED_EXTENSIONS": "allowed_extensions",
    "FLATTR_MAX_INBOUND_FRAME": "max_inbound_frame",
    "FLATTR_API_BASE": "api_base",
    "FLATTR_CA_BUNDLE": "ca_bundle",
    "FLATTR_REQUEST_TIMEOUT_S": "request_timeout_s",
    "FLATTR_RETRY_BASE_S": "retry_base_s",
    "FLATTR_RETRY_CAP_S": "retry_cap_s",
    "FLATTR_SUBMIT_DELAY_S": "submit_delay_s",
    "FLATTR_LEASE_S": "lease_s",
    "FLATTR_BATCH_MAX": "batch_max",
    "FLATTR_DONE_RETENTION_S": "done_retention_s",
    "FLATTR_PENDING_EXPIRY_S": "pending_expiry_s",
    "FLATTR_EXIT_GRACE_S": "exit_grace_s",
    "FLATTR_STORE_WAIT_S": "store_wait_s",
    "FLATTR_INSPECT": "inspect",
    "FLATTR_ATTENTION_SCALE": "attention_scale",
    "FLATTR_ATTENTION_MAX_AGE_S": "attention_max_age_s",
    "FLATTR_KEY_BACKEND": "key_backend",
}


def _convert(name: str, raw: Any, source: str) -> Any:
    """Convert a raw value from a file or the environment to the field's type."""
    kind = FIELDS[name]
    try:
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError("expected 1/0, true/false, yes/no or on/off")
        if kind == "int":
            return _whole_number(raw)
        if kind == "float":
            return _finite_number(raw)
        if kind == "str":
            return os.path.expanduser(str(raw)) if name == "home" else str(raw)
        if kind == "str | None":
            return str(raw) or None
        if kind == "tuple[str, ...]":
            items = raw if isinstance(raw, list) else str(raw).split(",")
            return tuple(str(i).strip() for i in items if str(i).strip())
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: invalid value {raw!r} for {name}: {exc}") from None
    raise ConfigError(f"{source}: unsupported setting {name}")  # pragma: no cover


def _shown(raw: Any) -> str:
    return raw.strip() if isinstance(raw, str) else repr(raw)


def _finite_number(raw: Any) -> float:
    """A float setting: finite and >= 0 (``nan``, ``inf`` and JSON ``true`` are refused)."""
    rule = f"must be a finite number >= 0, got {_shown(raw)}"
    if isinstance(raw, bool):
        raise ValueError(rule)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(rule) from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(rule)
    return value


def _whole_number(raw: Any) -> int:
    """An int setting: a whole number >= 0 (``2.5``, ``nan`` and JSON ``true`` are refused)."""
    rule = f"must be a whole number >= 0, got {_shown(raw)}"
    if isinstance(raw, bool):
        raise ValueError(rule)
    if isinstance(raw, float):
        if not raw.is_integer():  # also nan and inf
            raise ValueError(rule)
        raw = int(raw)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValueError(rule) from None
    if value < 0:
        raise ValueError(rule)
    return value


def _validate(config: Config) -> Config:
    if config.log_level not in LOG_LEVELS:
        raise ConfigError(
            f"log level {config.log_level!r} is not one of {', '.join(LOG_LEVELS)}"
        )
    if config.batch_max < 1:
        raise ConfigError(f"batch_max {config.batch_max} must be at least 1")
    if config.max_inbound_frame < 16:
        raise ConfigError(f"max_inbound_frame {config.max_inbound_frame} must be at least 16")
    if not 0 < config.attention_scale <= 1:
        raise ConfigError(
            f"attention_scale {config.attention_scale} must be above 0 and at most 1"
        )
    if config.key_backend not in KEY_BACKENDS:
        raise ConfigError(
            f"key_backend {config.key_backend!r} is not one of {', '.join(KEY_BACKENDS)}"
        )
    if not config.api_base.startswith(("https://", "http://")):
        raise ConfigError(f"api_base {config.api_base!r} must be an http(s) URL")
    return config


def load(environ: Mapping[str, str] | None = None) -> Config:
    """Build the configuration from defaults, the config file and ``environ``."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    home_raw = env.get("FLATTR_HOST_HOME")
    home = os.path.expanduser(home_raw) if home_raw else default_home()
    config_file = os.path.join(home, "config.json")
    try:
        with open(config_file, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        text = None
    except OSError as exc:
        raise ConfigError(f"{config_file}: cannot read ({exc.strerror})") from None
    if text is not None:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{config_file}: cannot read ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{config_file}: must hold a JSON object")
        for key, raw in data.items():
            if key not in FIELDS or key == "home":
                raise ConfigError(f"{config_file}: unknown setting {key!r}")
            values[key] = _convert(key, raw, config_file)
    for var, name in ENV.items():
        if var in env:
            values[name] = _convert(name, env[var], var)
    values["home"] = home
    return _validate(Config(**values))
