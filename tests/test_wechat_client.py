"""``bot.wechat.WeChatAPI`` against the sandbox over HTTP: the shared token, the bounded retry, typed errors,
the voice API group, and ``api_base_url`` honoured by every call (the token fetch included)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests
from voice_support import sandbox_fixtures

from bot.config import WeChatConfig
from bot.sandbox import Sandbox
from bot.store import open_store
from bot.voice.audio import transcode_to_mp3
from bot.voice.tones import make_tone
from bot.wechat import WeChatAPI
from bot.wechat.errors import (
    BusyError,
    DuplicateVoiceIdError,
    InvalidMediaError,
    RateLimitedError,
    TokenInvalidError,
    TokenUnavailableError,
    TransportError,
    VoiceExpiredError,
    WeChatAPIError,
)
from bot.wechat.voice import RecognitionResult

APPID, SECRET = "wxclienttest00001", "client-secret-91c2e"
LATENCY, WINDOW = 0.1, 1.0


sandbox, clean = sandbox_fixtures(APPID, SECRET, LATENCY, WINDOW, appsecret=SECRET)


class Recorded(requests.Session):
    """A real session that remembers every URL it requested (to prove where each call went)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.hooks["response"].append(lambda r, *a, **k: self.urls.append(r.url))


def wechat_config(sandbox: Sandbox, **changes: Any) -> WeChatConfig:
    values = {"appid": APPID, "appsecret": SECRET, "token": "cb-token", "api_base_url": sandbox.url, **changes}
    return WeChatConfig(**values)


def client(sandbox: Sandbox, store: Any = None, session: requests.Session | None = None, **changes: Any) -> WeChatAPI:
    return WeChatAPI(wechat_config(sandbox, **changes), store or open_store("memory://"), session=session)


def apis(sandbox: Sandbox) -> list[str]:
    return [c["api"] for c in sandbox.calls()]


def mp3_saying(sandbox: Sandbox, text: str) -> bytes:
    """A real 16 kHz mono mp3 of the tone the sandbox hears as ``text``."""
    freq = sandbox.state.clip_frequency(text)
    return transcode_to_mp3(make_tone(freq, 1.0, fmt="amr")).data


def recognize(api: WeChatAPI, voice_id: str, mp3: bytes, lang: str = "zh_CN") -> str:
    api.voice.add(voice_id, mp3, lang)
    deadline = time.monotonic() + WINDOW
    while time.monotonic() < deadline:
        answer = api.voice.result(voice_id, lang)
        if answer.final:
            return answer.text
        time.sleep(0.03)
    raise AssertionError("no result within the window")


# -- the voice API group ----------------------------------------------------------------------------------
def test_voice_add_query_translate_round_trip(sandbox: Sandbox) -> None:
    api = client(sandbox)
    assert recognize(api, "vid-round-trip", mp3_saying(sandbox, "打开客厅的灯")) == "打开客厅的灯"
    sandbox.register_translation("打开客厅的灯", "Turn on the living room light")
    assert api.voice.translate("打开客厅的灯") == "Turn on the living room light"
    assert api.voice.translate("你好", lfrom="zh_CN", lto="en_US") == "[en_US] 你好"
    seq = apis(sandbox)
    assert seq[:2] == ["stable_token", "addvoicetorecofortext"] and seq[-2:] == ["translatecontent"] * 2
    assert seq[2:-2] and set(seq[2:-2]) == {"queryrecoresultfortext"}
    add = sandbox.calls()[1]["query"]
    assert add == {"format": "mp3", "voice_id": "vid-round-trip", "lang": "zh_CN"}


def test_voice_result_reads_is_end_partial_final_retired_and_the_documented_form(
        sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """What live accounts answer (issue 19): partial text with is_end false, then the final text; a retired
    recognition's empty-and-final; the documented form without is_end; is_end spelled as 1."""
    now = [1000.0]
    monkeypatch.setattr(sandbox.state, "clock", lambda: now[0])  # WeChat's clock, played without waiting
    sandbox.configure(recognition_latency_s=2.0, window_s=10.0)
    api = client(sandbox)

    def answers(voice_id: str, *steps: float) -> list[tuple[str, bool | None, bool]]:
        api.voice.add(voice_id, mp3_saying(sandbox, "打开客厅的灯"))
        out = []
        for step in steps:
            now[0] += step
            answer = api.voice.result(voice_id)
            out.append((answer.text, answer.is_end, answer.final))
        return out

    assert answers("vid-partial", 0.0, 1.0, 1.0) == [("", False, False), ("打开客", False, False),
                                                     ("打开客厅的灯", True, True)]
    sandbox.configure(recognition_retired=True)
    assert answers("vid-retired", 0.0, 3.0) == [("", True, True)] * 2
    sandbox.configure(recognition_retired=False, recognition_is_end=False)
    assert answers("vid-documented", 0.0, 2.0) == [("", None, False), ("打开客厅的灯", None, True)]
    sandbox.inject_fault("queryrecoresultfortext", 0, body='{"result": "开灯", "is_end": 1}')
    assert api.voice.result("vid-documented") == RecognitionResult("开灯", True)
    assert api.voice.query("vid-documented") == "打开客厅的灯"  # the text alone, as before


def test_voice_query_is_empty_until_ready_then_the_text(sandbox: Sandbox) -> None:
    sandbox.configure(recognition_latency_s=0.4)
    api = client(sandbox)
    api.voice.add("vid-latency", mp3_saying(sandbox, "关闭卧室的灯"), "en_US")
    assert api.voice.query("vid-latency", "en_US") == ""
    time.sleep(0.45)
    assert api.voice.query("vid-latency", "en_US") == "关闭卧室的灯"
    assert {c["query"]["lang"] for c in sandbox.calls()[1:]} == {"en_US"}


def test_voice_errors_are_typed(sandbox: Sandbox) -> None:
    api = client(sandbox)
    mp3 = mp3_saying(sandbox, "打开厨房的灯")
    api.voice.add("vid-dup", mp3)
    with pytest.raises(DuplicateVoiceIdError):
        api.voice.add("vid-dup", mp3)
    with pytest.raises(VoiceExpiredError):
        api.voice.query("vid-never-uploaded")
    sandbox.configure(window_s=0.1)
    time.sleep(0.15)
    with pytest.raises(VoiceExpiredError, match="46001"):
        api.voice.query("vid-dup")
    with pytest.raises(WeChatAPIError, match="40005"):  # not mp3: WeChat refuses the file type
        api.voice.add("vid-amr", make_tone(725.0, 1.0, fmt="amr"))
    sandbox.inject_fault("addvoicetorecofortext", -1)
    with pytest.raises(BusyError):
        api.voice.add("vid-busy", mp3)
    sandbox.inject_fault("queryrecoresultfortext", 45009)
    with pytest.raises(RateLimitedError):
        api.voice.query("vid-dup")


def test_non_json_and_http_errors_are_transport_errors(sandbox: Sandbox) -> None:
    api = client(sandbox)
    _ = api.access_token  # fetch first, so the faults hit the voice calls
    sandbox.inject_fault("queryrecoresultfortext", 0, http_status=502, body="<html>Bad Gateway</html>")
    with pytest.raises(TransportError, match="HTTP 502"):
        api.voice.query("vid")
    sandbox.inject_fault("queryrecoresultfortext", 0, body="<html>maintenance</html>")
    with pytest.raises(TransportError, match="not JSON"):
        api.voice.query("vid")
    sandbox.inject_fault("media/get", 0, http_status=500, body="oops")
    with pytest.raises(TransportError):
        api.media.download("anything")
    assert apis(sandbox).count("stable_token") == 1  # no refresh for what is not a token problem


def test_media_download_and_40007(sandbox: Sandbox) -> None:
    api = client(sandbox)
    clip = sandbox.register_voice("打开书房的灯")
    response = api.media.download(clip["media_id"])
    assert response.content == sandbox.state.get_media(clip["media_id"]).data
    assert response.content.startswith(b"#!AMR\n")
    with pytest.raises(InvalidMediaError, match="40007"):
        api.media.download("no-such-media")


# -- the access token -----------------------------------------------------------------------------------
def test_two_workers_on_one_sqlite_file_fetch_the_stable_token_once(sandbox: Sandbox, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    workers = [client(sandbox, open_store(url, prefix="wvb:")) for _ in range(2)]
    clip = sandbox.register_voice("打开客厅的灯")
    for api in workers * 2:
        assert api.media.download(clip["media_id"]).content.startswith(b"#!AMR")
    assert apis(sandbox) == ["stable_token"] + ["get"] * 4
    assert sandbox.calls()[0]["json"] == {"grant_type": "client_credential", "appid": APPID,
                                          "force_refresh": False}
    assert workers[0].access_token == workers[1].access_token


def test_classic_token_endpoint(sandbox: Sandbox, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    workers = [client(sandbox, open_store(url), token_endpoint="classic") for _ in range(2)]
    assert recognize(workers[0], "vid-classic", mp3_saying(sandbox, "打开卫生间的灯")) == "打开卫生间的灯"
    assert workers[1].voice.query("vid-classic") == "打开卫生间的灯"
    assert apis(sandbox)[0] == "token" and apis(sandbox).count("token") == 1
    assert "stable_token" not in apis(sandbox)
    assert sandbox.calls()[0]["query"] == {"grant_type": "client_credential", "appid": APPID}  # secret redacted


def test_every_call_goes_to_api_base_url(sandbox: Sandbox) -> None:
    for endpoint in ("stable", "classic"):
        sandbox.reset()
        session = Recorded()
        api = client(sandbox, session=session, token_endpoint=endpoint)
        clip = sandbox.register_voice("打开客厅的灯")
        api.media.download(clip["media_id"])
        recognize(api, f"vid-base-{endpoint}", mp3_saying(sandbox, "打开客厅的灯"))
        api.voice.translate("你好")
        sandbox.inject_fault("translatecontent", 40001)  # and the refresh
        api.voice.translate("你好")
        assert session.urls and all(u.startswith(sandbox.url + "/cgi-bin/") for u in session.urls)
        assert len(session.urls) == len(sandbox.calls())  # every request the client made reached the sandbox
        assert [u.split("/cgi-bin/")[1].split("?")[0].rsplit("/", 1)[-1] for u in session.urls] == apis(sandbox)
        assert apis(sandbox).count("stable_token" if endpoint == "stable" else "token") == 2


# -- one refresh, one retry, never a loop ----------------------------------------------------------------
@pytest.mark.parametrize("errcode", [40001, 40014, 42001])
def test_bad_token_refreshes_once_and_retries_once(sandbox: Sandbox, errcode: int) -> None:
    api = client(sandbox)
    clip = sandbox.register_voice("打开客厅的灯")
    sandbox.inject_fault("media/get", errcode)
    assert api.media.download(clip["media_id"]).content.startswith(b"#!AMR")
    assert apis(sandbox) == ["stable_token", "get", "stable_token", "get"]
    first, refresh = [c["json"]["force_refresh"] for c in sandbox.calls() if c["api"] == "stable_token"]
    assert (first, refresh) == (False, True)
    assert [c["errcode"] for c in sandbox.calls() if c["api"] == "get"] == [errcode, 0]


def test_bad_token_twice_fails_clearly_without_a_loop(sandbox: Sandbox) -> None:
    api = client(sandbox)
    sandbox.inject_fault("queryrecoresultfortext", 40001, times=10)
    with pytest.raises(TokenInvalidError, match="40001"):
        api.voice.query("vid")
    assert apis(sandbox) == ["stable_token", "queryrecoresultfortext", "stable_token", "queryrecoresultfortext"]
    sandbox.reset()
    sandbox.inject_fault("queryrecoresultfortext", 40001, times=10)
    with pytest.raises(TokenInvalidError):  # the next call gets its one refresh too, not more
        api.voice.query("vid")
    assert apis(sandbox) == ["queryrecoresultfortext", "stable_token", "queryrecoresultfortext"]


def test_token_revoked_by_someone_else_is_replaced_once(sandbox: Sandbox, tmp_path: Path) -> None:
    """No fault injection: another party force-refreshes the stable token, so the sandbox really rejects
    the one the bot holds (40001); the bot refreshes once, and a second worker on the same store picks up
    the new token without fetching."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    a, b = (client(sandbox, open_store(url)) for _ in range(2))
    clip = sandbox.register_voice("打开客厅的灯")
    a.media.download(clip["media_id"])
    requests.post(f"{sandbox.url}/cgi-bin/stable_token", json={
        "grant_type": "client_credential", "appid": APPID, "secret": SECRET, "force_refresh": True}, timeout=5)
    sandbox.reset()
    a.media.download(clip["media_id"])
    b.media.download(clip["media_id"])
    assert apis(sandbox) == ["get", "stable_token", "get", "get"]
    assert [c["errcode"] for c in sandbox.calls()] == [40001, 0, 0, 0]


def test_wrong_secret_is_token_unavailable_without_the_secret(sandbox: Sandbox) -> None:
    sandbox.configure(appsecret="the-real-secret")
    api = client(sandbox)
    with pytest.raises(TokenUnavailableError) as info:
        api.media.download("anything")
    assert "40125" in str(info.value) and SECRET not in str(info.value)
    assert apis(sandbox) == ["stable_token"]  # no media call without a token, no retry storm


def test_token_endpoint_busy_is_token_unavailable(sandbox: Sandbox) -> None:
    sandbox.inject_fault("stable_token", -1)
    api = client(sandbox)
    with pytest.raises(TokenUnavailableError):
        api.voice.query("vid")
    assert apis(sandbox) == ["stable_token"]
    clip = sandbox.register_voice("打开客厅的灯")
    time.sleep(0.01)  # the failure is shared only with callers that queued behind it
    assert api.media.download(clip["media_id"]).content.startswith(b"#!AMR")
