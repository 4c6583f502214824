"""``python -m bot simulate``: play a WeChat user (and WeChat) against a running bot, and print what the user sees.

By default WeChat's side is played in full (``bot.testing.WeChatRetryClient``): a try is dropped after
``[reply] wechat_timeout_s`` (5 s) without an answer and sent again, ``[reply] tries`` (3) in all, and the
customer-service messages the sandbox records for the user are read back. Every thing the user sees is one line
with the second it arrived::

    [ 0.42s] passive: 已打开客厅的灯
    [16.10s] customer service: 已打开客厅的灯

When it can read the bot's store (the config's SQLite file or Redis), it keeps looking as long as the bot still
owes the user something for the message — its job still running, customer-service parts still to come — at most
``--max-wait`` seconds, and stops at once when nothing more can come (bot/testing/owed.py).

``--once`` posts a single try and prints its answer, as WeChat never would but a quick check wants.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from bot.cli.common import bot_store, load, sandbox_moved, webhook_url
from bot.config import Config
from bot.ops.logs import announce

_UNREACHABLE = "cannot reach the bot at {url}: {error}. Is it running? (make run)"


def describe_voice(session: Any, sandbox: str | None, text: str) -> str:
    """``[voice MEDIA_ID]`` as the user would hear it: a voice answer, its length and (sandbox tones) what it
    says."""
    media_id = text[len("[voice "):-1]
    if not sandbox:
        return f"voice answer ({media_id})"
    try:
        info = session.get(f"{sandbox}/sandbox/uploads", params={"media_id": media_id}, timeout=10).json()
    except (OSError, ValueError):
        return f"voice answer ({media_id})"
    says = f' saying "{info["says"]}"' if info.get("says") else ""
    return f"voice answer, {float(info.get('duration_s') or 0):.1f} s{says}"


KINDS = ["text", "voice", "event", "image", "location", "link"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``simulate``'s options (the parser lives in bot/cli/commands.py)."""
    p.add_argument("kind", choices=KINDS, help="what to send")
    p.add_argument("content", help="the text; voice: the sentence the clip says; event: its name; image: the "
                                   "picture's URL; location: 'LATITUDE,LONGITUDE [label]'; link: 'URL [title]'")
    p.add_argument("--url", help="the webhook URL (default: from the config's [server], or the account's path)")
    p.add_argument("--port", type=int, help="the port of a bot on this machine (`make run PORT=…`), instead of --url")
    p.add_argument("--sandbox-port", type=int, metavar="PORT",
                   help="the sandbox `run --sandbox-port` started (`make run SANDBOX_PORT=…`)")
    p.add_argument("--account", metavar="NAME",
                   help="the account to write to, for a config with [accounts.NAME] tables (a WeCom app's pushes "
                        "are signed and encrypted as WeCom does; its late answers come by message/send)")
    p.add_argument("--mode", choices=["plaintext", "compatible", "safe"],
                   help="crypto mode (default: safe when encoding_aes_key is set)")
    p.add_argument("--openid", default="oSIMULATEDUSER00000000000000",
                   help="the user's openid (FromUserName); a session, dedupe and customer-service messages are "
                        "per openid (default: %(default)s)")
    p.add_argument("--once", action="store_true",
                   help="post one try and print its answer, instead of playing WeChat's retries (5 s per try, "
                        "three tries) and printing everything the user sees")
    p.add_argument("--settle", type=float, metavar="SECONDS",
                   help="keep reading customer-service messages at least this long after the first answer "
                        "(default: as long as the bot's store says more is coming; 1 s when the store cannot "
                        "be read, e.g. memory://)")
    p.add_argument("--max-wait", type=float, default=120.0, metavar="SECONDS",
                   help="stop looking this long after the first post even if the bot still owes an answer "
                        "(default: %(default)g)")
    p.add_argument("--save", metavar="FILE",
                   help="write the audio of a voice answer to FILE (several parts: FILE-1, FILE-2, ...)")
    p.add_argument("--insecure", action="store_true",
                   help="do not verify the TLS certificate of an https:// --url (a self-signed proxy)")
    # The sandbox synthesizes AMR only (PyAV cannot encode Speex): upload Speex files with POST /sandbox/media.
    p.add_argument("--format", default="amr", choices=["amr"], help="voice: clip format (the sandbox makes AMR)")
    p.add_argument("--duration", type=float, default=2.0, help="voice: clip length in seconds")
    p.add_argument("--with-16k", action="store_true", help="voice: also offer MediaId16K")
    p.add_argument("--recognition", help="voice: put this in <Recognition> instead of registering a clip")


class _Unverified(requests.Session):
    """``--insecure``: no certificate check, even where ``REQUESTS_CA_BUNDLE`` is set (requests lets that variable
    win over ``session.verify = False``)."""

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["verify"] = False
        return super().request(method, url, *args, **kwargs)


class SandboxError(Exception):
    """The sandbox could not make the voice clip: the bot was never asked anything."""


def cmd_simulate(args: argparse.Namespace) -> int:
    """Build the push (for voice, a clip the sandbox makes), post it as WeChat would, print what the user sees."""
    from bot.testing.client import account_config, sender_fields
    config, which = load(args.config, build=False)
    config = sandbox_moved(config, args.sandbox_port)
    announce(None, which)
    try:
        config = account_config(config, args.account)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    url = args.url or webhook_url(config, port=args.port)
    sender = {"openid": args.openid, **sender_fields(config)}
    session = _Unverified() if args.insecure else requests.Session()
    if args.insecure:
        warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    try:
        xml = voice_push(config, args, sender) if args.kind == "voice" else push(args.kind, args.content, sender)
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {args.kind}: {exc}", file=sys.stderr)
        return 2
    if args.once:
        return _once(config, args, url, xml, session)
    return _with_retries(config, args, url, xml, session)


def push(kind: str, content: str, sender: dict[str, Any]) -> str:
    """The push for every kind but voice, from ``sender`` (``ValueError`` for content that does not fit the kind)."""
    from bot.testing import messages
    if kind == "text":
        return messages.text(content, **sender)
    if kind == "event":
        return messages.event(content, **sender)
    if kind == "image":
        return messages.image(content, media_id="simulated-image", **sender)
    first, _, rest = content.strip().partition(" ")
    if kind == "link":
        return messages.link(first, rest.strip(), **sender)
    try:
        latitude, longitude = (float(x) for x in first.split(","))
    except ValueError:
        raise ValueError(f"expected 'LATITUDE,LONGITUDE [label]', e.g. '31.2304,121.4737 人民广场', got {content!r}") \
            from None
    return messages.location(latitude, longitude, rest.strip(), **sender)


def _unreachable(url: str, error: str) -> int:
    """The bot could not be reached at all: exit 2, with the likely fix for a TLS error."""
    hint = " (a self-signed certificate? pass --insecure)" if "SSL" in error else ""
    print("error: " + _UNREACHABLE.format(url=url, error=error) + hint, file=sys.stderr)
    return 2


def _once(config: Config, args: argparse.Namespace, url: str, xml: str, session: requests.Session) -> int:
    """One try, its answer on stdout: a quick check, not what WeChat does."""
    from bot.testing import BotClient
    client = BotClient(config, url=url, mode=args.mode, openid=args.openid)
    client.session = session
    started = time.perf_counter()
    try:
        reply = client.send(xml)
    except OSError as exc:
        return _unreachable(url, type(exc).__name__)
    print(str(reply))
    print(f"({client.envelope.mode} mode, HTTP {reply.status}, {time.perf_counter() - started:.2f}s)", file=sys.stderr)
    return 0 if reply.status == 200 else 1


def _with_retries(config: Config, args: argparse.Namespace, url: str, xml: str, session: requests.Session) -> int:
    """WeChat's tries, then one line per thing the user saw; exit 1 when refused or WeChat's error was shown."""
    from bot.testing import WeChatRetryClient
    sandbox = sandbox_url(config)
    store = bot_store(config)
    settle = args.settle if args.settle is not None else (0.0 if store is not None else 1.0)
    client = WeChatRetryClient(config, url, sandbox, wait_s=config.reply.wechat_timeout_s, tries=config.reply.tries,
                               mode=args.mode, settle_s=settle, session=session, retry_refused=False,
                               only_new=True, store=store, max_wait_s=args.max_wait, poll_s=0.1)
    try:
        seen = client.send(xml)
    finally:
        if store is not None:
            store.close()
    if seen.statuses == ["error"]:
        return _unreachable(url, seen.error or "error")
    voices = [s for s in seen.timeline if s.text.startswith("[voice ")]
    for sighting in seen.timeline:  # a text of several lines: the next lines indented under the first
        head = f"[{sighting.at:5.2f}s] {sighting.kind}: "
        text = describe_voice(session, sandbox, sighting.text) if sighting in voices else sighting.text
        print(head + "\n".join(line and " " * len(head) * (i > 0) + line
                                for i, line in enumerate(text.split("\n"))), flush=True)
    if args.save and voices and sandbox:
        for i, sighting in enumerate(voices, 1):
            target = args.save if len(voices) == 1 else f"{args.save}-{i}"
            media_id = sighting.text[len("[voice "):-1]
            r = session.get(f"{sandbox}/sandbox/uploads/{media_id}/data", timeout=10)
            if r.status_code == 200:
                Path(target).write_bytes(r.content)
                print(f"(saved the voice answer to {target})", file=sys.stderr)
    if seen.refused is not None:
        print(str(seen.refused))
    elif not seen.timeline:
        print("(no reply: the user sees nothing)")
    tries = ", ".join(seen.statuses)
    unseen = "" if sandbox else "; customer-service messages not shown: [wechat] api_base_url is not a sandbox"
    print(f"({client.envelope.mode} mode, {len(seen.statuses)} tr{'y' if len(seen.statuses) == 1 else 'ies'}: "
          f"{tries}; {seen.elapsed:.2f}s{unseen}{owing_note(seen, args.max_wait)})", file=sys.stderr)
    return 1 if seen.refused is not None or seen.error_shown else 0


def owing_note(seen: Any, max_wait_s: float) -> str:
    """The end of the summary: why the client stopped looking, when the bot's store told it."""
    if seen.owing is None:
        return ""
    if seen.gave_up:
        return (f"; stopped looking after {max_wait_s:g} s although the bot still owes more: {seen.owing.waiting} "
                "(--max-wait)")
    return f"; {seen.owing.note or 'the bot owes nothing more for this message'}"


def sandbox_root(config: Config) -> str:
    """The server of the API base URL (a WeCom app's sandbox API is that server's ``/wecom``)."""
    parts = urlsplit(config.wechat.api_base_url)
    return f"{parts.scheme}://{parts.netloc}"


def sandbox_url(config: Config) -> str | None:
    """The API base URL's server when it is a sandbox (it answers ``GET /sandbox/messages``), else None."""
    base = sandbox_root(config)
    try:
        return base if requests.get(f"{base}/sandbox/messages", timeout=2).status_code == 200 else None
    except requests.RequestException:
        return None


def voice_push(config: Config, args: argparse.Namespace, sender: dict[str, Any]) -> str:
    """Register a real clip for the sentence in the sandbox and build the push that names it."""
    from bot.testing import messages
    if args.recognition is not None:
        return messages.voice(recognition=args.recognition, **sender)
    base = sandbox_root(config)
    body: dict[str, Any] = {"text": args.content, "format": args.format, "duration_s": args.duration,
                            "with_16k": args.with_16k}
    try:
        r = requests.post(f"{base}/sandbox/voices", json=body, timeout=10)
    except requests.RequestException as exc:
        raise SandboxError(f"cannot reach the WeChat API sandbox at {base} ([wechat] api_base_url) to make the "
                           f"voice clip: {type(exc).__name__}. Start it (make run, or python -m bot sandbox), "
                           "or pass --recognition TEXT to skip the clip") from None
    if r.status_code != 200:
        raise SandboxError(f"the WeChat API sandbox at {base} refused the clip: HTTP {r.status_code} {r.text[:200]}")
    clip = r.json()
    return messages.voice(clip["media_id"], media_id_16k=clip.get("media_id_16k"), fmt=args.format,
                          recognition=clip.get("recognition"), **sender)
