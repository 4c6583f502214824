"""One message's job: transcript → router → reply XML, with the trace of its steps.

The webhook runs it in the request when it has no delivery; the delivery engine runs it in the request, a
thread or an RQ worker, and decides how the answer leaves. Nothing here knows about tries or deadlines
beyond the handler's budget.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bot.config import Config
from bot.core.context import BadReply, Context, Reply, SpeechReply
from bot.core.envelope import Inbound
from bot.core.loading import load_routers
from bot.core.normalize import for_matching
from bot.core.router import HandlerError, Router, combine
from bot.core.services import Services
from bot.core.session import Sessions
from bot.core.speech import Speaker
from bot.core.stream import Progress, StreamedText
from bot.ops.trace import Trace, add_step, emit, hash_openid, message_id, new_trace
from bot.voice.recognizers import RecognitionError, RecognizerChain
from bot.voice.recognizers.base import Transcriber
from bot.voice.recognizers.push import PushRecognizer

log = logging.getLogger("bot.webhook")

SUCCESS = "success"  # the body that tells WeChat "no answer, do not retry" (the user sees nothing)
STREAMING = "<streaming>"  # process() handed a streamed answer to its offload: the answer comes from there
Offload = Callable[[Callable[[], "tuple[str, Trace]"]], None]
DEFAULT_BUDGET_S = 4.5  # seconds a handler may use when the config has no [reply] budget


class Pipeline:
    """Answers one message: builds the context (transcribing voice), routes it and renders the reply."""

    def __init__(self, config: Config, router: Router | None = None, *, transcriber: Transcriber | None = None,
                 services: Services | None = None, speaker: Speaker | None = None) -> None:
        if router is None:
            router = combine(load_routers(config))
        self.config, self.router, self.services = config, router, services
        self.transcriber = transcriber or RecognizerChain([PushRecognizer()], download=_no_download)
        self.sessions = Sessions(services.store if services else None, config.session.ttl_s,
                                 shown=lambda openid: hash_openid(config, openid))
        self.speaker = speaker or Speaker(config, services.client if services else None,
                                          services.store if services else None)

    def context(self, inbound: Inbound, msg_id: str | None = None) -> Context:
        """``msg_id``: the message's id for logs (``message_id``), when the caller has it already."""
        message = inbound.message
        ctx = Context(message=message, msg_id=message_id(self.config, inbound) if msg_id is None else msg_id,
                      config=self.config, services=self.services)
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

    def process(self, inbound: Inbound, on_sentences: Progress | None = None,
                offload: Offload | None = None) -> tuple[str, Trace]:
        """Route one message and render the answer (``success`` when nobody answers), with its trace (steps,
        recognizer, outcome) for the one ``bot.message`` line the caller emits once delivery is decided.

        ``on_sentences``: for a streamed answer, called with the complete sentences written so far.
        ``offload``: a streamed answer is read elsewhere — ``offload`` gets the rest of the work (reading the
        stream, saving the session, rendering), and this returns ``(STREAMING, trace)`` at once, so a request
        thread that routed the message is free to answer its try in time."""
        trace = new_trace(self.config, inbound)
        reply_config = getattr(self.config, "reply", None)
        deadline = time.monotonic() + (reply_config.budget_s if reply_config else DEFAULT_BUDGET_S)
        try:
            ctx = self.context(inbound, trace["msg_id"])
        except Exception:  # a broken transcriber must not become a 500: treat it as "no transcript"
            log.exception("transcription failed msg_id=%s", trace["msg_id"])
            ctx = Context(message=inbound.message, msg_id=trace["msg_id"], config=self.config, services=self.services)
        ctx.deadline = deadline
        transcript = ctx.data.get("transcript")
        for step, seconds in getattr(transcript, "steps", ()):
            add_step(trace, step, seconds)
        trace["recognizer"] = getattr(transcript, "source", None) or ctx.transcript_source
        if transcript is not None and transcript.error:
            trace["recognition_error"] = transcript.error
        routing_started = time.perf_counter()
        later: list[Callable[[], Reply]] = []

        def route() -> Reply:
            with self.sessions.bound(ctx) as session:
                reply = self.router.dispatch(ctx)
                if not isinstance(reply, StreamedText):
                    return reply
                if offload is None:  # read inside the session: the handler may change it as it streams
                    return reply.read(on_sentences)
                still_open = session.detach()

                def read_rest(stream: StreamedText = reply) -> Reply:
                    with still_open:
                        return stream.read(on_sentences)
                later.append(read_rest)
                return None

        xml = self._render(ctx, trace, route, routing_started)
        if later and offload is not None:
            offload(lambda: (self._render(ctx, trace, later[0], routing_started) or SUCCESS, trace))
            return STREAMING, trace
        return xml or SUCCESS, trace

    def _render(self, ctx: Context, trace: Trace, produce: Callable[[], Reply], started: float) -> str | None:
        """Run the handler (``produce``) and render its answer; failures become the apology. Records the
        routing step and the outcome in ``trace``."""
        outcome = "answered"
        try:
            reply = produce()
            if isinstance(reply, str) and not reply:  # WeChat shows an error for an empty <Content>: say nothing
                reply = None
            if reply is None and ctx.type == "voice" and ctx.text is None:
                reply, outcome = self.config.voice.not_understood, "not_understood"
            if reply is not None and self.speaker.wanted(ctx, reply):
                text = reply.text if isinstance(reply, SpeechReply) else str(reply)
                xml = self.speaker.speak(ctx, text, trace) or ctx.render(text)
            else:
                xml = ctx.render(reply)
        except Exception as exc:  # a handler, middleware or a bad answer: the user gets the apology
            original = exc.original if isinstance(exc, HandlerError) else exc
            wrong = isinstance(exc, BadReply)  # the answer was wrong, nothing raised: no traceback to show
            log.error("handler failed msg_id=%s: %s", ctx.msg_id, exc, exc_info=None if wrong else original)
            xml, outcome = ctx.render(self.config.handlers.apology), "handler_error"
        if xml is None:
            outcome = "no_answer"
        trace.setdefault("steps", {}).pop("routing", None)  # a streamed answer renders twice: keep the last
        add_step(trace, "routing", time.perf_counter() - started)
        trace["outcome"] = outcome
        return xml


def _no_download(media_id: str) -> bytes:
    raise RecognitionError("no_api", "no WeChat API client configured")
