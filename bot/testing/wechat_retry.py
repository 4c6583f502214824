"""WeChat's side of the 5-second deadline, for tests and benchmarks.

:class:`WeChatRetryClient` posts a push the way WeChat does: it drops the connection when ``wait_s`` passes
without an answer and sends the very same request again (same body, same query: WeChat does not re-sign a
retry), ``tries`` times in all. It returns everything the user saw: the passive reply, if a try got one, and
the customer-service messages the sandbox recorded for that user. Every clock is a parameter, so tests run
WeChat's timeline scaled down::

    client = WeChatRetryClient(config, bot_url, sandbox.url, wait_s=0.5)
    seen = client.voice(sandbox.register_voice("打开客厅的灯")["media_id"])
    assert seen.answers == ["已打开客厅的灯"]
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlencode

import requests
import xmltodict

from bot.config import Config
from bot.store import Store
from bot.testing import messages
from bot.testing.client import Envelope, Mode, Reply, sender_fields
from bot.testing.owed import Owing, owed

#: What WeChat shows the user when no try got a usable answer.
WECHAT_ERROR = "该公众号暂时无法提供服务，请稍后再试"


class Sighting(NamedTuple):
    """One thing the user saw: when (seconds after the first post), how (``passive``, ``customer service``,
    ``WeChat shows``) and what."""

    at: float
    kind: str
    text: str


def reply_text(reply: Reply) -> str:
    """A passive reply as the user reads it (other types than text as ``[type]``)."""
    if reply.content is not None:
        return reply.content
    return f"[{reply.type} {reply.media_id}]" if reply.media_id else f"[{reply.type}]"


def cs_text(message: dict[str, Any]) -> str:
    """A customer-service message (or a WeCom app's ``message/send``) as the user reads it (other types than
    text as ``[msgtype]``)."""
    if message.get("msgtype") == "text":
        return str(message.get("text", {}).get("content", ""))
    kind = str(message.get("msgtype"))
    media_id = (message.get(kind) or {}).get("media_id") if isinstance(message.get(kind), dict) else None
    return f"[{kind} {media_id}]" if media_id else f"[{kind}]"


@dataclass
class Seen:
    """What one message looked like from the user's phone."""

    passive: list[Reply] = field(default_factory=list)  # replies to a try, in time (at most one: WeChat stops)
    customer_service: list[dict[str, Any]] = field(default_factory=list)  # bodies sent to message/custom/send
    statuses: list[str] = field(default_factory=list)  # per try: "reply", "success", "timeout", "error", "HTTP 500"
    elapsed: float = 0.0  # seconds from the first post until the client stopped looking
    answered_s: float | None = None  # seconds from the first post to the first answer the user saw
    timeline: list[Sighting] = field(default_factory=list)  # everything the user saw, in order, with its time
    refused: Reply | None = None  # the last answer that was not HTTP 200 (status and body)
    error: str | None = None  # the last transport error (exception class name), for a try that got no answer
    owing: Owing | None = None  # what the bot still owed when the client stopped looking (None: not known)
    gave_up: bool = False  # the client stopped at max_wait_s although the bot still owed something

    @property
    def answers(self) -> list[str]:
        """Every answer the user read, passive first (texts; other types as ``[type]``)."""
        return [reply_text(r) for r in self.passive] + [cs_text(m) for m in self.customer_service]

    @property
    def error_shown(self) -> bool:
        """The last try got no usable answer: WeChat tells the user the account cannot serve right now."""
        return bool(self.statuses) and self.statuses[-1] not in ("reply", "success")


class WeChatRetryClient:
    """Posts like WeChat: drop at ``wait_s``, retry the same request, ``tries`` in all.

    ``sandbox_url`` (the :class:`bot.sandbox.Sandbox` the bot talks to) is where customer-service messages
    are read back; without it ``Seen.customer_service`` stays empty (read them yourself, e.g. in bulk).
    After the tries, the client polls the sandbox for up to ``cs_wait_s`` when no passive reply came, then
    keeps looking ``settle_s`` more, so that a duplicate arriving late is seen too.

    ``store`` (the bot's own store): instead of those fixed times, keep looking while the message's delivery
    record says the bot still owes something (bot/testing/owed.py) — at most ``max_wait_s`` from the first post —
    and stop as soon as nothing more can come.

    ``retry_refused=False`` stops at the first try the bot refuses or that cannot connect (WeChat would retry
    it; a person trying a bot wants to hear at once: nothing more can come); ``only_new=True`` ignores the
    customer-service messages the sandbox had recorded for the user before this push (``python -m bot
    simulate`` reuses one openid).
    """

    def __init__(self, config: Config, url: str, sandbox_url: str | None = None, *, wait_s: float = 5.0,
                 tries: int = 3, mode: Mode | None = None, cs_wait_s: float | None = None, settle_s: float = 0.0,
                 poll_s: float = 0.05, session: requests.Session | None = None, retry_refused: bool = True,
                 only_new: bool = False, store: Store | None = None, max_wait_s: float = 120.0) -> None:
        self.config, self.url = config, url
        self.store, self.max_wait_s = store, max_wait_s
        self.retry_refused, self.only_new = retry_refused, only_new
        self.sandbox_url = sandbox_url.rstrip("/") if sandbox_url else None
        self.wait_s, self.tries = wait_s, tries
        self.cs_wait_s = 2 * wait_s if cs_wait_s is None else cs_wait_s
        self.settle_s, self.poll_s = settle_s, poll_s
        self.envelope = Envelope.for_config(config, mode)
        self.sender = sender_fields(config)
        self.session = session or requests.Session()

    def send(self, xml: str) -> Seen:
        """Deliver one push with WeChat's retries and collect what its user saw."""
        openid = str(xmltodict.parse(xml)["xml"].get("FromUserName", ""))
        if self.sandbox_url:  # the user wrote: their customer-service window and quota start again
            try:
                self.session.post(f"{self.sandbox_url}/sandbox/user_messages", json={"openid": openid}, timeout=5)
            except requests.RequestException:
                pass
        query, body = self.envelope.wrap(xml)  # signed once: every try is byte-identical
        target = f"{self.url}?{urlencode(query)}"
        earlier = len(self.customer_service_messages(openid)) if self.sandbox_url and self.only_new else 0
        seen, started = Seen(), time.perf_counter()
        for _ in range(self.tries):
            try_started = time.perf_counter()
            status = self._try(target, body, seen, started)
            seen.statuses.append(status)
            if status in ("reply", "success") or (status != "timeout" and not self.retry_refused):
                break
            if status != "timeout":  # refused or reset early: WeChat's next try still comes on its clock
                time.sleep(max(0.0, self.wait_s - (time.perf_counter() - try_started)))
        if seen.error_shown and len(seen.statuses) == self.tries:
            seen.timeline.append(Sighting(time.perf_counter() - started, "WeChat shows", WECHAT_ERROR))
        refused = seen.statuses[-1] not in ("reply", "success", "timeout")
        if self.sandbox_url and not (refused and not self.retry_refused):  # a refused push is never answered
            self._collect(openid, seen, started, earlier, xml)
        seen.elapsed = time.perf_counter() - started
        return seen

    def _try(self, target: str, body: bytes, seen: Seen, started: float) -> str:
        try_started = time.perf_counter()
        try:
            r = self.session.post(target, data=body, timeout=(self.wait_s, self.wait_s),
                                  headers={"Content-Type": "text/xml"})
        except requests.Timeout:
            return "timeout"
        except requests.RequestException as exc:
            seen.error = type(exc).__name__
            return "error"
        if time.perf_counter() - try_started > self.wait_s:  # a socket timer that fired late: WeChat's does not
            return "timeout"
        if r.status_code != 200:
            seen.refused = Reply(r.status_code, r.text)
            return f"HTTP {r.status_code}"
        reply = self.envelope.unwrap(r.status_code, r.text)
        if reply.is_success:
            return "success"
        seen.passive.append(reply)
        seen.answered_s = time.perf_counter() - started
        seen.timeline.append(Sighting(seen.answered_s, "passive", reply_text(reply)))
        return "reply"

    def _collect(self, openid: str, seen: Seen, started: float, earlier: int = 0, xml: str = "") -> None:
        deadline = time.perf_counter() + (0.0 if seen.passive else self.cs_wait_s)
        settle_until: float | None = time.perf_counter() + self.settle_s if seen.passive else None
        while True:
            known = len(seen.customer_service)
            seen.customer_service = self.customer_service_messages(openid)[earlier:]
            now = time.perf_counter()
            seen.timeline += [Sighting(now - started, "app message" if "agentid" in m else "customer service",
                                       cs_text(m)) for m in seen.customer_service[known:]]
            if seen.customer_service and settle_until is None:
                if seen.answered_s is None:
                    seen.answered_s = now - started
                settle_until = now + self.settle_s
            settled = settle_until is None or now >= settle_until
            seen.owing = owed(self.store, xml, customer_service=len(seen.customer_service),
                              passive=bool(seen.passive)) if self.store is not None else None
            if seen.owing is not None:  # the bot's store tells: look while it owes something, never longer
                if seen.owing.waiting is None and settled:
                    return
                if seen.owing.waiting is not None and now - started >= self.max_wait_s:
                    seen.gave_up = True
                    return
            elif (settle_until is not None and now >= settle_until) or (settle_until is None and now >= deadline):
                return
            time.sleep(self.poll_s)

    def customer_service_messages(self, openid: str) -> list[dict[str, Any]]:
        """What the sandbox recorded on ``message/custom/send`` for ``openid``, in order."""
        r = self.session.get(f"{self.sandbox_url}/sandbox/messages", timeout=5)
        r.raise_for_status()
        return [m for m in r.json() if m.get("touser") == openid]

    # -- shortcuts ---------------------------------------------------------------------------------
    def text(self, content: str, **kw: Any) -> Seen:
        return self.send(messages.text(content, **{**self.sender, **kw}))

    def voice(self, media_id: str, **kw: Any) -> Seen:
        return self.send(messages.voice(media_id, **{**self.sender, **kw}))
