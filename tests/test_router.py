"""The Router API, driven the way users test it: the ``wechat_client`` fixture (plugin) over real crypto."""
from __future__ import annotations

import logging
from typing import Any

import pytest
from wechatpy import replies

from bot import Context, Router
from bot.core.router import combine
from bot.core.webhook import Webhook
from bot.testing import BotClient, messages, test_config

APOLOGY = "抱歉，出了点问题，请稍后再试。"


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- matching ------------------------------------------------------------------------------------
def test_intent_named_groups_become_kwargs(wechat_client) -> None:
    router = Router()
    seen: list[dict[str, Any]] = []

    @router.intent(r"(?P<verb>buy|sell) (?P<qty>\d+) (?P<item>\w+)(?: (?P<note>please))?")
    def trade(ctx: Context, verb: str, qty: str, item: str, note: str | None) -> str:
        seen.append(dict(verb=verb, qty=qty, item=item, note=note))
        return f"{verb}:{int(qty) * 2}:{item}"

    client = wechat_client(router)
    assert client.text("I want to buy 3 apples").content == "buy:6:apples"
    assert seen == [dict(verb="buy", qty="3", item="apples", note=None)]
    assert client.text("nothing to see").is_success  # no match, no fallback: the user sees nothing
    assert len(seen) == 1


def test_intent_with_flags_and_compiled_pattern(wechat_client) -> None:
    import re
    router = Router()
    router.intent(r"hello", flags=re.IGNORECASE)(lambda ctx: "hi")
    router.intent(re.compile(r"^bye$"))(lambda ctx: "ciao")
    client = wechat_client(router)
    assert client.text("HeLLo there").content == "hi"
    assert client.text("bye").content == "ciao"
    assert client.text("goodbye").is_success


def test_keyword(wechat_client) -> None:
    router = Router()
    router.keyword("help", "帮助")(lambda ctx: "menu")
    router.keyword("stop", exact=True)(lambda ctx: "stopped")
    client = wechat_client(router)
    assert client.text("I need HELP now").content == "menu"
    assert client.text("求帮助").content == "menu"
    assert client.text("  STOP ").content == "stopped"
    assert client.text("don't stop").is_success
    with pytest.raises(ValueError):
        router.keyword()


def test_type_decorators_with_and_without_parentheses(wechat_client) -> None:
    router = Router()

    @router.text
    def on_text(ctx: Context) -> str:
        return f"text:{ctx.text}"

    @router.voice()
    def on_voice(ctx: Context) -> str:
        return f"voice:{ctx.text}:{ctx.transcript_source}"

    @router.message("image")
    def on_image(ctx: Context) -> str:
        return f"image:{ctx.message.media_id}"

    @router.event("CLICK")
    def on_click(ctx: Context) -> str:
        return f"click:{ctx.message.key}"

    # the decorators hand the function back unchanged
    assert on_text.__name__ == "on_text" and callable(on_voice)
    client = wechat_client(router)
    assert client.text("a").content == "text:a"
    assert client.voice(recognition="b").content == "voice:b:push"
    assert client.send(messages.image(media_id="pic1")).content == "image:pic1"
    assert client.event("CLICK", event_key="menu_1").content == "click:menu_1"
    assert client.event("VIEW", event_key="http://x").is_success


def test_text_and_transcript_share_one_intent(wechat_client) -> None:
    router = Router()
    sources: list[str | None] = []

    @router.intent(r"weather in (?P<city>\w+)")
    def weather(ctx: Context, city: str) -> str:
        sources.append(ctx.transcript_source)
        return f"sunny in {city}"

    client = wechat_client(router)
    assert client.text("weather in Paris").content == "sunny in Paris"
    assert client.voice(recognition="weather in Lyon").content == "sunny in Lyon"
    assert sources == ["text", "push"]


def test_voice_without_transcript_gets_not_understood(wechat_client) -> None:
    router = Router()
    router.intent(r".*")(lambda ctx: "matched")
    config = test_config(voice={"not_understood": "say again?"})
    client = wechat_client(router, config=config)
    assert client.voice(recognition="").content == "say again?"
    assert client.voice().content == "say again?"
    assert client.voice(recognition="   ").content == "say again?"


def test_voice_handler_sees_missing_transcript_first(wechat_client) -> None:
    """A voice handler may answer a voice message that has no transcript (it wins over not_understood)."""
    router = Router()
    router.voice(lambda ctx: "no text" if ctx.text is None else ctx.text)
    client = wechat_client(router)
    assert client.voice().content == "no text"


def test_event_subscribe_matches_qr_subscriptions(wechat_client) -> None:
    router = Router()
    router.event("subscribe")(lambda ctx: f"welcome {ctx.event}")
    router.event("subscribe_scan")(lambda ctx: "never: subscribe above answers first")
    router.event("scan")(lambda ctx: "scanned")
    client = wechat_client(router)
    assert client.event("subscribe").content == "welcome subscribe"
    assert client.event("subscribe", event_key="qrscene_42").content == "welcome subscribe"  # the wire's name
    assert client.event("SCAN", event_key="42").content == "scanned"
    assert client.event("unsubscribe").is_success


# -- ordering ------------------------------------------------------------------------------------
def test_order_across_routers_first_non_none_wins(wechat_client) -> None:
    calls: list[str] = []
    first, second, third = Router("first"), Router("second"), Router("third")

    @first.text
    def declines(ctx: Context) -> None:
        calls.append("first")
        return None

    @second.text
    def answers(ctx: Context) -> str:
        calls.append("second")
        return "from second"

    @third.text
    def never(ctx: Context) -> str:
        calls.append("third")
        return "from third"

    assert wechat_client(first, second, third).text("x").content == "from second"
    assert calls == ["first", "second"]
    calls.clear()
    assert wechat_client(third, second).text("x").content == "from third"
    assert calls == ["third"]


def test_fallthrough_within_router(wechat_client) -> None:
    router = Router()
    router.text(lambda ctx: None)
    router.intent("x")(lambda ctx: "second route")
    assert wechat_client(router).text("x").content == "second route"


def test_fallbacks_only_after_every_routers_regular_handlers(wechat_client) -> None:
    echo, lights = Router("echo"), Router("lights")
    echo.fallback(lambda ctx: f"echo {ctx.text}")
    lights.intent("lamp")(lambda ctx: "lamp on")
    lights.fallback(lambda ctx: "lights fallback")
    client = wechat_client(echo, lights)  # echo is first, yet its fallback must not hide the lamp intent
    assert client.text("lamp").content == "lamp on"
    assert client.text("other").content == "echo other"  # first router's fallback wins among fallbacks


def test_nested_routers(wechat_client) -> None:
    parent, child = Router("parent"), Router("child")
    child.intent("deep")(lambda ctx: "child answered")
    parent.include(child)
    parent.fallback(lambda ctx: "parent fallback")
    client = wechat_client(parent)
    assert client.text("deep").content == "child answered"
    assert client.text("shallow").content == "parent fallback"
    with pytest.raises(ValueError):
        parent.include(child)
    with pytest.raises(ValueError):
        parent.include(parent)
    assert [r.name for r in combine([parent]).walk()] == ["app", "parent", "child"]


# -- middleware ----------------------------------------------------------------------------------
def test_middleware_wraps_handlers(wechat_client) -> None:
    router = Router()
    trace: list[str] = []

    @router.middleware
    def around(call_next, ctx: Context):
        trace.append("before")
        ctx.session["user"] = "alice"
        answer = call_next(ctx)
        trace.append("after")
        return answer.upper() if isinstance(answer, str) else answer

    @router.intent("hi")
    def hi(ctx: Context) -> str:
        trace.append("handler")
        return f"hello {ctx.session['user']}"

    assert wechat_client(router).text("hi").content == "HELLO ALICE"
    assert trace == ["before", "handler", "after"]


def test_before_short_circuits(wechat_client) -> None:
    router = Router()
    handled: list[str] = []
    router.before(lambda ctx: "blocked" if "spam" in (ctx.text or "") else None)
    router.text(lambda ctx: handled.append(ctx.text) or "handled")
    client = wechat_client(router)
    assert client.text("buy spam").content == "blocked"
    assert handled == []
    assert client.text("hello").content == "handled"
    assert handled == ["hello"]


def test_after_replaces_answer(wechat_client) -> None:
    router = Router()
    router.text(lambda ctx: "plain")
    router.after(lambda ctx, reply: f"{reply}!" if reply else reply)
    assert wechat_client(router).text("x").content == "plain!"


def test_middleware_only_wraps_its_router(wechat_client) -> None:
    a, b = Router("a"), Router("b")
    a.after(lambda ctx, reply: f"a({reply})" if reply else reply)
    a.intent("one")(lambda ctx: "1")
    b.intent("two")(lambda ctx: "2")
    client = wechat_client(a, b)
    assert client.text("one").content == "a(1)"
    assert client.text("two").content == "2"


def test_raising_middleware_gets_apology_not_500(wechat_client, caplog: pytest.LogCaptureFixture) -> None:
    router = Router()
    router.before(lambda ctx: 1 / 0)
    router.text(lambda ctx: "unreachable")
    caplog.set_level(logging.INFO)
    client = wechat_client(router)
    reply = client.text("x", msg_id=777001)
    assert reply.status == 200 and reply.content == APOLOGY
    assert len(errors(caplog)) == 1 and "777001" in errors(caplog)[0].getMessage()


# -- errors --------------------------------------------------------------------------------------
def test_raising_handler_gets_configured_apology(wechat_client, caplog: pytest.LogCaptureFixture) -> None:
    router = Router("broken")

    @router.text
    def boom(ctx: Context) -> str:
        raise RuntimeError("kaboom")

    caplog.set_level(logging.INFO)
    client = wechat_client(router, config=test_config(handlers={"apology": "sorry, try later"}))
    reply = client.text("x", msg_id=123456789)
    assert reply.content == "sorry, try later"
    errs = errors(caplog)
    assert len(errs) == 1
    assert "123456789" in errs[0].getMessage() and "kaboom" in errs[0].getMessage()
    assert errs[0].exc_info is not None and errs[0].exc_info[0] is RuntimeError  # the traceback is kept


@pytest.mark.parametrize("mode", ["plaintext", "safe"])
def test_raising_handler_in_each_mode(wechat_client, mode: str) -> None:
    router = Router()
    router.text(lambda ctx: {}["missing"])
    assert wechat_client(router, mode=mode).text("x").content == APOLOGY


def test_error_handler_answers(wechat_client, caplog: pytest.LogCaptureFixture) -> None:
    router = Router()
    seen: list[Exception] = []

    @router.text
    def boom(ctx: Context) -> str:
        raise KeyError("room")

    @router.error
    def on_error(ctx: Context, exc: Exception) -> str:
        seen.append(exc)
        return f"handled {type(exc).__name__}"

    caplog.set_level(logging.INFO)
    assert wechat_client(router).text("x").content == "handled KeyError"
    assert isinstance(seen[0], KeyError)
    assert errors(caplog) == []  # the router dealt with it


def test_error_handler_declining_falls_back_to_parent_then_apology(wechat_client) -> None:
    parent, child = Router("parent"), Router("child")
    child.text(lambda ctx: 1 / 0)
    child.error(lambda ctx, exc: None)
    parent.include(child)
    parent.error(lambda ctx, exc: f"parent saw {type(exc).__name__}")
    assert wechat_client(parent).text("x").content == "parent saw ZeroDivisionError"

    lone = Router("lone")
    lone.text(lambda ctx: 1 / 0)
    lone.error(lambda ctx, exc: None)
    assert wechat_client(lone).text("x").content == APOLOGY


def test_error_handler_raising(wechat_client, caplog: pytest.LogCaptureFixture) -> None:
    router = Router("r")
    router.text(lambda ctx: 1 / 0)

    @router.error
    def broken(ctx: Context, exc: Exception) -> str:
        raise ValueError("error handler is broken too")

    @router.error
    def second(ctx: Context, exc: Exception) -> str:
        return "second error handler"

    caplog.set_level(logging.INFO)
    assert wechat_client(router).text("x", msg_id=99).content == "second error handler"
    errs = errors(caplog)
    assert len(errs) == 1 and "error handler" in errs[0].getMessage() and "99" in errs[0].getMessage()

    only_broken = Router("only")
    only_broken.text(lambda ctx: 1 / 0)
    only_broken.error(broken)
    caplog.clear()
    assert wechat_client(only_broken).text("x").content == APOLOGY
    assert len(errors(caplog)) == 2  # the broken error handler, then the handler failure


def test_error_in_matcher_is_a_handler_error(wechat_client) -> None:
    router = Router()
    router.add(lambda ctx: 1 / 0, lambda ctx: "never", "bad matcher")
    router.error(lambda ctx, exc: f"caught {type(exc).__name__}")
    assert wechat_client(router).text("x").content == "caught ZeroDivisionError"


# -- answers -------------------------------------------------------------------------------------
def test_handler_returns_wechatpy_reply(wechat_client) -> None:
    router = Router()
    router.intent("pic")(lambda ctx: ctx.reply_image("MEDIA123"))
    router.intent("voice")(lambda ctx: ctx.reply_voice("VOICE9"))
    router.intent("news")(lambda ctx: ctx.reply_articles([{"title": "T", "description": "D",
                                                            "image": "http://i", "url": "http://u"}]))
    router.intent("raw")(lambda ctx: replies.TextReply(message=ctx.message, content="built by hand"))
    client = wechat_client(router)
    image = client.text("pic")
    assert image.type == "image" and image.fields["Image"]["MediaId"] == "MEDIA123"
    assert image.content is None and str(image).startswith("[image]")
    assert client.text("voice").fields["Voice"]["MediaId"] == "VOICE9"
    news = client.text("news")
    assert news.type == "news" and news.fields["Articles"]["item"]["Title"] == "T"
    assert client.text("raw").content == "built by hand"


@pytest.mark.parametrize("bad", [42, b"bytes", ["a list"], {"a": "dict"}])
def test_handler_returning_wrong_type_gets_apology(wechat_client, caplog: pytest.LogCaptureFixture, bad) -> None:
    router = Router()
    router.text(lambda ctx: bad)
    caplog.set_level(logging.INFO)
    assert wechat_client(router).text("x", msg_id=5150).content == APOLOGY
    errs = errors(caplog)
    assert len(errs) == 1 and "5150" in errs[0].getMessage() and type(bad).__name__ in errs[0].getMessage()


@pytest.mark.parametrize("mode", ["plaintext", "safe"])
def test_answer_text_cannot_break_the_reply_xml(wechat_client, mode: str) -> None:
    """wechatpy writes text into CDATA unescaped; an echoed ``]]>`` must neither break nor inject XML."""
    router = Router()
    router.text(lambda ctx: ctx.text)
    evil = "x]]></Content><MsgType><![CDATA[image]]></MsgType><Content><![CDATA[y"
    reply = wechat_client(router, mode=mode).text(evil)
    assert reply.type == "text" and reply.content == evil


def test_empty_string_answer_means_success(wechat_client) -> None:
    router = Router()
    router.text(lambda ctx: "")
    reply = wechat_client(router).text("x")
    assert reply.is_success and reply.body == "success"


def test_dispatch_directly() -> None:
    """``Router.dispatch`` is usable without HTTP: the handler's raw answer comes back."""
    from wechatpy import parse_message
    router = Router()
    router.intent("(?P<n>\\d+)")(lambda ctx, n: int(n) + 1)  # any object: dispatch does not render
    ctx = Context(message=parse_message(messages.text("41")), text="41")
    assert router.dispatch(ctx) == 42
    assert repr(router) == "Router('router', 1 routes)"


def test_transcriber_crash_is_not_understood(caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("recognizer exploded")

    router = Router()
    router.intent(".")(lambda ctx: "matched")
    webhook = Webhook(test_config(encrypted=False), router, transcriber=broken)
    caplog.set_level(logging.INFO)
    client = BotClient(webhook)
    assert client.voice(recognition="hello", msg_id=31337).content == webhook.config.voice.not_understood
    assert client.text("typed still works").content == "matched"
    errs = errors(caplog)
    assert len(errs) == 1 and "31337" in errs[0].getMessage()


def test_root_middleware_runs_once_even_when_fallbacks_answer() -> None:
    seen: list[str] = []
    inner = Router("inner")
    inner.fallback(lambda ctx: "from fallback")
    inner.keyword("never-said")(lambda ctx: "no")
    root = combine([inner])
    root.before(lambda ctx: seen.append("before"))
    client = BotClient(Webhook(test_config(), root))
    assert client.text("hello").content == "from fallback"
    assert seen == ["before"]
