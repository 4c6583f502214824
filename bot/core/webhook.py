"""The web-framework-free core: ``(method, query, body) -> Response``.

verify → decrypt → parse → deliver → encrypt. Adapters (Flask, the testing kit) only translate HTTP to and
from this; every refusal is decided here, logged once, and never a 500. How an answer leaves (at once, on a
retry, later) is the delivery's business: the webhook is given one when it is built (``bot.runtime``), and
without one it answers each message in the request (:meth:`Pipeline.answer`).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from bot.config import Config
from bot.core.answer import Part
from bot.core.envelope import Envelope, EnvelopeError, Inbound, NotAMessage, WeComEnvelope
from bot.core.pipeline import SUCCESS, Pipeline
from bot.core.router import Router
from bot.core.services import Services
from bot.core.session import Sessions
from bot.core.timing import WeChatTiming
from bot.ops.account import current as current_account
from bot.ops.account import serving
from bot.ops.clock import SYSTEM, Clock
from bot.ops.metrics import REQUESTS, labelled
from bot.voice.recognizers.base import Transcriber

log = logging.getLogger("bot.webhook")

__all__ = ["SUCCESS", "Delivery", "Response", "Webhook"]


@dataclass
class Response:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


class Delivery(Protocol):
    """What decides how each try of a message is answered (``bot.delivery.engine.Delivery``)."""

    def deliver(self, inbound: Inbound) -> Part | None:
        """The part of the answer this try carries as its passive reply, or None (``success``)."""


class Webhook:
    """One account's callback endpoint, independent of any web framework."""

    def __init__(self, config: Config, router: Router | None = None, *, transcriber: Transcriber | None = None,
                 services: Services | None = None, pipeline: Pipeline | None = None,
                 delivery: Delivery | None = None, clock: Clock = SYSTEM) -> None:
        self.config = config
        self.pipeline = pipeline or Pipeline(config, router, transcriber=transcriber, services=services, clock=clock)
        self.envelope = envelope_for(config, clock)
        self.timing = WeChatTiming(clock, skew_s=getattr(getattr(config, "reply", None), "clock_skew_s", 1.0))
        self.account = config.account.name
        self.delivery = delivery
        self.deliver: Callable[[Inbound], Part | None] = delivery.deliver if delivery else self._answer_here

    def _answer_here(self, inbound: Inbound) -> Part | None:
        """Without delivery: the answer in this request (its first part: there is no way for more)."""
        answer = self.pipeline.answer(inbound)
        return answer.parts[0] if answer.parts else None

    # what handlers and tests reach through the webhook: the pipeline's parts
    @property
    def router(self) -> Router:
        return self.pipeline.router

    @property
    def transcriber(self) -> Transcriber:
        return self.pipeline.transcriber

    @property
    def services(self) -> Services | None:
        return self.pipeline.services

    @property
    def sessions(self) -> Sessions:
        return self.pipeline.sessions

    def handle(self, method: str, query: Mapping[str, str], body: bytes, *, received_at: float | None = None
               ) -> Response:
        """One request. ``received_at``: when the server queued its connection for a thread (wall clock), if it
        says: a try's time runs from when WeChat sent it (bot/core/timing.py)."""
        if self.account:  # every log line and metric of this request names its account
            with serving(self.account):
                return self._handle(method, query, body, received_at)
        return self._handle(method, query, body, received_at)

    def _handle(self, method: str, query: Mapping[str, str], body: bytes, received_at: float | None) -> Response:
        try:
            if method == "GET":
                return Response(200, self.envelope.handshake(query))
            if method != "POST":
                raise EnvelopeError(405, "method not allowed", method)
            inbound = self.envelope.open(query, body)
        except EnvelopeError as exc:
            return self.reject(exc)
        except NotAMessage as exc:
            log.info("ignored authenticated XML: %s", exc)
            labelled(REQUESTS, "ignored", "").inc()
            return Response(200, SUCCESS)
        labelled(REQUESTS, "accepted", "").inc()
        inbound.waited_s, inbound.stamp_late_s = self.timing.judge(query.get("timestamp"), received_at)
        try:
            part = self.deliver(inbound)
        finally:  # delivery has said which try this was: only a first try's timestamp is its own sending
            self.timing.observe(inbound.waited_s, inbound.stamp_late_s, inbound.attempt)
        if part is None:
            return Response(200, SUCCESS)
        reply_xml = self.envelope.render(inbound, part)
        return Response(200, self.envelope.seal(inbound, reply_xml), "application/xml; charset=utf-8")

    def reject(self, exc: EnvelopeError) -> Response:
        """Refuse a request with one log line (adapters use it for what they refuse themselves)."""
        if self.account and not current_account():
            with serving(self.account):
                return self.reject(exc)
        log.warning("rejected request: %s status=%s", exc, exc.status)
        labelled(REQUESTS, "rejected", exc.reason).inc()
        return Response(exc.status, exc.reason)


def envelope_for(config: Config, clock: Clock = SYSTEM) -> Envelope:
    """The envelope of the config's account: a WeCom app's or an Official Account's."""
    if config.account.kind == "wecom_app":
        return WeComEnvelope(config.wechat, config.server, agent_id=config.account.agent_id, clock=clock)
    return Envelope(config.wechat, config.server, clock=clock)
