"""The web-framework-free core: ``(method, query, body) -> Response``.

verify → decrypt → parse → (dedupe/deliver) → route → render → encrypt. Adapters (Flask, the testing
kit) only translate HTTP to and from this; every refusal is decided here, logged once, and never a 500.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .config import Config
from .context import Context
from .envelope import Envelope, EnvelopeError, Inbound, NotAMessage
from .metrics import REQUESTS, labelled
from .normalize import for_matching
from .observe import Trace, add_step, emit, new_trace
from .recognizers.base import Transcriber
from .router import HandlerError, Router, combine
from .session import Sessions

log = logging.getLogger("bot.webhook")

SUCCESS = "success"
DEFAULT_BUDGET_S = 4.5  # seconds a handler may use when the config has no [reply] budget


@dataclass
class Response:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


class Webhook:
    """One account's callback endpoint, independent of any web framework."""

    def __init__(self, config: Config, router: Router | None = None, *, transcriber: Transcriber | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if router is None:
            from .loading import load_routers
            router = combine(load_routers(config))
        self.config = config
        self.router = router
        self.envelope = Envelope(config.wechat, config.server, clock=clock)
        if transcriber is None:
            from .recognizers import RecognizerChain
            from .recognizers.push import PushRecognizer
            transcriber = RecognizerChain([PushRecognizer()], download=_no_download)
        self.transcriber = transcriber
        self.deliver: Callable[[Inbound], str] = self.answer
        self.services: Any = None  # runtime.Services, set by runtime.build_webhook
        self.sessions = Sessions(lambda: getattr(self.services, "store", None), config.session.ttl_s)

    # -- HTTP-shaped entry point ---------------------------------------------------------------
    def handle(self, method: str, query: Mapping[str, str], body: bytes) -> Response:
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
        reply_xml = self.deliver(inbound)
        if reply_xml == SUCCESS or not reply_xml:
            return Response(200, SUCCESS)
        return Response(200, self.envelope.seal(inbound, reply_xml), "application/xml; charset=utf-8")

    def reject(self, exc: EnvelopeError) -> Response:
        """Refuse a request with one log line (adapters use it for what they refuse themselves)."""
        log.warning("rejected request: %s status=%s", exc, exc.status)
        labelled(REQUESTS, "rejected", exc.reason).inc()
        return Response(exc.status, exc.reason)

    # -- the job: text → router → reply XML ----------------------------------------------------
    def context(self, inbound: Inbound) -> Context:
        message = inbound.message
        ctx = Context(message=message, msg_id=inbound.msg_id, config=self.config, services=self.services)
        if message.type == "text":
            content = message.content
            ctx.text = ctx.original_text = content if isinstance(content, str) else None
            ctx.transcript_source = "text"
        elif message.type == "voice":
            transcript = self.transcriber(inbound.data, inbound.msg_id)
            ctx.text = ctx.original_text = transcript.text
            ctx.transcript_source = transcript.source
            ctx.data["transcript"] = transcript
        if ctx.text is not None:
            ctx.text = for_matching(ctx.text, self.config.matching)
        return ctx

    def answer(self, inbound: Inbound) -> str:
        """Answer in this request, with no delivery layer (or its store failed): the answer is passive."""
        xml, trace = self.process(inbound)
        emit(trace, "passive")
        return xml

    def process(self, inbound: Inbound) -> tuple[str, Trace]:
        """Route one message and render the answer (``success`` when nobody answers), with its trace (steps,
        recognizer, outcome) for the one ``bot.message`` line the caller emits once delivery is decided."""
        trace = new_trace(self.config, inbound)
        reply_config = getattr(self.config, "reply", None)
        deadline = time.monotonic() + (reply_config.budget_s if reply_config else DEFAULT_BUDGET_S)
        try:
            ctx = self.context(inbound)
        except Exception:  # a broken transcriber must not become a 500: treat it as "no transcript"
            log.exception("transcription failed msg_id=%s", inbound.msg_id)
            ctx = Context(message=inbound.message, msg_id=inbound.msg_id, config=self.config, services=self.services)
        ctx.deadline = deadline
        transcript = ctx.data.get("transcript")
        for step, seconds in getattr(transcript, "steps", ()):
            add_step(trace, step, seconds)
        trace["recognizer"] = getattr(transcript, "source", None) or ctx.transcript_source
        if transcript is not None and transcript.error:
            trace["recognition_error"] = transcript.error
        routing_started, outcome = time.perf_counter(), "answered"
        try:
            with self.sessions.bound(ctx):
                reply = self.router.dispatch(ctx)
            if isinstance(reply, str) and not reply:  # WeChat shows an error for an empty <Content>: say nothing
                reply = None
            if reply is None and ctx.type == "voice" and ctx.text is None:
                reply, outcome = self.config.voice.not_understood, "not_understood"
            xml = ctx.render(reply)
        except Exception as exc:  # a handler, middleware or a bad answer: the user gets the apology
            original = exc.original if isinstance(exc, HandlerError) else exc
            log.error("handler failed msg_id=%s: %s", ctx.msg_id, exc, exc_info=original)
            xml, outcome = ctx.render(self.config.handlers.apology), "handler_error"
        if xml is None:
            outcome = "no_answer"
        add_step(trace, "routing", time.perf_counter() - routing_started)
        trace["outcome"] = outcome
        return xml or SUCCESS, trace


def _no_download(media_id: str) -> bytes:
    from .recognizers import RecognitionError
    raise RecognitionError("no_api", "no WeChat API client configured")
