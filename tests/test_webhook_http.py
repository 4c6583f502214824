"""Over real HTTP: gunicorn (2 gthread workers) serving ``bot.wsgi:app``, and the Flask adapter mounted in
an existing app (Flask's test client, which goes through the real WSGI stack)."""
from __future__ import annotations

import logging
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from conftest import FIXTURES, Server
from flask import Flask

from bot import Router, VoiceBot, create_app, load_config, webhook_blueprint
from bot.core.webhook import Webhook
from bot.testing import BotClient, Envelope, messages, test_config
from bot.web.app import _BodyDeadlines

WELCOME = "欢迎关注！发一段语音或文字试试。"


@pytest.fixture(scope="module")
def config(gunicorn_config: Path):
    return load_config(gunicorn_config, env={})


# -- gunicorn -------------------------------------------------------------------------------------
def test_healthz(gunicorn_server: Server) -> None:
    r = requests.get(f"{gunicorn_server.base}/healthz", timeout=5)
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_handshake_like_curl(gunicorn_server: Server, config) -> None:
    query = Envelope.for_config(config).handshake_query("1234567890123456789")
    r = requests.get(gunicorn_server.url, params=query, timeout=5)
    assert (r.status_code, r.text) == (200, "1234567890123456789")
    r = requests.get(gunicorn_server.url, params={**query, "signature": "deadbeef"}, timeout=5)
    assert r.status_code == 403 and "1234567890123456789" not in r.text
    r = requests.get(gunicorn_server.url, timeout=5)
    assert r.status_code == 400


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods(gunicorn_server: Server, method: str) -> None:
    assert requests.request(method, gunicorn_server.url, data=b"<xml/>", timeout=5).status_code == 405


def test_unknown_path_is_404(gunicorn_server: Server) -> None:
    assert requests.get(f"{gunicorn_server.base}/nope", timeout=5).status_code == 404


@pytest.mark.parametrize("mode", ["plaintext", "compatible", "safe"])
def test_text_over_http(gunicorn_server: Server, config, mode: str) -> None:
    client = BotClient(config, url=gunicorn_server.url, mode=mode)
    reply = client.text("你好，HTTP")
    assert reply.status == 200 and reply.content == "你好，HTTP"
    assert client.text("打开客厅的灯").content == "已打开客厅的灯"
    assert client.voice(recognition="关闭卧室的灯").content == "已关闭卧室的灯"
    assert client.event("subscribe").content == WELCOME
    assert client.handshake("hs") == (200, "hs")


def test_encrypted_answer_is_encrypted_on_the_wire(gunicorn_server: Server, config) -> None:
    env = Envelope.for_config(config, "safe")
    query, body = env.wrap(messages.text("秘密 secret"))
    r = requests.post(gunicorn_server.url, params=query, data=body, timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/xml")
    assert "secret" not in r.text and "<Encrypt>" in r.text
    assert env.unwrap(r.status_code, r.text).content == "秘密 secret"


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.xml") if "encrypted" not in p.name))
def test_every_plaintext_sample_over_http(gunicorn_server: Server, config, name: str) -> None:
    # The server is shared and deduplicates: give each sample its own MsgId / CreateTime.
    xml = (FIXTURES / name).read_text(encoding="utf-8")
    xml = re.sub(r"<MsgId>\d+</MsgId>", f"<MsgId>{messages.next_msg_id()}</MsgId>", xml)
    xml = re.sub(r"<CreateTime>\d+</CreateTime>", f"<CreateTime>{messages.next_create_time()}</CreateTime>", xml)
    reply = BotClient(config, url=gunicorn_server.url, mode="plaintext").send(xml)
    assert reply.status == 200 and reply.type == "text"
    expected = {"text": "this is a test", "werobot": "Meow~", "legacy": "腾讯微信团队", "event": WELCOME}
    want = next((v for k, v in expected.items() if k in name), config.voice.not_understood)
    assert reply.content == want


def _bad(config) -> dict[str, tuple[int, dict[str, str], bytes]]:
    plain = Envelope.for_config(config, "plaintext")
    q, b = plain.wrap(messages.text("x"))
    safe_q, safe_b = Envelope.for_config(config, "safe").wrap(messages.text("x"))
    return {
        "bad signature": (403, {**q, "signature": "0" * 40}, b),
        "signature as msg_signature": (403, {**safe_q, "msg_signature": safe_q["signature"]}, safe_b),
        "stale": (403, *plain.wrap(messages.text("x"), timestamp=1409735669)),
        "malformed": (400, q, b"<xml><unclosed>"),
        "entity": (400, q, b'<!DOCTYPE x [<!ENTITY a "b">]><xml><MsgType>text</MsgType><Content>&a;</Content></xml>'),
        "non-utf8": (400, q, "<xml><Content>你好</Content></xml>".encode("gb18030")),
        "wrong appid": (403, *Envelope(config.wechat.token, "wxnotthisone", config.wechat.encoding_aes_key,
                                       mode="safe").wrap(messages.text("x"))),
        "no params": (400, {}, b),
        "not a message": (200, q, b"<xml><foo>1</foo></xml>"),
    }


def test_bad_requests_over_http(gunicorn_server: Server, config) -> None:
    for name, (status, query, body) in _bad(config).items():
        r = requests.post(gunicorn_server.url, params=query, data=body, timeout=5)
        assert r.status_code == status, (name, r.text)
        assert "recorded" not in r.text and "<xml>" not in r.text
        if status == 200:
            assert r.text == "success"
    assert "Exception on /wechat" not in gunicorn_server.log()  # Flask's line for an unhandled error (a 500)


def test_oversized_body_by_content_length_is_413_and_logged_once(gunicorn_server: Server, config) -> None:
    query, _ = Envelope.for_config(config, "plaintext").wrap(messages.text("x"))
    marker = "body too large: Content-Length"
    before = len(gunicorn_server.log_lines(marker))
    body = b"<xml>" + b"x" * (config.server.max_body_bytes + 10) + b"</xml>"
    r = requests.post(gunicorn_server.url, params=query, data=body, timeout=10)
    assert r.status_code == 413 and r.text == "body too large"
    lines = gunicorn_server.wait_for_log(marker, before + 1)
    assert len(lines) == before + 1
    assert "status=413" in lines[-1] and "WARNING bot.webhook" in lines[-1]
    # the connection is still usable afterwards, and nothing was routed
    assert requests.get(f"{gunicorn_server.base}/healthz", timeout=5).status_code == 200


def test_oversized_chunked_body_is_413(gunicorn_server: Server, config) -> None:
    """No Content-Length (chunked): the adapter reads at most max_body_bytes + 1 and the core refuses."""
    query, _ = Envelope.for_config(config, "plaintext").wrap(messages.text("x"))

    def chunks():
        yield b"<xml>"
        for _ in range(config.server.max_body_bytes // 4096 + 2):
            yield b"x" * 4096
        yield b"</xml>"
    r = requests.post(gunicorn_server.url, params=query, data=chunks(), timeout=10)
    assert r.status_code == 413


def test_chunked_message_is_answered(gunicorn_server: Server, config) -> None:
    env = Envelope.for_config(config, "safe")
    query, body = env.wrap(messages.text("chunked"))
    r = requests.post(gunicorn_server.url, params=query, data=iter([body[:50], body[50:]]), timeout=10)
    assert env.unwrap(r.status_code, r.text).content == "chunked"


def test_lying_content_length_does_not_hang(gunicorn_server: Server) -> None:
    """A client that announces more than it sends gets an answer or a closed connection, not a stuck worker."""
    host, port = gunicorn_server.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"POST /wechat?signature=x&timestamp=1&nonce=1 HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 100000000\r\n\r\n<xml>")
        s.settimeout(3)
        data = s.recv(200)
    assert data.startswith(b"HTTP/1.1 413")


def test_concurrent_requests(gunicorn_server: Server, config) -> None:
    client_modes = ["plaintext", "safe", "compatible"]

    def one(i: int) -> tuple[str | None, str]:
        client = BotClient(config, url=gunicorn_server.url, mode=client_modes[i % 3])
        return client.text(f"并发 {i}").content, f"并发 {i}"

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(one, range(36)))
    assert all(got == want for got, want in results), results


def test_official_sample_over_gunicorn(tmp_path: Path, gunicorn_factory, official: SimpleNamespace,
                                       write_config) -> None:
    cfg_path = write_config(wechat={"appid": official.appid, "token": official.token,
                                    "encoding_aes_key": official.aes_key},
                            server={"replay_window_s": 0})  # the sample is from 2014
    server = gunicorn_factory(cfg_path, workers=1, threads=2)
    env = Envelope(official.token, official.appid, official.aes_key, mode="safe")
    for body in (official.compatible, official.safe):
        r = requests.post(server.url, params=official.query, data=body, timeout=5)
        assert r.status_code == 200
        assert env.unwrap(r.status_code, r.text).content == official.content
    r = requests.post(server.url, params={**official.query, "msg_signature": "0" * 40}, data=official.safe, timeout=5)
    assert r.status_code == 403


# -- Flask: mounting into an existing app -----------------------------------------------------------
def existing_app() -> Flask:
    app = Flask("existing")

    @app.get("/")
    def index() -> str:
        return "my own site"

    @app.post("/api/items")
    def items() -> dict[str, int]:
        return {"created": 1}
    return app


def flask_send(client, path: str, env: Envelope, xml: str):
    query, body = env.wrap(xml)
    r = client.post(path, query_string=query, data=body, content_type="text/xml")
    return env.unwrap(r.status_code, r.get_data(as_text=True))


@pytest.mark.parametrize("mode", ["plaintext", "safe"])
def test_voicebot_extension(mode: str) -> None:
    config = test_config(handlers={"routers": ["handlers.echo:router"]})
    app = existing_app()
    bot = VoiceBot(app, config)
    assert isinstance(bot.webhook, Webhook) and app.extensions["wechat_voicebot"] is bot.webhook
    client = app.test_client()
    assert client.get("/").get_data(as_text=True) == "my own site"
    assert client.post("/api/items").get_json() == {"created": 1}
    env = Envelope.for_config(config, mode)
    assert flask_send(client, "/wechat", env, messages.text("mounted")).content == "mounted"
    r = client.get("/wechat", query_string=env.handshake_query("abc"))
    assert (r.status_code, r.get_data(as_text=True)) == (200, "abc")
    assert client.put("/wechat").status_code == 405
    assert client.get("/healthz").status_code == 200  # a mounted bot answers load balancers too (issue 12)


def test_init_app_from_app_config(write_config) -> None:
    router = Router("mine")
    router.text(lambda ctx: f"mine: {ctx.text}")
    app = existing_app()
    app.config["WECHAT_VOICEBOT_CONFIG"] = str(write_config(server={"path": "/wx/callback"}))
    bot = VoiceBot(router=router)
    webhook = bot.init_app(app)
    assert webhook.router is router
    env = Envelope.for_config(webhook.config)
    assert flask_send(app.test_client(), "/wx/callback", env, messages.text("hey")).content == "mine: hey"
    assert app.test_client().post("/wechat").status_code == 404


def test_init_app_without_config() -> None:
    with pytest.raises(RuntimeError, match="WECHAT_VOICEBOT_CONFIG"):
        VoiceBot().init_app(Flask("x"))


def test_blueprint_with_url_prefix_and_two_accounts(caplog: pytest.LogCaptureFixture) -> None:
    app = existing_app()
    echo_a, echo_b = Router("a"), Router("b")
    echo_a.text(lambda ctx: f"A:{ctx.text}")
    echo_b.text(lambda ctx: f"B:{ctx.text}")
    cfg_a = test_config()
    cfg_b = test_config(wechat={"appid": "wxsecondaccount01", "token": "other-token"})
    app.register_blueprint(webhook_blueprint(Webhook(cfg_a, echo_a), name="account_a"), url_prefix="/bots/a")
    app.register_blueprint(webhook_blueprint(Webhook(cfg_b, echo_b), name="account_b"), url_prefix="/bots/b")
    client = app.test_client()
    env_a, env_b = Envelope.for_config(cfg_a), Envelope.for_config(cfg_b)
    assert flask_send(client, "/bots/a/wechat", env_a, messages.text("1")).content == "A:1"
    assert flask_send(client, "/bots/b/wechat", env_b, messages.text("2")).content == "B:2"
    caplog.set_level(logging.DEBUG)
    assert flask_send(client, "/bots/b/wechat", env_a, messages.text("3")).status == 403  # A's token, B's URL
    assert len([r for r in caplog.records if r.name == "bot.webhook"]) == 1
    assert client.post("/wechat").status_code == 404
    assert client.get("/").status_code == 200


def test_flask_oversized_content_length(caplog: pytest.LogCaptureFixture, recorder: SimpleNamespace) -> None:
    config = test_config(encrypted=False, server={"max_body_bytes": 1000})
    app = create_app(config, recorder.router)
    query, _ = Envelope.for_config(config).wrap(messages.text("x"))
    caplog.set_level(logging.DEBUG)
    r = app.test_client().post("/wechat", query_string=query, data=b"x" * 1001)
    assert r.status_code == 413 and recorder.calls == []
    assert [r.getMessage() for r in caplog.records] == \
        ["rejected request: body too large: Content-Length 1001 > 1000 bytes status=413"]


def test_create_app_rejects_bad_router_spec(write_config) -> None:
    from bot import ConfigError
    with pytest.raises(ConfigError, match=r"\[handlers\] routers\[1\]"):
        create_app(write_config(handlers={"routers": ["handlers.echo:router", "handlers.echo:nope"]}))


def test_body_deadline_shuts_a_stalled_socket_and_the_checker_sleeps_when_idle() -> None:
    deadlines = _BodyDeadlines(tick=0.02, idle_s=0.2)
    stalled, peer = socket.socketpair()
    punctual, peer2 = socket.socketpair()
    try:
        late = deadlines.arm(stalled, 0.05)
        on_time = deadlines.arm(punctual, 5.0)
        assert deadlines.disarm(on_time)  # read its body in time
        stalled.settimeout(2)
        started = time.monotonic()
        assert stalled.recv(10) == b""  # the blocked read returns: the deadline shut the socket
        assert 0.04 <= time.monotonic() - started < 1.0
        assert not deadlines.disarm(late)  # the caller learns the deadline fired (→ 408)
        peer2.sendall(b"x")
        assert punctual.recv(1) == b"x"  # disarmed in time: untouched
        time.sleep(0.5)
        assert deadlines._thread is None  # nothing armed for idle_s: the checker thread stopped
        again = deadlines.arm(punctual, 5.0)  # and the next arm starts it again
        assert deadlines._thread is not None and deadlines.disarm(again)
    finally:
        for s in (stalled, peer, punctual, peer2):
            s.close()
