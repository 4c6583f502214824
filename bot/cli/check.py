"""``python -m bot check --config FILE``: is this deployment ready? One line per dependency, each with the fix.

Run it before pointing WeChat at a new server: a wrong AppSecret or a missing IP-whitelist entry otherwise
shows up only as "not understood" answers to voice messages.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bot.cli.check_speech import check_synthesizers
from bot.config import Config, ConfigError
from bot.ops.clock import SYSTEM

# errcode → what to do about it (token endpoints; https://developers.weixin.qq.com/doc/offiaccount/en/)
TOKEN_FIXES = {
    40164: "add this server's outbound IP to the IP whitelist (mp.weixin.qq.com → 设置与开发 → 基本配置 → IP白名单)",
    40125: "wrong AppSecret: check [wechat] appsecret (or WECHAT_APPSECRET); reset it on mp.weixin.qq.com if lost",
    40013: "wrong AppID: check [wechat] appid (or WECHAT_APPID)",
    40001: "WeChat refused the AppSecret: check [wechat] appid and appsecret",
    40002: "invalid grant_type: report a bug",
    45009: "the daily token quota is used up: wait for tomorrow or reset it (/cgi-bin/clear_quota)",
    -1: "WeChat is busy: try again in a minute",
}


# the same for a WeCom app's gettoken (developer.work.weixin.qq.com, 全局错误码)
WECOM_TOKEN_FIXES = {
    40013: "wrong corp id: check [accounts.NAME] corp_id (企业微信管理后台 → 我的企业 → 企业ID)",
    40001: "WeCom refused the secret: check [accounts.NAME] secret (应用管理 → the app → Secret)",
    60020: "this server's IP is not trusted: add it to the app's 企业可信IP (应用管理 → the app)",
    -1: "WeCom is busy: try again in a minute",
}


@dataclass
class Result:
    ok: bool
    name: str
    detail: str
    warning: bool = False  # printed with "!", not counted as a failure

    def but(self, name: str) -> Result:
        return Result(self.ok, name, self.detail, self.warning)


def check_wechat(config: Config) -> Result:
    """Fetch a token from ``api_base_url`` (a throwaway memory store: the bot's shared token is untouched)."""
    from bot.runtime import build_client
    from bot.store.memory import MemoryStore
    from bot.wechat.errors import TransportError, WeChatAPIError
    wecom = config.account.kind == "wecom_app"
    name = (f"WeCom API ({config.wechat.api_base_url}, gettoken)" if wecom else
            f"WeChat API ({config.wechat.api_base_url}, {config.wechat.token_endpoint} token)")
    try:
        build_client(config, MemoryStore()).fetch_access_token()
    except TransportError as exc:
        return Result(False, name, f"unreachable ({exc.errmsg}): check the api_base_url and outbound "
                                   "network/proxy")
    except WeChatAPIError as exc:
        fix = (WECOM_TOKEN_FIXES if wecom else TOKEN_FIXES).get(exc.errcode or 0, "see WeChat's error code list")
        return Result(False, name, f"errcode {exc.errcode} ({exc.errmsg}): {fix}")
    return Result(True, name, "access token fetched")


def check_store(config: Config) -> Result:
    from bot.runtime import store_url
    from bot.store import StoreError, open_store
    from bot.store.base import redact_url
    name = f"store ({redact_url(config.storage.url)})"
    url = store_url(config)
    if url.startswith("sqlite://"):
        from bot.store.sqlite import MEMORY, path_from_url
        try:
            path = path_from_url(url)
        except ValueError as exc:
            return Result(False, name, f"{exc}: fix [storage] url")
        missing = None if path == MEMORY else _sqlite_not_created(Path(path))
        if missing is not None:  # a check must not create the file (or its directories) it only tests
            return missing.but(name)
    try:
        with open_store(store_url(config), prefix=config.storage.prefix) as store:
            store.ping()
    except (StoreError, ValueError) as exc:
        return Result(False, name, f"{exc}: start the store or fix [storage] url")
    return Result(True, name, "reachable")


def _sqlite_not_created(path: Path) -> Result | None:
    """For a SQLite file that does not exist yet: whether the bot could create it (None: it exists, open it)."""
    if path.exists():
        return None
    parent = path.parent
    while not parent.exists():  # the bot creates the missing directories: the first existing one decides
        parent = parent.parent
    if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
        return Result(True, "", f"{path} does not exist yet; the bot creates it at start-up ({parent} is writable)")
    return Result(False, "", f"{path} cannot be created: {parent} is not a writable directory; fix [storage] url "
                             "or the directory's permissions")


def check_routers(config: Config) -> list[Result]:
    """Each configured router loads; then the readiness checks its routers registered (``router.check``)."""
    from bot.config.collisions import collisions, where_to_look
    from bot.core.loading import add_search_paths, load_router
    add_search_paths(config.base_dir / p for p in config.handlers.search_paths)
    results = [Result(False, "package names", line)
               for line in collisions(where_to_look(config.base_dir, config.handlers.search_paths))]
    seen = set()
    for i, spec in enumerate(config.handlers.routers):
        try:
            router = load_router(spec, f"[handlers] routers[{i}]")
        except ConfigError as exc:
            results.append(Result(False, f"router {spec}", str(exc)))
        except Exception as exc:  # importing someone's module may raise anything
            results.append(Result(False, f"router {spec}", f"importing it raised {type(exc).__name__}: {exc}"))
        else:
            results.append(Result(True, f"router {spec}", "loads"))
            for fn in (fn for r in router.walk() for fn in r.checks):
                if fn not in seen:  # a router included twice is checked once
                    seen.add(fn)
                    results += run_router_check(spec, fn, config)
    return results


def run_router_check(spec: str, fn: Callable[[Config], list[Any]], config: Config) -> list[Result]:
    """One ``router.check`` function's lines; one that raises or answers nonsense is a failed line, not a crash."""
    name = f"router {spec} check {getattr(fn, '__name__', 'check')}"
    try:
        return [Result(bool(ok), str(what), str(detail)) for ok, what, detail in fn(config)]
    except Exception as exc:  # someone's check function may raise anything
        return [Result(False, name, f"raised {type(exc).__name__}: {exc}")]


def check_callback(config: Config) -> Result:
    """What WeChat's 基本配置 page (a WeCom app's 接收消息 page) must match: the Token and the EncodingAESKey."""
    token, key = config.wechat.token, config.wechat.encoding_aes_key
    if config.account.kind == "wecom_app":  # both required by the config rules
        return Result(True, "callback", f"token and EncodingAESKey set, encrypted (WeCom) at {config.server.path}")
    if not token:
        return Result(False, "callback", "[wechat] token is empty: set the Token you typed on mp.weixin.qq.com")
    modes = "plaintext, compatible and safe mode" if key else "plaintext mode only (no encoding_aes_key)"
    note = "" if token.isalnum() and 3 <= len(token) <= 32 else \
        " (note: WeChat's form accepts only a 3-32 character Token of letters and digits)"
    return Result(True, "callback", f"token set, {modes} at {config.server.path}{note}")


def check_customer_service(config: Config, wechat_ok: bool) -> Result:
    """Which kind of account this is, for late answers: asks ``message/custom/send`` for no user (48001: the
    account may not use the API; anything else: it may) — nothing is sent."""
    name = "customer-service API"
    setting = config.reply.customer_service
    if setting is False or config.reply.mode == "passive":
        return Result(True, name, "off by config: late answers are kept for pickup with the user's next message")
    if not wechat_ok:
        return Result(False, name, "not checked: needs the WeChat API token (see above)")
    from bot.delivery.customer_service import AVAILABLE
    from bot.store.memory import MemoryStore
    from bot.wechat import WeChatAPI
    from bot.wechat.errors import APIUnauthorizedError, TransportError, WeChatAPIError
    client = WeChatAPI(config.wechat, MemoryStore())  # its token stays out of the bot's store
    try:
        client.message.send_text("", "probe")
    except APIUnauthorizedError as exc:
        detail = (f"unavailable (errcode {exc.errcode}): the customer-service API needs a verified account; late "
                  "answers will be picked up with the user's next message")
        if setting is True:
            return Result(False, name, detail + "; set [reply] customer_service = \"auto\" or false")
        return Result(True, name, detail + remembered(config, client, str(exc.errcode)))
    except TransportError as exc:
        return Result(False, name, f"unreachable ({exc.errmsg})")
    except WeChatAPIError:
        pass
    return Result(True, name, "available: late answers are sent as customer-service messages" +
                  remembered(config, client, AVAILABLE))


def remembered(config: Config, client: Any, answer: str) -> str:
    """What the bot itself remembers about the account (in its store, when it exists), set against the answer
    WeChat just gave: an answer that differs replaces it, as at the bot's start-up."""
    from bot.cli.common import bot_store
    from bot.delivery.customer_service import CustomerService
    store = bot_store(config)
    if store is None:
        return ""
    try:
        line = CustomerService(store, client, config.reply, config.wechat.appid, SYSTEM).recheck(answer)
    finally:
        store.close()
    return f" (the bot's memory: {line})" if line else ""


def check_rq_workers(config: Config, config_file: str = "FILE") -> Result:
    """With ``executor = "rq"`` nothing answers a voice message until a worker listens on the queue."""
    from bot.delivery.executors import RQExecutor
    from bot.runtime import bot_id
    name = f"RQ workers (queue {config.reply.queue!r})"
    try:
        names = RQExecutor(config.storage.url, config.reply.queue, bot_id(config), job_timeout_s=1, ttl_s=1).workers()
    except Exception as exc:  # redis' errors: the store line above says more (without the URL's password)
        return Result(False, name, f"cannot ask Redis ({type(exc).__name__}): see the store line")
    if not names:
        return Result(False, name, "none is listening: voice messages would wait unanswered; start one with "
                                   f"`python -m bot worker --config {config_file}`")
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return Result(True, name, f"{len(names)} listening ({shown})")


def check_wecom_voice(config: Config) -> Result:
    """A WeCom app's voice has no recognition of any kind: only the recognizers beyond WeChat's can hear it."""
    name = "voice recognition (WeCom app)"
    if not config.voice.recognizers:
        return Result(False, name, "a WeCom app has no WeChat recognition (push and wechat do not apply) and [voice] "
                                   "recognizers lists nothing else: voice messages get the not-understood reply; add "
                                   "\"openai\" ([voice.openai] url) or your own recognizer")
    return Result(True, name, f"push and wechat do not apply; voice goes through {', '.join(config.voice.recognizers)}")


def account_checks(config: Config, config_file: str = "FILE", voice_file: str | None = None) -> list[Result]:
    """One account's checks (the whole config's for a [wechat] config); ``voice_file``: check's ``--voice``."""
    from bot.cli.check_voice import voice_lines
    wechat = check_wechat(config)
    results = [wechat, check_store(config)]
    if config.account.kind == "wecom_app":
        late = ("off by config: kept for pickup with the user's next message" if config.reply.customer_service is
                False or config.reply.mode == "passive" else f"by message/send with agentid {config.account.agent_id} "
                "(no 48-hour window; WeCom's per-app limits)")
        results += [Result(True, "late answers", late), check_wecom_voice(config)]
    else:
        results.append(check_customer_service(config, wechat.ok))
    if config.reply.executor == "rq":
        results.append(check_rq_workers(config, config_file))
    results += [Result(line.kind != "fail", line.name, line.detail, line.kind == "warn")
                for line in voice_lines(config, wechat.ok, voice_file)]
    results += [Result(*line) for line in check_synthesizers(config)]
    results += check_routers(config)
    results.append(check_callback(config))
    return results


def run_checks(config: Config, config_file: str = "FILE", voice_file: str | None = None) -> list[Result]:
    """Every account's checks, each line named by its account when the config has [accounts.NAME]."""
    if not config.accounts:
        return account_checks(config, config_file, voice_file)
    return [r.but(f"[{account.account.name}] {r.name}") for account in config.accounts
            for r in account_checks(account, config_file, voice_file)]


def marks(stream: TextIO) -> tuple[str, str]:
    """✓/✗, or ``[ok]``/``[FAIL]`` where the terminal cannot show them."""
    try:
        "✓✗".encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "[ok]", "[FAIL]"
    return "✓", "✗"


def report(config: Config, stream: TextIO | None = None, checks: Callable[[Config], list[Result]] = run_checks) -> int:
    """Print one line per check (on ``stream``, default stdout); 0 when everything is ready, 1 otherwise. Secrets
    never reach the output."""
    from bot.ops.logs import RedactFilter, config_secrets
    stream = stream or sys.stdout
    redact = RedactFilter(config_secrets(config)).redact
    ok_mark, bad_mark = marks(stream)
    results = checks(config)
    for r in results:
        line = f"{'!' if r.warning else ok_mark if r.ok else bad_mark} {r.name}: {r.detail}"
        try:
            print(redact(line), file=stream, flush=True)
        except UnicodeEncodeError:
            print(redact(line).encode("ascii", "replace").decode(), file=stream, flush=True)
    failed = sum(not r.ok for r in results)
    print(f"{'ready' if not failed else f'{failed} check(s) failed'}", file=stream, flush=True)
    return 0 if not failed else 1


def cmd_check(args: Any) -> int:
    from bot.cli.common import load
    from bot.config import config_path
    from bot.ops.logs import announce
    config, which = load(args.config)  # refuses (exit 2) whatever serve refuses, [[intents]] included
    announce(None, which, stream=sys.stdout)
    return report(config, checks=lambda c: run_checks(c, str(config_path(args.config)), getattr(args, "voice", None)))
