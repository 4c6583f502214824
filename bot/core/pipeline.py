"""One message's job: transcript → router → typed answer, with the trace of its steps.

:meth:`Pipeline.process` returns what the handler gave, and nothing else decides here: an
:class:`Answered` (the answer and its trace), or :class:`Streaming` (an answer still being written, with the
reader that drains it). Delivery decides which thread reads a stream and when; the webhook without delivery
reads it at once (:meth:`Pipeline.answer`). Nothing here knows about tries or deadlines beyond the handler's
budget.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from wechatpy import replies

from bot.config import Config
from bot.core.answer import Answer, Image, Part, Rendered, Text, Voice
from bot.core.context import BadReply, Context, Reply, SpeechReply
from bot.core.envelope import Inbound
from bot.core.loading import load_routers
from bot.core.normalize import for_matching
from bot.core.router import HandlerError, Router, combine
from bot.core.services import Services
from bot.core.session import Sessions
from bot.core.speech import Speaker
from bot.core.stream import Progress, StreamedText
from bot.core.text import clean_text
from bot.ops.clock import SYSTEM, Clock
from bot.ops.trace import Trace, add_recognition, emit, hash_openid, message_id, new_trace
from bot.voice.recognizers import RecognitionError, RecognizerChain
from bot.voice.recognizers.base import Transcriber
from bot.voice.recognizers.push import PushRecognizer

log = logging.getLogger("bot.webhook")

SUCCESS = "success"  # the body that tells WeChat "no answer, do not retry" (the user sees nothing)
DEFAULT_BUDGET_S = 4.5  # seconds a handler may use when the config has no [reply] budget


@dataclass(frozen=True)
class Answered:
    """The message's answer, complete."""

    answer: Answer
    trace: Trace


@dataclass(frozen=True)
class Streaming:
    """A handler returned an answer still being written. ``read(on_sentences)`` drains it (in the handler's
    session) and gives the :class:`Answered`; ``on_sentences`` gets the complete sentences written so far.
    ``shows_progress`` is False when the answer will be spoken: its sentences are not shown as text."""

    read: Callable[[Progress | None], Answered]
    trace: Trace
    shows_progress: bool = True


Processed = Answered | Streaming


class Pipeline:
    """Answers one message: builds the context (transcribing voice), routes it and makes the typed answer."""

    def __init__(self, config: Config, router: Router | None = None, *, transcriber: Transcriber | None = None,
                 services: Services | None = None, speaker: Speaker | None = None, clock: Clock = SYSTEM) -> None:
        if router is None:
            router = combine(load_routers(config))
        self.config, self.router, self.services, self.clock = config, router, services, clock
        self.transcriber = transcriber or RecognizerChain([PushRecognizer()], download=_no_download)
        self.sessions = Sessions(services.store if services else None, config.session.ttl_s,
                                 shown=lambda openid: hash_openid(config, openid))
        self.speaker = speaker or Speaker(config, services.client if services else None,
                                          services.store if services else None, clock)

    def context(self, inbound: Inbound, msg_id: str | None = None) -> Context:
        """``msg_id``: the message's id for logs (``message_id``), when the caller has it already."""
        message = inbound.message
        ctx = Context(message=message, msg_id=message_id(self.config, inbound) if msg_id is None else msg_id,
                      config=self.config, services=self.services, clock=self.clock)
        if message.type == "text":
            content = message.content
            ctx.text = ctx.original_text = content if isinstance(content, str) else None
            ctx.transcript_source = "text"
        elif message.type == "voice":
            if inbound.arrived is not None and isinstance(self.transcriber, RecognizerChain):
                transcript = self.transcriber(inbound.data, inbound.msg_id, inbound.arrived)
            else:
                transcript = self.transcriber(inbound.data, inbound.msg_id)
            ctx.text = ctx.original_text = transcript.text
            ctx.transcript_source = transcript.source
            ctx.data["transcript"] = transcript
        if ctx.text is not None:
            ctx.text = for_matching(ctx.text, self.config.matching)
        return ctx

    def answer(self, inbound: Inbound) -> Answer:
        """Answer in this request, with no delivery layer (or its store failed): the answer is passive."""
        processed = self.process(inbound)
        done = processed.read(None) if isinstance(processed, Streaming) else processed
        emit(done.trace, "passive")
        return done.answer

    def process(self, inbound: Inbound) -> Processed:
        """Route one message and make its answer (empty when nobody answers), with its trace (steps,
        recognizer, outcome) for the one ``bot.message`` line delivery emits once the answer left."""
        trace = new_trace(self.config, inbound)
        reply_config = getattr(self.config, "reply", None)
        deadline = self.clock.monotonic() + (reply_config.budget_s if reply_config else DEFAULT_BUDGET_S)
        try:
            ctx = self.context(inbound, trace.msg_id)
        except Exception:  # a broken transcriber must not become a 500: treat it as "no transcript"
            log.exception("transcription failed msg_id=%s", trace.msg_id)
            ctx = Context(message=inbound.message, msg_id=trace.msg_id, config=self.config, services=self.services,
                          clock=self.clock)
        ctx.deadline = deadline
        transcript = ctx.data.get("transcript")
        if transcript is not None:
            add_recognition(trace, transcript)
        trace.recognizer = trace.recognizer or ctx.transcript_source
        started = time.perf_counter()
        streamed: list[Streaming] = []

        def route() -> Reply:
            with self.sessions.bound(ctx) as session:
                reply = self.router.dispatch(ctx)
                if not isinstance(reply, StreamedText):
                    return reply
                still_open = session.detach()  # the handler may change the session as it streams

                def read(on_sentences: Progress | None, stream: StreamedText = reply) -> Answered:
                    def rest() -> Reply:
                        with still_open:
                            return stream.read(on_sentences)
                    return Answered(self._finish(ctx, trace, rest, started), trace)
                streamed.append(Streaming(read, trace, shows_progress=not self.speaker.spoken_only(ctx)))
                return None

        answer = self._finish(ctx, trace, route, started)
        return streamed[0] if streamed else Answered(answer, trace)

    def _finish(self, ctx: Context, trace: Trace, produce: Callable[[], Reply], started: float) -> Answer:
        """Run the handler (``produce``) and make its answer; failures become the apology. Records the routing
        step and the outcome in ``trace``."""
        outcome = "answered"
        try:
            reply = produce()
            if isinstance(reply, str) and not reply:  # WeChat shows an error for an empty <Content>: say nothing
                reply = None
            if reply is None and ctx.type == "voice" and ctx.text is None:
                reply, outcome = self.config.voice.not_understood, "not_understood"
            answer = self._answer(ctx, reply, trace)
        except Exception as exc:  # a handler, middleware or a bad answer: the user gets the apology
            original = exc.original if isinstance(exc, HandlerError) else exc
            wrong = isinstance(exc, BadReply)  # the answer was wrong, nothing raised: no traceback to show
            log.error("handler failed msg_id=%s: %s", ctx.msg_id, exc, exc_info=None if wrong else original)
            answer, outcome = as_answer(self.config.handlers.apology, ctx), "handler_error"
        if not answer:
            outcome = "no_answer"
        trace.steps.pop("routing", None)  # a streamed answer is finished twice: keep the last
        trace.add_step("routing", time.perf_counter() - started)
        trace.outcome = outcome
        return answer

    def _answer(self, ctx: Context, reply: Reply, trace: Trace) -> Answer:
        if reply is not None and self.speaker.wanted(ctx, reply):
            text = reply.text if isinstance(reply, SpeechReply) else str(reply)
            spoken = self.speaker.speak(ctx, text, trace)
            if spoken:
                return Answer(spoken)
            reply = text  # speech failed: the text answer (logged by the speaker)
        return as_answer(reply, ctx)


def as_answer(reply: Reply, ctx: Context) -> Answer:
    """A handler's reply as a typed answer (``None`` and blank text: nothing to say)."""
    if reply is None:
        return Answer()
    if isinstance(reply, str):
        content = clean_text(reply)
        return Answer.text(content) if content.strip() else Answer()
    if isinstance(reply, replies.BaseReply):
        return Answer((_part(reply),))
    raise BadReply(f"{ctx.answered_by or 'a handler'} returned {type(reply).__name__} {repr(reply)[:40]}; "
                   "expected str, a wechatpy reply or None")


def _part(reply: replies.BaseReply) -> Part:
    if isinstance(reply, replies.TextReply):
        # ctx.reply_text escaped "]]>" for wechatpy's CDATA: the envelope escapes when it renders
        return Text(clean_text(str(reply.content or "")).replace("]]]]><![CDATA[>", "]]>"))
    if isinstance(reply, replies.ImageReply):
        return Image(str(reply.media_id))
    if isinstance(reply, replies.VoiceReply):
        return Voice(str(reply.media_id))
    return Rendered(str(reply.type), reply.render())


def _no_download(media_id: str) -> bytes:
    raise RecognitionError("no_api", "no WeChat API client configured")
