"""Configuration: defaults, file, environment, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flattr_host.core import config
from flattr_host.core.errors import ConfigError


def test_defaults_follow_the_original_extension(tmp_path: Path) -> None:
    loaded = config.load({"FLATTR_HOST_HOME": str(tmp_path)})
    assert loaded.home == str(tmp_path)
    assert loaded.retry_base_s == 60.0 and loaded.retry_cap_s == 3840.0
    assert loaded.submit_delay_s == 1.0
    assert loaded.api_base == "https://api.flattr.com"
    assert loaded.allowed_extensions == (config.CHROMIUM_EXTENSION_ID,
                                         config.FIREFOX_EXTENSION_ID)


def test_environment_overrides_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"retry_base_s": 5, "log_level": "debug"}))
    loaded = config.load({"FLATTR_HOST_HOME": str(tmp_path), "FLATTR_RETRY_BASE_S": "0.01",
                          "FLATTR_ALLOWED_EXTENSIONS": "a, b", "FLATTR_INSPECT": "yes"})
    assert loaded.retry_base_s == 0.01
    assert loaded.log_level == "debug"
    assert loaded.allowed_extensions == ("a", "b")
    assert loaded.inspect is True


@pytest.mark.parametrize(
    ("env", "text"),
    [
        ({"FLATTR_RETRY_BASE_S": "soon"}, "FLATTR_RETRY_BASE_S: invalid value 'soon'"),
        ({"FLATTR_RETRY_CAP_S": "-1"}, ">= 0"),
        ({"FLATTR_LOG_LEVEL": "loud"}, "log level 'loud' is not one of"),
        ({"FLATTR_BATCH_MAX": "0"}, "batch_max 0 must be at least 1"),
        ({"FLATTR_API_BASE": "ftp://x"}, "must be an http(s) URL"),
        ({"FLATTR_INSPECT": "maybe"}, "expected 1/0"),
    ],
)
def test_bad_environment_values(tmp_path: Path, env: dict[str, str], text: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load({"FLATTR_HOST_HOME": str(tmp_path), **env})
    assert text in str(info.value)


def test_bad_config_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"config\.json: cannot read"):
        config.load({"FLATTR_HOST_HOME": str(tmp_path)})
    (tmp_path / "config.json").write_text(json.dumps({"colour": "blue"}))
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        config.load({"FLATTR_HOST_HOME": str(tmp_path)})


def test_default_home_per_platform(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setattr(config.sys, "platform", "linux")
    assert config.default_home() == str(tmp_path / ".local/share/flattr-companion")
    monkeypatch.setattr(config.sys, "platform", "darwin")
    assert config.default_home() == str(tmp_path / "Library/Application Support/flattr-companion")
    monkeypatch.setattr(config.sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "Local"))
    assert config.default_home() == str(tmp_path / "Local" / "flattr-companion")


NUMERIC = sorted((name, kind) for name, kind in config.FIELDS.items() if kind in ("int", "float"))
ENV_OF = {name: var for var, name in config.ENV.items()}


@pytest.mark.parametrize(("name", "kind"), [(n, k) for n, k in NUMERIC if n in ENV_OF])
@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "-1", "1e999", "soon"])
def test_every_numeric_setting_says_what_is_wrong(tmp_path: Path, name: str, kind: str,
                                                  raw: str) -> None:
    rule = "a finite number >= 0" if kind == "float" else "a whole number >= 0"
    with pytest.raises(ConfigError) as info:
        config.load({"FLATTR_HOST_HOME": str(tmp_path), ENV_OF[name]: raw})
    assert f"{ENV_OF[name]}: invalid value {raw!r} for {name}: must be {rule}, got {raw}" \
        == str(info.value)


@pytest.mark.parametrize(("name", "kind"), NUMERIC)
def test_numeric_settings_in_the_file_refuse_json_oddities(tmp_path: Path, name: str,
                                                           kind: str) -> None:
    bad: list[object] = [True, "nan", -3, None, [1]]
    if kind == "int":
        bad.append(2.5)
    for raw in bad:
        (tmp_path / "config.json").write_text(json.dumps({name: raw}))
        with pytest.raises(ConfigError, match=r"must be a (finite|whole) number >= 0, got "):
            config.load({"FLATTR_HOST_HOME": str(tmp_path)})
    # JSON's NaN and Infinity literals, which Python's json module reads.
    (tmp_path / "config.json").write_text(f'{{"{name}": NaN}}')
    with pytest.raises(ConfigError, match="got nan"):
        config.load({"FLATTR_HOST_HOME": str(tmp_path)})
    default = getattr(config.Config, name)
    (tmp_path / "config.json").write_text(json.dumps({name: default}))
    assert getattr(config.load({"FLATTR_HOST_HOME": str(tmp_path)}), name) == default


def test_attention_scale_nan_names_the_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.load({"FLATTR_HOST_HOME": str(tmp_path), "FLATTR_ATTENTION_SCALE": "nan"})
    assert "must be a finite number >= 0, got nan" in str(info.value)
