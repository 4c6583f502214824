"""The testing kit users get: the ``wechat_client`` fixture, BotClient, Envelope, messages, test_config.

The kit is checked against wechatpy itself (an independent implementation of WeChat's side), so a kit that
signs or encrypts wrongly cannot pass by agreeing with a server that is wrong the same way.
"""
from __future__ import annotations

import pytest
import xmltodict
from conftest import Server
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.utils import check_signature

from bot import Router
from bot.core.webhook import Webhook
from bot.testing import BotClient, Envelope, Reply, messages, test_config
from bot.testing.config import TEST_AES_KEY

greeter = Router("greeter")
greeter.intent(r"^hello (?P<name>\w+)$")(lambda ctx, name: f"hi {name}")


# -- the three-line test the README promises --------------------------------------------------------
def test_three_lines(wechat_client):
    client = wechat_client(greeter)
    assert client.text("hello Ada").content == "hi Ada"


def test_fixture_is_encrypted_by_default(wechat_client) -> None:
    client = wechat_client(greeter)
    assert client.envelope.mode == "safe"
    query, body = client.envelope.wrap(messages.text("hello Bob"))
    assert query["encrypt_type"] == "aes" and b"hello Bob" not in body
    status, answer = client.post_raw(query, body)
    assert "hi Bob" not in answer and client.envelope.unwrap(status, answer).content == "hi Bob"


@pytest.mark.parametrize("mode", ["plaintext", "compatible", "safe"])
def test_fixture_all_modes(wechat_client, mode: str) -> None:
    assert wechat_client(greeter, mode=mode).text("hello Cy").content == "hi Cy"


class TestOverridingWechatConfig:
    """Users override the ``wechat_config`` fixture to test against their own settings."""

    @pytest.fixture
    def wechat_config(self):
        return test_config(encrypted=False, handlers={"apology": "custom apology"})

    def test_override_is_used(self, wechat_client) -> None:
        broken = Router()
        broken.text(lambda ctx: 1 / 0)
        client = wechat_client(broken)
        assert client.envelope.mode == "plaintext"
        assert client.text("x").content == "custom apology"


# -- BotClient ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["plaintext", "compatible", "safe"])
def test_botclient_in_process(mode: str) -> None:
    webhook = Webhook(test_config(), greeter)
    client = BotClient(webhook, mode=mode)
    assert client.webhook is webhook and client.config is webhook.config
    reply = client.text("hello Dee")
    assert isinstance(reply, Reply) and reply.status == 200 and reply.type == "text"
    assert reply.content == str(reply) == "hi Dee"
    assert reply.fields["ToUserName"] == messages.DEFAULT_OPENID
    assert client.handshake("e1") == (200, "e1")


@pytest.mark.parametrize("mode", ["plaintext", "compatible", "safe"])
def test_botclient_over_url(gunicorn_server: Server, gunicorn_config, mode: str) -> None:
    from bot import load_config
    config = load_config(gunicorn_config, env={})
    client = BotClient(config, url=gunicorn_server.url, mode=mode, openid="oURLUSER")
    assert client.webhook is None
    reply = client.text("over the wire")
    assert reply.content == "over the wire" and reply.fields["ToUserName"] == "oURLUSER"
    assert client.handshake("e2") == (200, "e2")
    assert client.text("打开客厅的灯", openid="oOTHER").fields["ToUserName"] == "oOTHER"


def test_botclient_needs_a_target() -> None:
    with pytest.raises(ValueError, match="Webhook"):
        BotClient(test_config())


def test_botclient_against_wrong_secrets_sees_the_refusal() -> None:
    webhook = Webhook(test_config(), greeter)
    stranger = BotClient(webhook)
    stranger.envelope = Envelope("not-the-token", "wxtestappid000001", TEST_AES_KEY, mode="safe")
    reply = stranger.text("hello Eve")
    assert reply.status == 403 and reply.content is None and not reply.is_success
    assert str(reply) == "HTTP 403: bad signature"


def test_reply_for_nothing_said() -> None:
    reply = BotClient(Webhook(test_config(), greeter)).text("no intent matches")
    assert reply.is_success and reply.content is None and reply.type is None
    assert str(reply) == "(no reply: the user sees nothing)"


# -- Envelope, checked with wechatpy ------------------------------------------------------------------
def test_envelope_plaintext_signature_is_wechats() -> None:
    env = Envelope("tok")
    query, body = env.wrap(messages.text("hi", openid="oA"), timestamp=1700000000, nonce="n1")
    assert query["timestamp"] == "1700000000" and query["nonce"] == "n1" and query["openid"] == "oA"
    check_signature("tok", query["signature"], "1700000000", "n1")
    with pytest.raises(InvalidSignatureException):
        check_signature("other", query["signature"], "1700000000", "n1")
    assert "encrypt_type" not in query and parse_message(body.decode()).content == "hi"


@pytest.mark.parametrize("mode", ["compatible", "safe"])
def test_envelope_encrypted_modes_decrypt_with_wechatpy(mode: str) -> None:
    env = Envelope("tok", "wxkit", TEST_AES_KEY, mode=mode)
    xml = messages.text("机密", openid="oB")
    query, body = env.wrap(xml)
    fields = xmltodict.parse(body)["xml"]
    if mode == "safe":
        assert set(fields) == {"ToUserName", "Encrypt"}
    else:
        assert fields["Content"] == "机密" and "Encrypt" in fields
    plain = WeChatCrypto("tok", TEST_AES_KEY, "wxkit").decrypt_message(
        body.decode(), query["msg_signature"], query["timestamp"], query["nonce"])
    assert parse_message(plain).content == "机密"
    check_signature("tok", query["signature"], query["timestamp"], query["nonce"])


def test_envelope_unwrap_verifies_encrypted_answers() -> None:
    env = Envelope("tok", "wxkit", TEST_AES_KEY, mode="safe")
    crypto = WeChatCrypto("tok", TEST_AES_KEY, "wxkit")
    sealed = crypto.encrypt_message(messages.text("answer"), "nonce1", "1700000000")
    assert env.unwrap(200, sealed).content == "answer"
    tampered = sealed.replace(xmltodict.parse(sealed)["xml"]["MsgSignature"], "0" * 40)
    with pytest.raises(InvalidSignatureException):
        env.unwrap(200, tampered)
    with pytest.raises(AssertionError, match="no AES key"):
        Envelope("tok").unwrap(200, sealed)
    assert env.unwrap(200, "success").is_success
    assert env.unwrap(400, "malformed XML").status == 400


def test_envelope_requires_key_for_encrypted_modes() -> None:
    with pytest.raises(ValueError, match="EncodingAESKey"):
        Envelope("tok", mode="safe")
    assert Envelope.for_config(test_config()).mode == "safe"
    assert Envelope.for_config(test_config(encrypted=False)).mode == "plaintext"
    assert Envelope.for_config(test_config(), "compatible").mode == "compatible"


def test_handshake_query_is_signed() -> None:
    query = Envelope("tok").handshake_query("ech0")
    assert query["echostr"] == "ech0"
    check_signature("tok", query["signature"], query["timestamp"], query["nonce"])


# -- messages -----------------------------------------------------------------------------------------
def test_messages_parse_as_wechat_would() -> None:
    text = parse_message(messages.text("hi", msg_id=7, openid="oC", account="gh_x", create_time=1700000001))
    assert (text.type, text.content, text.id, text.source, text.target) == ("text", "hi", 7, "oC", "gh_x")
    assert text.create_time.timestamp() == 1700000001

    voice = parse_message(messages.voice("m1", recognition="识别", media_id_16k="m16", fmt="speex"))
    assert (voice.type, voice.media_id, voice.format, voice.recognition) == ("voice", "m1", "speex", "识别")
    assert voice._data["MediaId16K"] == "m16"
    bare = parse_message(messages.voice())
    assert "Recognition" not in bare._data and "MediaId16K" not in bare._data
    assert "<Recognition><![CDATA[]]></Recognition>" in messages.voice(recognition="")

    event = parse_message(messages.event("subscribe", event_key="qrscene_9"))
    assert (event.type, event.event, event.scene_id) == ("event", "subscribe_scan", "9")
    image = parse_message(messages.image("http://p/1.jpg", "img1"))
    assert (image.type, image.image, image.media_id) == ("image", "http://p/1.jpg", "img1")


def test_messages_escape_cdata_end() -> None:
    tricky = "a]]>b<c>&d"
    assert parse_message(messages.text(tricky)).content == tricky
    webhook = Webhook(test_config(handlers={"routers": ["handlers.echo:router"]}))
    assert BotClient(webhook).text(tricky).content == tricky


def test_msg_ids_are_unique() -> None:
    ids = {messages.next_msg_id() for _ in range(1000)}
    assert len(ids) == 1000
    a, b = parse_message(messages.text("a")), parse_message(messages.text("b"))
    assert a.id != b.id


# -- test_config ----------------------------------------------------------------------------------------
def test_test_config() -> None:
    cfg = test_config()
    assert cfg.wechat.encoding_aes_key == TEST_AES_KEY and cfg.storage.url == "memory://"
    assert cfg.handlers.routers == []
    assert test_config(encrypted=False).wechat.encoding_aes_key == ""
    assert cfg.wechat.api_base_url.startswith("http://127.0.0.1:")  # the kit never calls the real WeChat API
    custom = test_config(server={"path": "/cb"}, wechat={"token": "t2"})
    assert custom.server.path == "/cb" and custom.wechat.token == "t2" and custom.wechat.appid == "wxtestappid000001"
    from bot import ConfigError
    with pytest.raises(ConfigError, match=r"\[server\] port"):
        test_config(server={"port": "x"})
