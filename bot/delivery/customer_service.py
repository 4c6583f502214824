"""The customer-service API (``message/custom/send``, ``message/custom/typing``): late answers and typing.

Only verified accounts may call it; the others get 48001. With ``[reply] customer_service = "auto"`` the
first refusal is remembered in the store for the whole account (every worker and machine), logged once
with the fix, and late answers are kept for pickup from then on. What is remembered names the API base URL it
was learned from and when: another base URL (or another account: the key names the AppID) forgets it, each
start-up (and ``check``) asks WeChat again, and an answer that differs replaces it. 45015 (the user's 48 h window passed) and
45047 (the user's quota is used up) refuse one message, not the account: that answer goes to pickup too. A
busy or unreachable API is retried a bounded number of times. Sends are at most once: the caller marks the
record delivered before sending and only moves it back to pickup when WeChat refused.

A WeCom app (``kind = "wecom_app"``) sends the same parts by ``message/send``: it may always message its users, so
there is nothing to probe or remember and no typing indicator; a user outside the app's visible range (81013,
``invaliduser``) cannot be reached by any way (:data:`Sent.UNREACHABLE`), and its per-minute limits (45009) are
retried like a busy API.
"""
from __future__ import annotations

import enum
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from bot.config import ReplyConfig
from bot.core.answer import Image, Part, Text, Voice
from bot.ops.clock import SYSTEM, Clock
from bot.ops.metrics import TYPING, labelled
from bot.store import Store, StoreError
from bot.wechat.errors import (
    APIUnauthorizedError,
    BusyError,
    ContentTooLongError,
    CustomerServiceQuotaError,
    CustomerServiceWindowError,
    RecipientError,
    TransportError,
    WeChatAPIError,
)

log = logging.getLogger("bot.delivery")

FIX = ("the customer-service API needs a verified account; late answers will be picked up with the user's "
       "next message")
WECOM_FIX = ("check the account's agent_id and secret, and the app's trusted IPs (企业可信IP, errcode 60020); late "
             "answers are kept for pickup meanwhile")
UNREACHABLE = "the app cannot reach this user (outside its visible range, errcode 81013 or invaliduser)"


AVAILABLE = "available"  # the remembered answer of a probe; anything else remembered is the refusing errcode


@dataclass(frozen=True)
class Remembered:
    """What the store holds about this account's customer-service API: ``answer`` (:data:`AVAILABLE` or the
    errcode that refused it), learned at ``since`` (Unix time) from the API at ``api``."""

    answer: str
    since: float
    api: str

    @property
    def available(self) -> bool:
        return self.answer == AVAILABLE

    def describe(self) -> str:
        """``unavailable (errcode 48001), remembered since 2026-12-06 22:27:39``."""
        what = "available" if self.available else f"unavailable (errcode {self.answer})"
        return f"{what}, remembered since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.since))}"


class Sent(enum.Enum):
    SENT = "sent"
    NOTHING = "nothing"  # an empty answer: nothing to send, nothing to keep
    REFUSED = "refused"  # not this way: keep it for pickup (account, window, quota, type, or the API failing)
    UNREACHABLE = "unreachable"  # no way reaches this user (a WeCom app's user outside its visible range)


def cs_payload(part: Part | None) -> dict[str, Any] | None:
    """The customer-service form of one part of an answer: text, image and voice map one to one; None when
    there is nothing to send. Other types (news, music, video) keep only their ``msgtype`` and cannot go
    this way: their passive and customer-service formats differ, so this bot does not guess (they wait for
    pickup)."""
    if part is None:
        return None
    if isinstance(part, Text):
        return {"msgtype": "text", "content": part.content} if part.content.strip() else None
    if isinstance(part, (Image, Voice)):
        return {"msgtype": "image" if isinstance(part, Image) else "voice", "media_id": part.media_id}
    return {"msgtype": part.kind}


class CustomerService:
    """Whether this account may use the API, and sending through it."""

    def __init__(self, store: Store, client: Any, config: ReplyConfig, account: str, clock: Clock = SYSTEM, *,
                 retries: int = 2, backoff_s: float = 0.5, kind: str = "official_account") -> None:
        self.store, self.client, self.config, self.clock = store, client, config, clock
        self.wecom = kind == "wecom_app"  # message/send: always allowed, nothing to learn, no typing
        self.key = f"cap:customer_service:{account}"
        self.api = str(getattr(client, "base_url", "") or "")  # what is remembered holds only for this API
        self.retries, self.backoff_s = retries, backoff_s

    @property
    def learns(self) -> bool:
        """Whether this account's answer is learned and remembered (``customer_service = "auto"``)."""
        return self.config.customer_service == "auto" and self.config.mode != "passive" and not self.wecom

    def available(self, *, probe: bool = False) -> bool:
        """False when configured off, in passive mode, or (auto) after WeChat refused it for this account.
        ``probe``: when it is not known yet, ask WeChat now (a send to nobody, which sends nothing)."""
        setting = self.config.customer_service
        if setting is False or self.config.mode == "passive":
            return False
        if setting is True or self.wecom:
            return True
        try:
            known = self._read()[1]
        except StoreError:
            return True  # the send itself will tell
        if known is None and probe:
            return self.probe()
        return known is None or known.available

    def remembered(self) -> Remembered | None:
        """What is remembered for this account and API base URL (None: nothing, or not readable)."""
        try:
            return self._read()[1]
        except StoreError:
            return None

    def _read(self) -> tuple[str | None, Remembered | None]:
        """The stored value as read, and what it says when it was learned from this API base URL (a value
        learned elsewhere, or written by an older version without the URL, says nothing)."""
        raw = self.store.get(self.key)
        try:
            data = json.loads(raw) if raw else None
            known = Remembered(str(data["answer"]), float(data["since"]), str(data["api"])) \
                if isinstance(data, dict) else None
        except (ValueError, KeyError, TypeError):
            known = None
        return raw, (known if known is not None and known.api == self.api else None)

    def _remember(self, answer: str, previous: str | None) -> bool:
        """Replace the stored value read as ``previous`` with ``answer``, learned now; False if it moved."""
        value = json.dumps({"answer": answer, "since": self.clock.time(), "api": self.api})
        return self.store.compare_and_set(self.key, previous, value, ttl=self.config.customer_service_recheck_s)

    def ask(self) -> str | None:
        """Whether WeChat lets this account call ``message/custom/send``, without sending anything: a message
        to no user is refused with 48001 when the account may not use the API, with 40003 (invalid openid)
        when it may. :data:`AVAILABLE`, the refusing errcode, or None when WeChat could not tell (busy,
        unreachable)."""
        outcome = self._ask()
        return str(outcome.errcode) if isinstance(outcome, APIUnauthorizedError) else outcome

    def _ask(self) -> str | APIUnauthorizedError | None:
        try:
            self.client.message.send_text("", "probe")
        except APIUnauthorizedError as exc:
            return exc
        except (BusyError, TransportError):
            return None
        except WeChatAPIError:
            pass
        return AVAILABLE

    def probe(self) -> bool:
        """:meth:`ask`, and remember the answer (a refusal like :meth:`refused_for_account`, logged once)."""
        outcome = self._ask()
        if outcome is None:
            return True  # not known: try the real send
        if isinstance(outcome, APIUnauthorizedError):
            self.refused_for_account(outcome)
            return False
        try:
            raw, known = self._read()
            if known is None or not known.available:  # a success forgets a refusal
                self._remember(AVAILABLE, raw)
        except StoreError:
            pass
        return True

    def recheck(self, answer: str | None = None) -> str | None:
        """At start-up (and in ``check``): what is remembered for this account and since when, set against a
        fresh answer (``answer``, else :meth:`ask` now): one that differs replaces it, so a refusal learned on
        another account or API never outlives its evidence. None when nothing is remembered, else e.g.
        ``available now; unavailable (errcode 48001), remembered since 2026-12-06 22:27:39, is forgotten``."""
        if not self.learns:
            return None
        try:
            raw, known = self._read()
        except StoreError:
            return None
        if known is None:
            return None
        fresh = self.ask() if answer is None else answer
        if fresh is None:
            return f"{known.describe()} (WeChat could not tell now)"
        if fresh == known.answer:
            return f"{known.describe()} and confirmed now"
        try:
            self._remember(fresh, raw)
        except StoreError:
            pass
        now = "available" if fresh == AVAILABLE else f"unavailable (errcode {fresh})"
        return f"{now} now; {known.describe()}, is forgotten"

    def refused_for_account(self, exc: WeChatAPIError) -> None:
        """Remember, for the whole account, that WeChat refused the API (logged once per recheck period)."""
        if self.config.customer_service is True:
            log.error("customer-service API refused (errcode %s) although [reply] customer_service = true: %s",
                      exc.errcode, FIX)
            return
        try:
            previous, known = self._read()
            first = (known is None or known.available) and self._remember(str(exc.errcode), previous)
        except StoreError:
            first = True
        if first:
            log.warning("customer-service API unavailable for this account (errcode %s: %s): %s",
                        exc.errcode, exc.errmsg, FIX)

    def send(self, msg_id: str, openid: str, part: Part | None) -> Sent:
        """Send one part of an answer to ``openid`` (a WeCom app: to the UserID, by ``message/send``)."""
        payload = cs_payload(part)
        if payload is None:
            log.info("delivery msg_id=%s late result is empty: nothing to send", msg_id)
            return Sent.NOTHING
        kind = payload.get("msgtype")
        senders = {"text": lambda: self.client.message.send_text(openid, payload["content"]),
                   "image": lambda: self.client.message.send_image(openid, payload["media_id"]),
                   "voice": lambda: self.client.message.send_voice(openid, payload["media_id"])}
        if kind not in senders:
            log.info("delivery msg_id=%s a late %s reply cannot go through the customer-service API: kept for "
                     "pickup", msg_id, kind)
            return Sent.REFUSED
        for attempt in range(self.retries + 1):
            try:
                if not isinstance(senders[kind](), dict):  # wechatpy hands back a body that is not JSON as it is
                    raise TransportError("message/custom/send", None, "answer is not a JSON object")
            except APIUnauthorizedError as exc:
                if self.wecom:
                    log.error("delivery msg_id=%s message/send refused (errcode %s: %s): %s", msg_id, exc.errcode,
                              exc.errmsg, WECOM_FIX)
                else:
                    self.refused_for_account(exc)
                return Sent.REFUSED
            except (CustomerServiceWindowError, CustomerServiceQuotaError) as exc:
                log.warning("delivery msg_id=%s customer-service API refused errcode=%s (%s): kept for pickup",
                            msg_id, exc.errcode, "48 h window passed" if exc.errcode == 45015 else "quota used up")
                return Sent.REFUSED
            except ContentTooLongError as exc:
                log.error("delivery msg_id=%s customer-service API refused the length (%s): lower [reply] "
                          "max_text_bytes; kept for pickup", msg_id, exc)
                return Sent.REFUSED
            except RecipientError:
                return Sent.UNREACHABLE  # final: no retry, nothing kept; the caller logs the message's one line
            except WeChatAPIError as exc:
                if not exc.retryable:  # busy, unreachable, a WeCom app's per-minute limit: retried below
                    log.error("delivery msg_id=%s customer-service API refused (%s): kept for pickup", msg_id, exc)
                    return Sent.REFUSED
                if attempt == self.retries:
                    log.error("delivery msg_id=%s customer-service API failed %d times (%s): kept for pickup",
                              msg_id, attempt + 1, exc)
                    return Sent.REFUSED
                log.warning("delivery msg_id=%s customer-service send failed (%s); retrying", msg_id, exc)
                self.clock.sleep(self.backoff_s * 2 ** attempt)
            else:
                log.info("delivered msg_id=%s via=customer_service type=%s", msg_id, kind)
                return Sent.SENT
        return Sent.REFUSED

    def typing(self, msg_id: str, openid: str) -> None:
        """Show "对方正在输入" once; best effort: never retried, never fails the answer. A WeCom app has none."""
        if self.wecom or not self.available():
            return
        try:
            self.client.post("message/custom/typing", data={"touser": openid, "command": "Typing"})
        except APIUnauthorizedError as exc:
            self.refused_for_account(exc)
            labelled(TYPING, "refused").inc()
        except (WeChatAPIError, OSError) as exc:
            log.debug("delivery msg_id=%s typing indicator failed: %s", msg_id, exc)
            labelled(TYPING, "failed").inc()
        else:
            labelled(TYPING, "sent").inc()
