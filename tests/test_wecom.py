"""WeCom (企业微信) self-built apps: the callback against WeCom's own crypto samples and wechatpy's WeCom crypto,
every documented push routed by its wire name, and the app's API (gettoken, message/send, media) against the
sandbox's WeCom, with its errors typed for delivery."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import xmltodict
from wechatpy.enterprise.crypto import WeChatCrypto

from bot import Context, Router
from bot.config import Config, config_from_dict
from bot.runtime import build_webhook, build_webhooks
from bot.sandbox import Sandbox
from bot.testing import BotClient
from bot.testing.client import Envelope
from bot.voice.tones import make_tone
from bot.wechat.errors import (
    MediaFormatError,
    RateLimitedError,
    RecipientError,
    TokenUnavailableError,
    UnsupportedError,
    WeChatAPIError,
)

FIXTURES = Path(__file__).parent / "fixtures" / "wecom"
SAMPLE = json.loads((FIXTURES / "official_crypto_sample.json").read_text(encoding="utf-8"))
KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def wecom_config(*, corp_id: str = "wwcorp", agent_id: int = 1, token: str = "wecom-token", aes_key: str = KEY,
                 api: str = "http://127.0.0.1:9/wecom", **sections: Any) -> Config:
    raw: dict[str, Any] = {"storage": {"url": "memory://"}, "handlers": {"routers": []},
                           "accounts": {"staff": {"kind": "wecom_app", "corp_id": corp_id, "agent_id": agent_id,
                                                  "secret": "wecom-secret", "token": token, "encoding_aes_key": aes_key,
                                                  "api_base_url": api, "path": "/wecom"}}}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config_from_dict(raw).accounts[0]


seen: list[dict[str, Any]] = []
router = Router("wecom-test")


def _remember(ctx: Context, what: str) -> str:
    seen.append({"what": what, "type": ctx.type, "event": ctx.event, "account": ctx.account, "channel": ctx.channel,
                 "user": ctx.openid, "text": ctx.text})
    return f"{what}:{ctx.text or ctx.event or ctx.type}"


for _event in ("subscribe", "click", "location", "enter_agent"):
    router.event(_event)(lambda ctx, _e=_event: _remember(ctx, _e))
router.text(lambda ctx: _remember(ctx, "text"))
router.message("image")(lambda ctx: _remember(ctx, "image"))
router.fallback(lambda ctx: _remember(ctx, "fallback"))


# -- the callback: WeCom's own samples -------------------------------------------------------------------
def official() -> Any:
    config = wecom_config(corp_id=SAMPLE["corp_id"], agent_id=SAMPLE["push"]["agent_id"], token=SAMPLE["token"],
                          aes_key=SAMPLE["encoding_aes_key"], server={"replay_window_s": 0})
    return build_webhook(config, router)


def test_url_verification_answers_the_decrypted_echostr_of_wecoms_sample() -> None:
    verify = {k: v for k, v in SAMPLE["verify"].items() if k != "plaintext"}
    response = official().handle("GET", verify, b"")
    assert (response.status, response.body) == (200, SAMPLE["verify"]["plaintext"])
    for wrong in ({**verify, "msg_signature": "0" * 40}, {**verify, "echostr": verify["echostr"][:-4] + "AAA="}):
        assert official().handle("GET", wrong, b"").status == 403
    assert official().handle("GET", {k: v for k, v in verify.items() if k != "echostr"}, b"").status == 400


def test_wecoms_sample_push_is_decrypted_routed_and_answered_encrypted() -> None:
    push = SAMPLE["push"]
    seen.clear()
    response = official().handle("POST", {k: push[k] for k in ("msg_signature", "timestamp", "nonce")},
                                 push["body"].encode())
    assert response.status == 200
    assert seen == [{"what": "text", "type": "text", "event": None, "account": "staff", "channel": "wecom_app",
                     "user": push["from"], "text": push["content"]}]
    sealed = xmltodict.parse(response.body)["xml"]
    crypto = WeChatCrypto(SAMPLE["token"], SAMPLE["encoding_aes_key"], SAMPLE["corp_id"])  # wechatpy's, as WeCom
    reply = xmltodict.parse(crypto.decrypt_message(response.body, sealed["MsgSignature"], sealed["TimeStamp"],
                                                   sealed["Nonce"]))["xml"]
    assert (reply["Content"], reply["ToUserName"], reply["FromUserName"]) == ("text:hello", "mycreate",
                                                                            SAMPLE["corp_id"])


def test_a_push_signed_with_signature_instead_of_msg_signature_is_refused() -> None:
    push = SAMPLE["push"]
    query = {"signature": push["msg_signature"], "timestamp": push["timestamp"], "nonce": push["nonce"]}
    response = official().handle("POST", query, push["body"].encode())
    assert (response.status, response.body) == (400, "missing signature parameters")


@pytest.mark.parametrize(("sample", "what", "event"), [
    ("text.xml", "text", None), ("image.xml", "image", None), ("voice.xml", "fallback", None),
    ("event_subscribe.xml", "subscribe", "subscribe"), ("event_click.xml", "click", "click"),
    ("event_location.xml", "location", "location"), ("event_enter_agent.xml", "enter_agent", "enter_agent")])
def test_every_documented_push_is_routed_by_its_wire_name(sample: str, what: str, event: str | None) -> None:
    config = wecom_config(server={"replay_window_s": 0})
    webhook = build_webhook(config, router)
    xml = (FIXTURES / sample).read_text(encoding="utf-8").replace("toUser", config.wechat.appid)
    crypto = WeChatCrypto(config.wechat.token, KEY, config.wechat.appid)  # WeCom's side: wechatpy's WeCom crypto
    nonce, timestamp = "1372623149", str(int(time.time()))
    sealed = xmltodict.parse(crypto.encrypt_message(xml, nonce, timestamp))["xml"]
    body = f"<xml><ToUserName><![CDATA[{config.wechat.appid}]]></ToUserName><AgentID>1</AgentID>" \
           f"<Encrypt><![CDATA[{sealed['Encrypt']}]]></Encrypt></xml>"
    seen.clear()
    response = webhook.handle("POST", {"msg_signature": sealed["MsgSignature"], "timestamp": timestamp,
                                       "nonce": nonce}, body.encode())
    assert response.status == 200
    assert seen and seen[0]["what"] == what and seen[0]["event"] == event and seen[0]["channel"] == "wecom_app"
    reply = xmltodict.parse(crypto.decrypt_message(response.body, *(xmltodict.parse(response.body)["xml"][k] for k in
                                                                    ("MsgSignature", "TimeStamp", "Nonce"))))["xml"]
    assert reply["ToUserName"] == xmltodict.parse(xml)["xml"]["FromUserName"]


def test_a_push_for_another_app_of_the_corp_is_refused() -> None:
    client = BotClient(build_webhook(wecom_config(agent_id=1000002), router))
    assert client.text("hi").status == 200
    other = Envelope(client.config.wechat.token, client.config.wechat.appid, KEY, wecom=True, agent_id=7)
    query, body = other.wrap(xmltodict.unparse({"xml": {**xmltodict.parse(
        (FIXTURES / "text.xml").read_text(encoding="utf-8"))["xml"], "AgentID": "7"}}))
    assert client.post_raw(query, body) == (403, "wrong AgentID")


def test_a_push_encrypted_for_another_corp_is_refused() -> None:
    client = BotClient(build_webhook(wecom_config(), router))
    stranger = Envelope(client.config.wechat.token, "wwstranger", KEY, wecom=True, agent_id=1)
    query, body = stranger.wrap((FIXTURES / "text.xml").read_text(encoding="utf-8"))
    assert client.post_raw(query, body) == (403, "wrong CorpID in the encrypted message")


# -- the app's API against the sandbox's WeCom -----------------------------------------------------------
@pytest.fixture(scope="module")
def sandbox() -> Any:
    with Sandbox(wecom_corp_id="wwcorp", wecom_secret="wecom-secret", wecom_agent_id=1000002) as sb:
        yield sb


@pytest.fixture
def client(sandbox: Sandbox) -> Any:
    sandbox.reset(settings=True)
    return build_webhook(wecom_config(agent_id=1000002, api=f"{sandbox.url}/wecom"), router).services.client


def test_message_send_carries_the_agentid_and_needs_no_window(client: Any, sandbox: Sandbox) -> None:
    assert client.message.send_text("zhangsan", "稍后的回答")["errcode"] == 0
    sent = sandbox.custom_messages()[-1]
    assert sent == {"touser": "zhangsan", "msgtype": "text", "agentid": 1000002, "text": {"content": "稍后的回答"}}
    assert [c["path"] for c in sandbox.calls()] == ["/wecom/cgi-bin/gettoken", "/wecom/cgi-bin/message/send"]


def test_message_send_errors_are_typed_for_delivery(client: Any, sandbox: Sandbox) -> None:
    with pytest.raises(RecipientError) as outside:  # final: no other way reaches this user
        sandbox.configure(wecom_users=["lisi"])
        client.message.send_text("zhangsan", "x")
    assert outside.value.final and outside.value.errcode == 81013
    sandbox.inject_fault("message/send", 0, body=json.dumps({"errcode": 0, "errmsg": "ok", "invaliduser": "ZhangSan"}))
    with pytest.raises(RecipientError):  # errcode 0, but WeCom lists the user (lowercased or not) in invaliduser
        client.message.send_text("zhangsan", "x")
    sandbox.configure(wecom_users=[], wecom_per_user_per_minute=2)
    client.message.send_text("wangwu", "1")
    client.message.send_text("wangwu", "2")
    with pytest.raises(RateLimitedError) as limited:  # a per-minute limit: retried a few times, then kept
        client.message.send_text("wangwu", "3")
    assert limited.value.retryable and not limited.value.final
    with pytest.raises(UnsupportedError):  # no customer-service typing on a WeCom app, and no call is made
        client.post("message/custom/typing", data={"touser": "wangwu", "command": "Typing"})
    with pytest.raises(UnsupportedError):
        client.voice.translate("你好")
    assert not any("custom" in c["path"] for c in sandbox.calls())


def test_a_text_over_2048_bytes_would_be_truncated_by_wecom(client: Any, sandbox: Sandbox) -> None:
    client.message.send_text("zhangsan", "长" * 1000)  # 3000 bytes: WeCom cuts it, so delivery must split first
    sent = sandbox.custom_messages()[-1]
    assert sent["truncated"] is True and len(sent["text"]["content"].encode()) <= 2048


def test_voice_media_upload_is_amr_only(client: Any, sandbox: Sandbox) -> None:
    uploaded = client.media.upload_voice(make_tone(1025.0, 1.0, fmt="amr"), "amr")
    assert not uploaded.permanent and sandbox.media_info(uploaded.media_id)["kind"] == "temporary"
    assert client.message.send_voice("zhangsan", uploaded.media_id)["errcode"] == 0
    with pytest.raises(MediaFormatError):
        client.media.upload_voice(make_tone(1025.0, 1.0, fmt="mp3"), "mp3")
    with pytest.raises(WeChatAPIError) as unknown:
        client.message.send_voice("zhangsan", "no-such-media")
    assert unknown.value.errcode == 40007


def test_a_wrong_secret_is_a_clear_token_error(sandbox: Sandbox) -> None:
    config = wecom_config(agent_id=1000002, api=f"{sandbox.url}/wecom")
    wrong = build_webhook(dataclass_replace(config, appsecret="not-it"), router).services.client
    with pytest.raises(TokenUnavailableError, match="errcode 40001") as raised:
        wrong.message.send_text("zhangsan", "x")
    assert "not-it" not in str(raised.value)


def dataclass_replace(config: Config, **wechat: Any) -> Config:
    return config.replace(wechat=wechat)


def test_voice_on_a_wecom_app_goes_through_the_recognizer_chain(sandbox: Sandbox) -> None:
    """No recognition of any kind on WeCom: push and wechat do not apply; the sandbox's speech-to-text does."""
    sandbox.reset(settings=True)
    config = wecom_config(agent_id=1000002, api=f"{sandbox.url}/wecom",
                          voice={"recognizers": ["push", "wechat", "openai"], "openai": {"url": sandbox.url}})
    assert config.voice.recognizers == ["openai"]
    client = BotClient(build_webhooks(config.replace(accounts=()), router)[0])
    clip = sandbox.register_voice("打开客厅的灯")
    seen.clear()
    assert client.voice(clip["media_id"]).content == "fallback:打开客厅的灯"
    assert seen[0]["type"] == "voice" and seen[0]["channel"] == "wecom_app"
    assert [c["path"] for c in sandbox.calls()] == ["/wecom/cgi-bin/gettoken", "/wecom/cgi-bin/media/get",
                                                    "/v1/audio/transcriptions"]  # no WeChat recognition API
