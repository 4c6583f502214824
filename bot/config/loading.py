"""Reading the TOML: typed values (``[section] key: expected …, got …``), secrets from the environment, and the
rules of ``bot.config.rules``, once, at start-up.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from pathlib import Path
from typing import Any

from bot.config.accounts import expand_accounts
from bot.config.rules import check
from bot.config.schema import Config, ConfigError, IntentConfig
from bot.config.sections import Section, declared_sections
from bot.config.typed import NOT_SECTIONS, build

DEFAULT_CONFIGS = ("config.toml", "config.example.toml")  # looked for in the working directory, in this order
# What a command's "config file not found" tells the user to do next.
NEXT_STEP = "copy config.example.toml to config.toml and edit it, or pass --config FILE"

ENV_OVERRIDES = {
    "WECHAT_APPID": ("wechat", "appid"),
    "WECHAT_APPSECRET": ("wechat", "appsecret"),
    "WECHAT_TOKEN": ("wechat", "token"),
    "WECHAT_AES_KEY": ("wechat", "encoding_aes_key"),
    "VOICEBOT_STT_API_KEY": ("voice.openai", "api_key"),
    "VOICEBOT_TTS_API_KEY": ("voice.reply.openai", "api_key"),
}  # and what each declared section's ``env`` names (VOICEBOT_FORWARD_SECRET, VOICEBOT_LLM_API_KEY: sections.py)


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
    sections = declared_sections()
    overrides = {**ENV_OVERRIDES, **{var: (name, key) for name, section in sections.items()
                                     for var, key in section.env.items()}}
    from_env = {}
    for var, (section_name, key) in overrides.items():
        if env and env.get(var):
            target = _table(raw, section_name)
            target[key] = env[var]
            from_env[f"[{section_name}] {key}"] = var
    try:
        cfg = _config(raw, sections, base_dir or Path.cwd())
    except ConfigError as exc:
        where = next((w for w in from_env if str(exc).startswith(w + ":")), None)
        if where is None:
            raise
        # the file may not even contain the key: say where the value came from
        raise ConfigError(f"{exc} (the value comes from the environment variable {from_env[where]})") from None
    return cfg


def _config(raw: dict[str, Any], sections: dict[str, Section], base_dir: Path) -> Config:
    """Build and check the whole config: the bot's sections, the declared ones, then each account."""
    own = [f.name for f in dataclasses.fields(Config) if f.name not in NOT_SECTIONS]
    for name in raw:
        if name not in own and name not in sections and name not in ("intents", "accounts"):
            known = [*own, *sorted(sections), "[accounts.NAME]", "[[intents]]"]
            raise ConfigError(f"[{name}]: unknown section (expected one of: {', '.join(known)}; a handler "
                              "package's own section needs the package installed)")
    accounts = raw.pop("accounts", None)
    if accounts is not None:
        if "wechat" in raw:
            raise ConfigError("[wechat]: a config with [accounts.NAME] tables names every account there; move "
                              "[wechat] into one of them (e.g. [accounts.main] with kind = \"official_account\")")
        raw["wechat"] = {"appid": "", "appsecret": "", "token": ""}  # replaced by the first account's below
    own_raw = {name: dict(raw.get(name) or {}) for name in ("handlers", "reply")
               if isinstance(raw.get(name) or {}, dict)}
    intents = _intents(raw.pop("intents", []))
    values = {name: build(section.schema, _subtable(raw.pop(name, None), name), name)
              for name, section in sections.items()}
    cfg = build(Config, raw, "")
    cfg = dataclasses.replace(cfg, base_dir=base_dir, intents=intents, sections=values)
    check(cfg, placeholder=accounts is not None)  # with [accounts], its [wechat] is a placeholder here: each
    # account's is checked below
    if accounts is not None:
        served = expand_accounts(cfg, accounts, own_raw)
        cfg = dataclasses.replace(cfg, wechat=served[0].wechat, accounts=served)
    for account in cfg.served():
        try:
            if account is not cfg:
                check(account)
            for name, section in sections.items():
                if section.check is not None:
                    section.check(account.sections[name], account)
        except ConfigError as exc:  # a mistake in an account's own [handlers] or [reply] names that table
            raise _in_account(exc, account, cfg) from None
    return cfg


def _in_account(exc: ConfigError, account: Config, root: Config) -> ConfigError:
    for name in ("handlers", "reply"):
        if str(exc).startswith(f"[{name}]") and getattr(account, name) is not getattr(root, name):
            return ConfigError(f"[accounts.{account.account.name}.{name}]{str(exc)[len(name) + 2:]}")
    return exc


def _subtable(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}]: expected a table, got {value!r}")
    return value


def _table(raw: dict[str, Any], dotted: str) -> dict[str, Any]:
    """The (copied, so the caller's dict is left alone) table at ``voice.reply.openai``, made if absent."""
    table = raw
    for name in dotted.split("."):
        value = table.get(name)
        if value is not None and not isinstance(value, dict):
            return {}  # not a table: leave it for build to report
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
        out.append(build(IntentConfig, table, "intents", label=f"[[intents]][{i}]"))
    return out
