"""``[accounts.NAME]``: several accounts (Official Accounts, WeCom apps) served by one deployment.

Each table names one account: its ``kind``, credentials, callback ``path`` (default ``/wechat/NAME``) and,
optionally, its own ``[accounts.NAME.handlers]`` and ``[accounts.NAME.reply]`` (keys over the top-level
sections). Every account becomes a whole :class:`Config` of its own (``config.accounts``): the rest of the bot
serves each as it serves a single ``[wechat]`` config, with the account's own store prefix
(``[storage] prefix`` + ``NAME:``), so its tokens, dedupe keys, delivery records, sessions and pickups are its
own in the shared store.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

from bot.config.schema import (
    KINDS,
    AccountInfo,
    Config,
    ConfigError,
    HandlersConfig,
    ReplyConfig,
    WeChatConfig,
    WeComAppConfig,
)
from bot.config.typed import build

NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
# Recognizers that need the Official Account's own API: a WeCom app has no recognition of any kind.
WECHAT_ONLY_RECOGNIZERS = ("push", "wechat")
WECOM_API = "https://qyapi.weixin.qq.com"
# A WeCom app may message its users at any time (message/send: no 48-hour window, no per-message quota), so its
# late answers go that way as soon as they are ready, without holding tries for WeChat's retries and without the
# Official Account's probe of the customer-service API. [reply] and [accounts.NAME.reply] still override them.
WECOM_REPLY: dict[str, Any] = {"mode": "customer_service", "customer_service": True}


def expand_accounts(root: Config, raw: Any, own_raw: dict[str, dict[str, Any]]) -> tuple[Config, ...]:
    """One config per ``[accounts.NAME]`` table, in file order; ``own_raw``: the top-level [handlers] and
    [reply] tables as written, which an account's own tables extend."""
    if isinstance(raw, list):
        raise ConfigError("[accounts]: expected tables named by account, [accounts.shop] (got an array of tables, "
                          "[[accounts]])")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"[accounts]: expected at least one [accounts.NAME] table, got {raw!r}")
    served, paths = [], {root.metrics.path: "[metrics] path"}
    for name, table in raw.items():
        where = f"[accounts.{name}]"
        if not NAME.match(name):
            raise ConfigError(f"{where}: expected a name of 1-32 letters, digits, '-' or '_'")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table, got {table!r}")
        account = _account(root, name, dict(table), own_raw)
        path = account.server.path
        if path in paths:
            raise ConfigError(f"{where} path: {path!r} is already {paths[path]}; give each account its own path")
        paths[path] = f"{where} path"
        served.append(account)
    return tuple(served)


def _account(root: Config, name: str, table: dict[str, Any], own_raw: dict[str, dict[str, Any]]) -> Config:
    where = f"[accounts.{name}]"
    kind = table.pop("kind", None)
    if kind not in KINDS:
        raise ConfigError(f"{where} kind: expected {' or '.join(map(repr, KINDS))}, got {kind!r}")
    path = table.pop("path", f"/wechat/{name}")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigError(f"{where} path: expected a path starting with '/', got {path!r}")
    overrides = {key: table.pop(key) for key in ("handlers", "reply") if key in table}
    for key, value in overrides.items():
        if not isinstance(value, dict):
            raise ConfigError(f"[accounts.{name}.{key}]: expected a table, got {value!r}")
    section = f"accounts.{name}"
    agent_id = 0
    voice = root.voice
    if kind == "official_account":
        wechat = build(WeChatConfig, table, section)
    else:
        app = build(WeComAppConfig, table, section)
        _check_wecom(app, where)
        agent_id = app.agent_id
        wechat = WeChatConfig(appid=app.corp_id, appsecret=app.secret, token=app.token,
                              encoding_aes_key=app.encoding_aes_key, api_base_url=app.api_base_url,
                              token_endpoint="classic", http_timeout_s=app.http_timeout_s)
        voice = dataclasses.replace(voice, recognizers=[r for r in voice.recognizers
                                                       if r not in WECHAT_ONLY_RECOGNIZERS],
                                    reply=dataclasses.replace(voice.reply, format="amr"))  # WeCom takes AMR only
    handlers = root.handlers if "handlers" not in overrides else build(
        HandlersConfig, {**own_raw.get("handlers", {}), **overrides["handlers"]}, f"{section}.handlers")
    defaults = WECOM_REPLY if kind == "wecom_app" else {}
    reply = root.reply if "reply" not in overrides and not defaults else build(
        ReplyConfig, {**defaults, **own_raw.get("reply", {}), **overrides.get("reply", {})}, f"{section}.reply")
    if kind == "wecom_app" and reply.customer_service == "auto":  # nothing to learn: an app may always send
        reply = dataclasses.replace(reply, customer_service=True)
    return dataclasses.replace(
        root, wechat=wechat, handlers=handlers, reply=reply, voice=voice,
        server=dataclasses.replace(root.server, path=path),
        storage=dataclasses.replace(root.storage, prefix=f"{root.storage.prefix}{name}:"),
        account=AccountInfo(name=name, kind=kind, agent_id=agent_id), accounts=())


def _check_wecom(app: WeComAppConfig, where: str) -> None:
    """What a WeCom app cannot work without: WeCom's callbacks are always encrypted (safe mode only)."""
    for key in ("corp_id", "secret", "token", "encoding_aes_key"):
        if not getattr(app, key):
            raise ConfigError(f"{where} {key}: required for a WeCom app (企业微信管理后台 → 应用管理 → the app"
                              f"{' → 接收消息 → 设置API接收' if key in ('token', 'encoding_aes_key') else ''})")
    if app.agent_id <= 0:
        raise ConfigError(f"{where} agent_id: expected the app's AgentId (a positive integer), got {app.agent_id}")
    if not app.api_base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where} api_base_url: expected an http:// or https:// URL, got {app.api_base_url!r}")

