"""Reading the TOML: typed values (``[section] key: expected …, got …``), secrets from the environment, and the
rules of ``bot.config.rules``, once, at start-up.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal

from bot.config.rules import check
from bot.config.schema import Config, ConfigError, IntentConfig

DEFAULT_CONFIGS = ("config.toml", "config.example.toml")  # looked for in the working directory, in this order
# What a command's "config file not found" tells the user to do next.
NEXT_STEP = "copy config.example.toml to config.toml and edit it, or pass --config FILE"

ENV_OVERRIDES = {
    "WECHAT_APPID": ("wechat", "appid"),
    "WECHAT_APPSECRET": ("wechat", "appsecret"),
    "WECHAT_TOKEN": ("wechat", "token"),
    "WECHAT_AES_KEY": ("wechat", "encoding_aes_key"),
    "VOICEBOT_FORWARD_SECRET": ("forward", "secret"),
    "VOICEBOT_STT_API_KEY": ("voice.openai", "api_key"),
    "VOICEBOT_TTS_API_KEY": ("voice.reply.openai", "api_key"),
    "VOICEBOT_LLM_API_KEY": ("llm", "api_key"),
}


def load_config(path: str | os.PathLike[str], env: typing.Mapping[str, str] | None = None, *,
                next_step: str = NEXT_STEP) -> Config:
    """Read a TOML file, apply environment secrets, and validate everything (``next_step``: what a missing file's
    error tells the user to do)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path} ({next_step})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    return config_from_dict(raw, env=os.environ if env is None else env, base_dir=path.parent.resolve())


def config_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The file a command reads: ``path``, else the first of :data:`DEFAULT_CONFIGS` in the working directory.

    One rule for every command and ``make run``, so that ``simulate`` signs with the secrets ``serve`` checks."""
    if path is not None:
        return Path(path)
    for name in DEFAULT_CONFIGS:
        if Path(name).exists():
            return Path(name)
    raise ConfigError(f"no config file: neither {' nor '.join(DEFAULT_CONFIGS)} in {Path.cwd()} ({NEXT_STEP})")


def find_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the config :func:`config_path` picks (what every command uses)."""
    return load_config(config_path(path))


def config_from_dict(raw: dict[str, Any], *, env: typing.Mapping[str, str] | None = None,
                     base_dir: Path | None = None) -> Config:
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    from_env = {}
    for var, (section, key) in ENV_OVERRIDES.items():
        if env and env.get(var):
            target = _table(raw, section)
            target[key] = env[var]
            from_env[f"[{section}] {key}"] = var
    try:
        intents = _intents(raw.pop("intents", []))
        cfg = _build(Config, raw, "")
        cfg = dataclasses.replace(cfg, base_dir=base_dir or Path.cwd(), intents=intents)
        check(cfg)
    except ConfigError as exc:
        where = next((w for w in from_env if str(exc).startswith(w + ":")), None)
        if where is None:
            raise
        # the file may not even contain the key: say where the value came from
        raise ConfigError(f"{exc} (the value comes from the environment variable {from_env[where]})") from None
    return cfg


def _table(raw: dict[str, Any], dotted: str) -> dict[str, Any]:
    """The (copied, so the caller's dict is left alone) table at ``voice.reply.openai``, made if absent."""
    table = raw
    for name in dotted.split("."):
        value = table.get(name)
        if value is not None and not isinstance(value, dict):
            return {}  # not a table: leave it for _build to report
        table[name] = dict(value or {})
        table = table[name]
    return table


def _intents(raw: Any) -> list[IntentConfig]:
    """``[[intents]]`` tables, each error naming ``[[intents]][i] key``."""
    if not isinstance(raw, list):
        raise ConfigError(f"[[intents]]: expected an array of tables (write each as [[intents]]), got {raw!r}")
    out = []
    for i, table in enumerate(raw):
        if not isinstance(table, dict):
            raise ConfigError(f"[[intents]][{i}]: expected a table, got {table!r}")
        out.append(_build(IntentConfig, table, "intents", label=f"[[intents]][{i}]"))
    return out


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(str(a).lower() if isinstance(a, bool) else repr(a) for a in typing.get_args(tp))
    if origin is types.UnionType:  # ``X | None``: TOML has no null, so a value given must be an X
        return _describe(typing.get_args(tp)[0])
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a table"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(tp: Any, value: Any, where: str, section: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is types.UnionType:
        return _coerce(typing.get_args(tp)[0], value, where, section)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return _build(tp, value, section)
    if origin is list and isinstance(value, list):
        item = typing.get_args(tp)[0]
        return [_coerce(item, v, f"{where}[{i}]", section) for i, v in enumerate(value)]
    if origin is Literal:  # by type too: TOML's 1 is not true
        ok = any(type(value) is type(a) and value == a for a in typing.get_args(tp))
    elif origin is dict:  # a free-form table (e.g. [llm] extra): passed on as it is
        ok = isinstance(value, dict)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = origin is None and isinstance(value, tp)
    if not ok:
        raise ConfigError(f"{where}: expected {_describe(tp)}, got {value!r}")
    return float(value) if tp is float else value


def _build(cls: type, raw: dict[str, Any], section: str, label: str | None = None) -> Any:
    """Build dataclass ``cls`` from a TOML table, naming ``[section] key`` (or ``label key``) in every error."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in ("base_dir", "intents")}

    def where(name: str) -> str:
        if label:
            return f"{label} {name}"
        return f"[{section}] {name}" if section else f"[{name}]"

    for name in raw:
        if name not in fields:
            if not section and not label:  # the top level holds sections (and [[intents]])
                raise ConfigError(f"[{name}]: unknown section (expected one of: {', '.join(fields)}, [[intents]])")
            raise ConfigError(f"{where(name)}: unknown key (expected one of: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        sub = f"{section}.{name}" if section else name
        if name in raw:
            kwargs[name] = _coerce(hints[name], raw[name], where(name), sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            if dataclasses.is_dataclass(hints[name]):
                kwargs[name] = _build(hints[name], {}, sub)
            else:
                raise ConfigError(f"{where(name)}: missing; expected {_describe(hints[name])}")
    return cls(**kwargs)
