"""The envelope, in-process through ``Webhook.handle``: real wechatpy crypto, real samples, every refusal.

Each bad input must get the right 4xx (or ``success`` for well-formed XML that is not a message), exactly
one log line, and never reach a handler.
"""
from __future__ import annotations

import logging
import random
import time
from types import SimpleNamespace

import pytest
import xmltodict
from conftest import AES_KEY, FIXTURES
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import check_signature

from bot.config import config_from_dict
from bot.core.envelope import Envelope as ServerEnvelope
from bot.core.envelope import EnvelopeError, NotAMessage, sign
from bot.core.router import Router
from bot.core.webhook import Webhook
from bot.testing import BotClient, Envelope, messages, test_config
from bot.testing.clock import FakeClock

ECHO = ["handlers.echo:router"]
WELCOME = "欢迎关注！发一段语音或文字试试。"


def sample(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


@pytest.fixture
def echo_webhook() -> Webhook:
    return Webhook(test_config(handlers={"routers": ECHO}))


# -- every plaintext sample, signed and posted ----------------------------------------------------
PLAINTEXT_SAMPLES = {
    "text_wechatpy.xml": ("text", "this is a test"),
    "voice_with_recognition_werobot.xml": ("text", "Meow~"),
    "voice_with_recognition_official_legacy_doc.xml": ("text", "腾讯微信团队"),
    "voice_no_recognition_wechatpy.xml": ("not_understood", None),
    "voice_current_official_doc_mediaid16k.xml": ("not_understood", None),
    "voice_real_empty_recognition_community_2023.xml": ("not_understood", None),
    "event_subscribe_wechatpy.xml": ("text", WELCOME),
    "event_subscribe_qrscene_wechatpy.xml": ("text", WELCOME),
}


def test_every_fixture_is_covered() -> None:
    encrypted = {"encrypted_envelope_compat_official_sample.xml", "encrypted_envelope_safe_official_sample.xml"}
    assert {p.name for p in FIXTURES.glob("*.xml")} == set(PLAINTEXT_SAMPLES) | encrypted


@pytest.mark.parametrize("mode", ["plaintext", "compatible", "safe"])
@pytest.mark.parametrize("name", sorted(PLAINTEXT_SAMPLES))
def test_sample_gets_expected_answer(echo_webhook: Webhook, name: str, mode: str) -> None:
    client = BotClient(echo_webhook, mode=mode)
    reply = client.send(sample(name))
    kind, expected = PLAINTEXT_SAMPLES[name]
    if kind == "not_understood":
        expected = echo_webhook.config.voice.not_understood
    assert reply.status == 200
    assert reply.type == "text"
    assert reply.content == expected
    source = xmltodict.parse(sample(name))["xml"]
    # addressed back to the sender, from the account
    assert reply.fields["ToUserName"] == source["FromUserName"].strip()
    assert reply.fields["FromUserName"] == source["ToUserName"].strip()


def test_qrscene_subscription_reaches_subscribe_handler_with_scene() -> None:
    seen = []
    router = Router("welcome")

    @router.event("subscribe")
    def welcome(ctx):
        seen.append((ctx.event, getattr(ctx.message, "scene_id", None), getattr(ctx.message, "ticket", None)))
        return "hi"

    client = BotClient(Webhook(test_config(encrypted=False), router))
    assert client.send(sample("event_subscribe_qrscene_wechatpy.xml")).content == "hi"
    assert client.send(sample("event_subscribe_wechatpy.xml")).content == "hi"
    assert seen[0] == ("subscribe", "123123", "TICKET")  # ctx.event is the wire's Event; wechatpy's scene stays
    assert seen[1][0] == "subscribe"


def test_voice_push_fields_reach_the_handler() -> None:
    """MediaId16K is not exposed by wechatpy; it must be in ``ctx.message._data`` (and the Inbound data)."""
    seen = []
    router = Router("v")

    @router.voice
    def voice(ctx):
        seen.append(ctx)
        return "ok"

    client = BotClient(Webhook(test_config(encrypted=False), router))
    assert client.send(sample("voice_current_official_doc_mediaid16k.xml")).content == "ok"
    ctx = seen[0]
    assert ctx.message._data["MediaId16K"] == "media_id_16k"
    assert ctx.message.media_id == "media_id"
    assert ctx.msg_id == "1234567890123456"
    assert ctx.text is None


# -- the official encrypted sample ------------------------------------------------------------------
def official_webhook(official: SimpleNamespace, router: Router | None = None) -> Webhook:
    cfg = config_from_dict({"wechat": {"appid": official.appid, "appsecret": "s", "token": official.token,
                                       "encoding_aes_key": official.aes_key},
                            "handlers": {"routers": ECHO}, "storage": {"url": "memory://"}})
    return Webhook(cfg, router, clock=FakeClock(official.timestamp + 3.0))


@pytest.mark.parametrize("body", ["compatible", "safe"])
def test_official_encrypted_sample(official: SimpleNamespace, body: str) -> None:
    response = official_webhook(official).handle("POST", official.query, getattr(official, body))
    assert response.status == 200
    assert response.content_type.startswith("application/xml")
    sealed = xmltodict.parse(response.body)["xml"]
    assert set(sealed) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}  # no plaintext leaks out
    assert official.content not in response.body
    assert sealed["Nonce"] == official.nonce
    assert sealed["TimeStamp"] == str(official.timestamp + 3)
    reply = Envelope(official.token, official.appid, official.aes_key, mode="safe").unwrap(200, response.body)
    assert reply.content == official.content
    assert reply.fields["ToUserName"] == official.openid
    assert reply.fields["FromUserName"] == official.account
    # and independently of the testing kit, with wechatpy alone
    plain = WeChatCrypto(official.token, official.aes_key, official.appid).decrypt_message(
        response.body, sealed["MsgSignature"], sealed["TimeStamp"], sealed["Nonce"])
    assert f"<Content><![CDATA[{official.content}]]></Content>" in plain


def test_official_sample_context(official: SimpleNamespace) -> None:
    seen = []
    router = Router("r")

    @router.text
    def text(ctx):
        seen.append(ctx)
        return None  # nobody answers: success, still encrypted request

    response = official_webhook(official, router).handle("POST", official.query, official.safe)
    assert (response.status, response.body) == (200, "success")
    assert seen[0].text == official.content and seen[0].msg_id == official.msg_id
    assert seen[0].transcript_source == "text" and seen[0].openid == official.openid


def test_official_sample_with_replay_window_off(official: SimpleNamespace) -> None:
    cfg = config_from_dict({"wechat": {"appid": official.appid, "appsecret": "s", "token": official.token,
                                       "encoding_aes_key": official.aes_key},
                            "server": {"replay_window_s": 0}, "handlers": {"routers": ECHO},
                            "storage": {"url": "memory://"}})
    response = Webhook(cfg).handle("POST", official.query, official.safe)
    reply = Envelope(official.token, official.appid, official.aes_key, mode="safe").unwrap(200, response.body)
    assert reply.content == official.content


def test_official_sample_is_stale_today(official: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    """With the real clock the 2014 timestamp is a replay: refused, even with a valid msg_signature."""
    cfg = config_from_dict({"wechat": {"appid": official.appid, "appsecret": "s", "token": official.token,
                                       "encoding_aes_key": official.aes_key}, "storage": {"url": "memory://"},
                            "handlers": {"routers": ECHO}})
    caplog.set_level(logging.DEBUG)
    response = Webhook(cfg).handle("POST", official.query, official.safe)
    assert response.status == 403
    assert [r.getMessage() for r in caplog.records if "stale timestamp" in r.getMessage()]


def test_official_sample_envelope_level(official: SimpleNamespace) -> None:
    cfg = config_from_dict({"wechat": {"appid": official.appid, "appsecret": "s", "token": official.token,
                                       "encoding_aes_key": official.aes_key}})
    env = ServerEnvelope(cfg.wechat, cfg.server, clock=FakeClock(official.timestamp))
    inbound = env.open(official.query, official.compatible)
    assert inbound.encrypted and inbound.nonce == official.nonce
    assert inbound.message.content == official.content
    assert inbound.key == f"m:{official.msg_id}"
    # the query's `signature` is not what AES mode checks
    assert sign(official.token, str(official.timestamp), official.nonce) != official.msg_signature


# -- round trips in every mode ----------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["plaintext", "compatible", "safe"])
def test_round_trip(echo_webhook: Webhook, mode: str) -> None:
    client = BotClient(echo_webhook, mode=mode)
    query, body = client.envelope.wrap(messages.text("往返 round trip"))
    assert ("encrypt_type" in query) == (mode != "plaintext")
    status, answer = client.post_raw(query, body)
    assert status == 200
    assert ("<Encrypt>" in answer) == (mode != "plaintext")
    assert ("往返" in answer) == (mode == "plaintext")
    assert client.envelope.unwrap(status, answer).content == "往返 round trip"


def test_plaintext_only_account(recorder: SimpleNamespace) -> None:
    client = BotClient(Webhook(test_config(encrypted=False), recorder.router))
    assert client.envelope.mode == "plaintext"
    assert client.text("hi").content == "recorded"
    assert recorder.calls[0].text == "hi"


def test_event_key_dedupes_on_sender_and_time() -> None:
    cfg = test_config(encrypted=False)
    env = ServerEnvelope(cfg.wechat, cfg.server)
    query, body = Envelope.for_config(cfg).wrap(messages.event("subscribe", openid="oABC", create_time=1700000000))
    assert env.open(query, body).key == "e:oABC:1700000000"
    query, body = Envelope.for_config(cfg).wrap(messages.text("x", msg_id=42))
    assert env.open(query, body).key == "m:42"


# -- refusals ---------------------------------------------------------------------------------------
def _signed(token: str, body: bytes, timestamp: str | None = None, nonce: str = "n0nce") -> tuple[dict[str, str], bytes]:
    timestamp = timestamp or str(int(time.time()))
    return {"signature": sign(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}, body


def _encrypted_signed(token: str, encrypt: str, body: bytes) -> tuple[dict[str, str], bytes]:
    timestamp, nonce = str(int(time.time())), "n0nce"
    return {"signature": sign(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
            "encrypt_type": "aes", "msg_signature": sign(token, timestamp, nonce, encrypt)}, body


BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
                  b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
                  b'<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>'
                  b'<MsgType>text</MsgType><Content>&lol3;</Content><MsgId>1</MsgId></xml>')


def bad_requests(cfg) -> dict[str, tuple[int, dict[str, str], bytes]]:
    """name → (expected status, query, body), all against ``cfg`` (safe-capable, test token)."""
    token = cfg.wechat.token
    plain = Envelope.for_config(cfg, "plaintext")
    safe = Envelope.for_config(cfg, "safe")
    xml = messages.text("should never be routed")
    now = int(time.time())
    cases: dict[str, tuple[int, dict[str, str], bytes]] = {}

    q, b = plain.wrap(xml)
    cases["bad signature"] = (403, {**q, "signature": "0" * 40}, b)
    cases["signed with another token"] = (403, *Envelope("other-token").wrap(xml))
    q, b = safe.wrap(xml)
    cases["bad msg_signature"] = (403, {**q, "msg_signature": "f" * 40}, b)
    cases["signature passed as msg_signature"] = (403, {**q, "msg_signature": q["signature"]}, b)
    cases["aes without msg_signature"] = (400, {k: v for k, v in q.items() if k != "msg_signature"}, b)
    cases["stale timestamp"] = (403, *plain.wrap(xml, timestamp=now - 3600))
    cases["future timestamp"] = (403, *plain.wrap(xml, timestamp=now + 3600))
    cases["stale timestamp, safe mode"] = (403, *safe.wrap(xml, timestamp=now - 3600))
    cases["non-integer timestamp"] = (400, *_signed(token, xml.encode(), timestamp="yesterday"))
    q, b = plain.wrap(xml)
    cases["no query at all"] = (400, {}, b)
    cases["missing nonce"] = (400, {k: v for k, v in q.items() if k != "nonce"}, b)
    cases["missing timestamp"] = (400, {k: v for k, v in q.items() if k != "timestamp"}, b)
    cases["missing signature"] = (400, {k: v for k, v in q.items() if k != "signature"}, b)
    cases["oversized body"] = (413, q, b"<xml>" + b"x" * cfg.server.max_body_bytes + b"</xml>")
    cases["empty body"] = (400, q, b"")
    cases["whitespace body"] = (400, q, b"  \n ")
    cases["malformed XML"] = (400, *_signed(token, b"<xml><MsgType>text</MsgType><Content>unclosed</xml>"))
    cases["not XML at all"] = (400, *_signed(token, b"hello there"))
    cases["billion laughs"] = (400, *_signed(token, BILLION_LAUGHS))
    cases["external entity"] = (400, *_signed(token, b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM '
                                              b'"file:///etc/passwd">]><xml><MsgType>text</MsgType>'
                                              b'<Content>&e;</Content></xml>'))
    cases["non-UTF-8 body"] = (400, *_signed(token, xml.replace("should", "\u4f60").encode("gbk")))
    cases["wrong AppID inside the ciphertext"] = (
        403, *Envelope(token, "wxsomeoneelse0001", cfg.wechat.encoding_aes_key, mode="safe").wrap(xml))
    cases["encrypted with another key"] = (
        400, *Envelope(token, cfg.wechat.appid, "B" * 43, mode="safe").wrap(xml))
    cases["Encrypt missing"] = (400, {**q, "encrypt_type": "aes", "msg_signature": q["signature"]},
                                b"<xml><ToUserName><![CDATA[gh]]></ToUserName></xml>")
    cases["Encrypt is a nested element"] = (400, {**q, "encrypt_type": "aes", "msg_signature": q["signature"]},
                                            b"<xml><Encrypt><a>1</a></Encrypt></xml>")
    cases["Encrypt not base64, signed"] = (400, *_encrypted_signed(
        token, "not base64 !!!", b"<xml><Encrypt><![CDATA[not base64 !!!]]></Encrypt></xml>"))
    cases["billion laughs around Encrypt"] = (400, {**q, "encrypt_type": "aes", "msg_signature": q["signature"]},
                                              BILLION_LAUGHS.replace(b"<Content>", b"<Encrypt>")
                                              .replace(b"</Content>", b"</Encrypt>"))
    cases["encrypted non-UTF-8"] = (400, *safe.wrap(xml)[:1], b"\xff\xfe<xml/>")
    return cases


ALL_BAD = sorted(bad_requests(test_config()))


@pytest.mark.parametrize("name", ALL_BAD)
def test_bad_request_refused_once(name: str, recorder: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    cfg = test_config()
    status, query, body = bad_requests(cfg)[name]
    webhook = Webhook(cfg, recorder.router)
    caplog.set_level(logging.DEBUG)
    response = webhook.handle("POST", query, body)
    assert response.status == status, response.body
    assert recorder.calls == []
    assert len(caplog.records) == 1, [r.getMessage() for r in caplog.records]
    record = caplog.records[0]
    assert record.levelno == logging.WARNING and f"status={status}" in record.getMessage()
    assert record.getMessage().startswith(f"rejected request: {response.body}")


def test_encrypted_request_without_aes_key(recorder: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    cfg = test_config(encrypted=False)
    webhook = Webhook(cfg, recorder.router)
    query, body = Envelope(cfg.wechat.token, cfg.wechat.appid, AES_KEY, mode="safe").wrap(messages.text("x"))
    caplog.set_level(logging.DEBUG)
    response = webhook.handle("POST", query, body)
    assert response.status == 400 and "no encoding_aes_key" in response.body
    assert len(caplog.records) == 1 and recorder.calls == []


@pytest.mark.parametrize("xml, mode", [
    ("<xml><foo>1</foo></xml>", "plaintext"),
    ("<xml><foo>1</foo></xml>", "safe"),
    ("<xml></xml>", "plaintext"),
    ("<root><MsgType>text</MsgType></root>", "plaintext"),
    ("<xml><MsgType><a>1</a></MsgType></xml>", "plaintext"),
])
def test_authenticated_non_message_is_success(xml: str, mode: str, recorder: SimpleNamespace,
                                              caplog: pytest.LogCaptureFixture) -> None:
    cfg = test_config()
    webhook = Webhook(cfg, recorder.router)
    env = Envelope.for_config(cfg, mode)
    caplog.set_level(logging.DEBUG)
    if mode == "plaintext":
        query, body = env.wrap(messages.text("x"))
        body = xml.encode()
    else:
        assert env.crypto is not None
        ts, nonce = str(int(time.time())), "abc"
        encrypt = xmltodict.parse(env.crypto.encrypt_message(xml, nonce, ts))["xml"]["Encrypt"]
        query, body = _encrypted_signed(cfg.wechat.token, encrypt,
                                        f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>".encode())
    response = webhook.handle("POST", query, body)
    assert (response.status, response.body) == (200, "success")
    assert recorder.calls == []
    assert len(caplog.records) == 1 and "ignored" in caplog.records[0].getMessage()


def test_handshake(recorder: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    cfg = test_config()
    webhook = Webhook(cfg, recorder.router)
    env = Envelope.for_config(cfg)
    good = env.handshake_query("echo-123")
    assert check_signature(cfg.wechat.token, good["signature"], good["timestamp"], good["nonce"]) is None
    caplog.set_level(logging.DEBUG)
    assert webhook.handle("GET", good, b"") == webhook.handle("GET", good, b"")
    response = webhook.handle("GET", good, b"")
    assert (response.status, response.body) == (200, "echo-123")
    assert caplog.records == []

    refusals = {
        "bad signature": (403, {**good, "signature": "0" * 40}),
        "other token": (403, Envelope("nope").handshake_query("x")),
        "no echostr": (400, {k: v for k, v in good.items() if k != "echostr"}),
        "no params": (400, {"echostr": "x"}),
        "stale": (403, {**good, "timestamp": "1409735669",
                        "signature": sign(cfg.wechat.token, "1409735669", good["nonce"])}),
    }
    for name, (status, query) in refusals.items():
        caplog.clear()
        response = webhook.handle("GET", query, b"")
        assert response.status == status, name
        assert "echo-123" not in response.body and response.body != "x", name
        assert len(caplog.records) == 1, name
    assert recorder.calls == []


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "HEAD"])
def test_other_methods_405(method: str, recorder: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    cfg = test_config(encrypted=False)
    query, body = Envelope.for_config(cfg).wrap(messages.text("x"))
    caplog.set_level(logging.DEBUG)
    response = Webhook(cfg, recorder.router).handle(method, query, body)
    assert response.status == 405
    assert recorder.calls == []
    assert len(caplog.records) == 1 and "status=405" in caplog.records[0].getMessage()


def test_oversized_limit_is_configurable(recorder: SimpleNamespace) -> None:
    cfg = test_config(encrypted=False, server={"max_body_bytes": 400})
    client = BotClient(Webhook(cfg, recorder.router))
    assert client.text("short").content == "recorded"
    assert client.text("x" * 400).status == 413
    assert len(recorder.calls) == 1


def test_envelope_error_carries_status() -> None:
    exc = EnvelopeError(413, "body too large", "9 > 1 bytes")
    assert exc.status == 413 and exc.reason == "body too large" and "9 > 1" in str(exc)
    cfg = test_config(encrypted=False)
    env = ServerEnvelope(cfg.wechat, cfg.server)
    query, _ = Envelope.for_config(cfg).wrap(messages.text("x"))
    with pytest.raises(NotAMessage):
        env.open(query, b"<xml><foo>1</foo></xml>")


# -- fuzz: mutated bodies never crash -------------------------------------------------------------
def test_mutated_bodies_never_500(caplog: pytest.LogCaptureFixture) -> None:
    """In plaintext mode the signature covers only the query: the body is attacker-controlled XML."""
    cfg = test_config(encrypted=False, handlers={"routers": ["handlers.lights:router", *ECHO]})
    webhook = Webhook(cfg)
    env = Envelope.for_config(cfg)
    rng = random.Random(20240601)
    seeds = [messages.text("打开客厅的灯"), messages.voice(recognition="打开卧室的灯", media_id_16k="m16"),
             messages.event("subscribe", event_key="qrscene_1"), messages.image(),
             "<xml><MsgType>voice</MsgType><Recognition><a>1</a></Recognition></xml>",
             "<xml><MsgType>text</MsgType><Content><a>1</a></Content></xml>",
             "<xml><MsgType>event</MsgType><Event><x/></Event></xml>",
             "<xml><MsgType>text</MsgType><Content>a</Content><Content>b</Content></xml>"]
    alphabet = b"<>/![]&;#x\x00\xff\xe4 CDATAMsgTypetextvoice"
    statuses = set()
    for _ in range(600):
        data = bytearray(rng.choice(seeds).encode())
        for _ in range(rng.randint(0, 4)):
            op, pos = rng.randrange(3), rng.randrange(len(data) + 1)
            if op == 0 and data:
                del data[pos:pos + rng.randint(1, 8)]
            elif op == 1:
                data[pos:pos] = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))
            else:
                data[pos:pos] = data[rng.randrange(len(data) or 1):][:rng.randint(1, 30)]
        query, _ = env.wrap(messages.text("x"))
        response = webhook.handle("POST", query, bytes(data))
        statuses.add(response.status)
        assert response.status in (200, 400), (bytes(data), response)
        if response.status == 200 and response.body != "success":
            assert xmltodict.parse(response.body)["xml"]["MsgType"] in ("text", "image")
    assert statuses == {200, 400}
