"""handlers.forward against a real local HTTP service that checks signatures with the README's own snippet."""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import REPO

from bot import ConfigError
from bot.core.webhook import Webhook
from bot.testing import BotClient, test_config
from handlers.forward import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

SECRET = "forward-test-secret"
ROUTERS = ["handlers.forward:router", "handlers.echo:router"]


def readme_verifier() -> Callable[..., bool]:
    """``verified`` exactly as README.md prints it: the service below trusts nothing else."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "def verified(" in b]
    assert len(blocks) == 1, "README.md should show one verification snippet"
    namespace: dict[str, Any] = {}
    exec(blocks[0], namespace)  # noqa: S102 - our own README
    return namespace["verified"]


class Service(ThreadingHTTPServer):
    """What a user's service does: verify, then answer by what the text asks for."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.verified = readme_verifier()
        self.secret = SECRET.encode()
        self.requests: list[dict[str, Any]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}/bot"


class Handler(BaseHTTPRequestHandler):
    server: Service

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if not self.server.verified(self.server.secret, self.headers, body):
            return self.answer(401, b'{"error": "bad signature"}')
        payload = json.loads(body)
        self.server.requests.append({"payload": payload, "headers": dict(self.headers)})
        text = payload["text"]
        if text == "slow":
            time.sleep(1.0)
        answers: dict[str, tuple[int, bytes]] = {
            "boom": (500, b"internal error"),
            "garbage": (200, b"<html>not json</html>"),
            "silent": (200, b'{"note": "nothing to say"}'),
            "list": (200, b'["a", "b"]'),
            "bad session": (200, b'{"reply": "x", "session": [1]}'),
            "big": (200, b'{"reply": "' + b"x" * 70_000 + b'"}'),
        }
        if text in answers:
            return self.answer(*answers[text])
        reply: dict[str, Any] = {"reply": f"remote: {text}"}
        if text == "count":
            reply["session"] = {"n": payload["session"].get("n", 0) + 1}
            reply["reply"] = f"count {reply['session']['n']}"
        self.answer(200, json.dumps(reply, ensure_ascii=False).encode())

    def answer(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the bot gave up waiting: that is the point
            pass


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    server = Service()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def bot(service: Service, **forward: Any) -> BotClient:
    cfg = test_config(handlers={"routers": ROUTERS},
                      forward={"url": service.url, "secret": SECRET, "timeout_s": 2.0, **forward})
    return BotClient(Webhook(cfg))


# -- the happy path ------------------------------------------------------------------------------------------
def test_forwards_signed_json_and_replies(service: Service) -> None:
    before = len(service.requests)
    assert bot(service).text("你好，世界！", msg_id=777).content == "remote: 你好，世界！"
    seen = service.requests[before:]
    assert len(seen) == 1
    assert seen[0]["payload"] == {"msg_id": "777", "openid": "oTESTUSER0000000000000000000", "text": "你好，世界！",
                                  "source": "text", "lang": "zh_CN", "session": {}}
    assert abs(int(seen[0]["headers"][TIMESTAMP_HEADER]) - time.time()) < 5
    assert seen[0]["headers"][SIGNATURE_HEADER].startswith("sha256=")


def test_voice_is_forwarded_with_its_source(service: Service) -> None:
    before = len(service.requests)
    assert bot(service).voice(recognition="Turn on the lights.").content == "remote: Turn on the lights."
    payload = service.requests[before]["payload"]
    assert (payload["source"], payload["lang"]) == ("push", "en_US")


def test_returned_session_is_kept_for_the_next_message(service: Service) -> None:
    client = bot(service)
    assert [client.text("count").content for _ in range(3)] == ["count 1", "count 2", "count 3"]
    assert [r["payload"]["session"] for r in service.requests[-3:]] == [{}, {"n": 1}, {"n": 2}]


# -- every failure falls through to the next handler, logged with the message id and the reason -------------
@pytest.mark.parametrize("said, reason", [
    ("boom", "HTTP 500"),
    ("garbage", "answer is not JSON"),
    ("silent", "answer has no reply"),
    ("list", "answer is not a JSON object"),
    ("bad session", "answer's session is not a JSON object"),
    ("big", "answer larger than 65536 bytes"),
])
def test_bad_answers_fall_through(service: Service, caplog: pytest.LogCaptureFixture, said: str, reason: str) -> None:
    with caplog.at_level(logging.WARNING, "handlers.forward"):
        assert bot(service).text(said, msg_id=9001).content == said  # echo answered
    assert f"forward failed msg_id=9001 reason={reason}" in caplog.text


def test_wrong_secret_is_refused_by_the_service(service: Service, caplog: pytest.LogCaptureFixture) -> None:
    before = len(service.requests)
    with caplog.at_level(logging.WARNING, "handlers.forward"):
        assert bot(service, secret="not-the-secret").text("hello", msg_id=9002).content == "hello"
    assert "forward failed msg_id=9002 reason=HTTP 401" in caplog.text
    assert len(service.requests) == before  # the service accepted nothing


def test_timeout(service: Service, caplog: pytest.LogCaptureFixture) -> None:
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "handlers.forward"):
        assert bot(service, timeout_s=0.3).text("slow", msg_id=9003).content == "slow"
    assert time.monotonic() - started < 0.9
    assert "forward failed msg_id=9003 reason=timeout after 0.30s" in caplog.text


def test_the_reply_budget_caps_the_timeout(service: Service, caplog: pytest.LogCaptureFixture) -> None:
    cfg = test_config(handlers={"routers": ROUTERS}, reply={"budget_s": 0.4},
                      forward={"url": service.url, "secret": SECRET, "timeout_s": 5.0})
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "handlers.forward"):
        assert BotClient(Webhook(cfg)).text("slow", msg_id=9004).content == "slow"
    assert time.monotonic() - started < 0.9
    assert re.search(r"forward failed msg_id=9004 reason=timeout after 0\.[34]\ds", caplog.text), caplog.text


def test_nobody_listening(caplog: pytest.LogCaptureFixture) -> None:
    cfg = test_config(handlers={"routers": ROUTERS}, forward={"url": "http://127.0.0.1:9/bot", "secret": SECRET})
    with caplog.at_level(logging.WARNING, "handlers.forward"):
        assert BotClient(Webhook(cfg)).text("hello", msg_id=9005).content == "hello"
    assert "forward failed msg_id=9005 reason=cannot connect" in caplog.text


# -- the signature scheme ----------------------------------------------------------------------------------
def test_signature_covers_timestamp_and_body() -> None:
    verified = readme_verifier()
    body, now = b'{"text": "hi"}', str(int(time.time()))
    headers = {TIMESTAMP_HEADER: now, SIGNATURE_HEADER: sign(SECRET, now, body)}
    assert verified(SECRET.encode(), headers, body)
    assert not verified(SECRET.encode(), headers, body + b" ")                           # body changed
    assert not verified(b"other", headers, body)                                         # wrong secret
    assert not verified(SECRET.encode(), {**headers, TIMESTAMP_HEADER: str(int(now) - 1)}, body)  # re-dated
    old = str(int(time.time()) - 600)                                                    # replayed later
    assert not verified(SECRET.encode(), {TIMESTAMP_HEADER: old, SIGNATURE_HEADER: sign(SECRET, old, body)}, body)


# -- start-up checks -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("forward, message", [
    ({"secret": SECRET}, '[forward] url: required when [handlers] routers lists "handlers.forward:router"'),
    ({"url": "http://127.0.0.1:1/x"}, '[forward] secret: required when [handlers] routers lists'),
    ({"url": "ftp://x", "secret": SECRET}, "[forward] url: expected an http:// or https:// URL, got 'ftp://x'"),
    ({"url": "http://x", "secret": SECRET, "timeout_s": 0}, "[forward] timeout_s: expected a positive number"),
])
def test_config_is_checked(forward: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        test_config(handlers={"routers": ROUTERS}, forward=forward)
    assert str(err.value).startswith(message), str(err.value)


def test_secret_from_the_environment() -> None:
    from bot.config import config_from_dict
    raw = {"wechat": {"appid": "a", "appsecret": "s", "token": "t"}, "handlers": {"routers": ROUTERS},
           "forward": {"url": "http://127.0.0.1:1/x"}}
    cfg = config_from_dict(raw, env={"VOICEBOT_FORWARD_SECRET": "from-env"})
    assert cfg.forward.secret == "from-env" and "from-env" not in repr(cfg)
