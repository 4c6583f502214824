"""bot.sandbox over real HTTP: WeChat's token, media, voice, translate and custom-message behaviour."""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from voice_support import sandbox_fixtures

from bot.sandbox import FREQUENCY_GRID, Sandbox, SandboxError, main
from bot.voice.audio import decode_pcm, transcode_to_mp3
from bot.voice.tones import encode_pcm, make_tone

APPID, SECRET = "wxtest", "test-secret"
LATENCY, WINDOW = 0.25, 1.0


sandbox, clean = sandbox_fixtures(APPID, SECRET, LATENCY, WINDOW, max_voice_bytes=1_000_000)


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


class WeChat:
    """A thin client, as the bot would call WeChat."""

    def __init__(self, sandbox: Sandbox, http: requests.Session) -> None:
        self.base, self.http = sandbox.url, http

    def classic(self, appid: str = APPID, secret: str = SECRET) -> dict[str, Any]:
        return self.http.get(f"{self.base}/cgi-bin/token", params={
            "grant_type": "client_credential", "appid": appid, "secret": secret}, timeout=5).json()

    def stable(self, force_refresh: bool = False) -> dict[str, Any]:
        return self.http.post(f"{self.base}/cgi-bin/stable_token", json={
            "grant_type": "client_credential", "appid": APPID, "secret": SECRET, "force_refresh": force_refresh},
            timeout=5).json()

    def token(self) -> str:
        return self.stable()["access_token"]

    def media(self, media_id: str, token: str | None = None) -> requests.Response:
        return self.http.get(f"{self.base}/cgi-bin/media/get",
                             params={"access_token": token or self.token(), "media_id": media_id}, timeout=5)

    def add(self, mp3: bytes, voice_id: str, fmt: str = "mp3", token: str | None = None) -> dict[str, Any]:
        return self.http.post(f"{self.base}/cgi-bin/media/voice/addvoicetorecofortext", params={
            "access_token": token or self.token(), "format": fmt, "voice_id": voice_id, "lang": "zh_CN"},
            files={"media": ("voice.mp3", mp3, "audio/mpeg")}, timeout=5).json()

    def query(self, voice_id: str, token: str | None = None) -> dict[str, Any]:
        return self.http.post(f"{self.base}/cgi-bin/media/voice/queryrecoresultfortext", params={
            "access_token": token or self.token(), "voice_id": voice_id, "lang": "zh_CN"}, timeout=5).json()

    def send(self, body: dict[str, Any], token: str | None = None) -> requests.Response:
        return self.http.post(f"{self.base}/cgi-bin/message/custom/send",
                              params={"access_token": token or self.token()}, json=body, timeout=5)

    def translate(self, text: str, lfrom: str = "zh_CN", lto: str = "en_US") -> dict[str, Any]:
        return self.http.post(f"{self.base}/cgi-bin/media/voice/translatecontent", params={
            "access_token": self.token(), "lfrom": lfrom, "lto": lto}, data=text.encode("utf-8"), timeout=5).json()


@pytest.fixture
def wx(sandbox: Sandbox, http: requests.Session) -> WeChat:
    return WeChat(sandbox, http)


def wait_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))


# ------------------------------------------------------------------------------------------------ tokens


def test_classic_fetch_invalidates_the_previous_classic_token_but_not_the_stable_one(wx: WeChat) -> None:
    stable = wx.stable()
    first = wx.classic()
    assert set(first) == {"access_token", "expires_in"} and first["expires_in"] == 7200
    assert wx.media("nope", token=first["access_token"]).json()["errcode"] == 40007  # token fine, id not
    second = wx.classic()
    assert second["access_token"] != first["access_token"]
    assert wx.media("nope", token=first["access_token"]).json()["errcode"] == 40001
    assert wx.media("nope", token=second["access_token"]).json()["errcode"] == 40007
    assert wx.media("nope", token=stable["access_token"]).json()["errcode"] == 40007
    assert wx.stable()["access_token"] == stable["access_token"]


def test_stable_token_is_reused_until_force_refresh(wx: WeChat) -> None:
    a, b = wx.stable(), wx.stable()
    assert a["access_token"] == b["access_token"] and 0 < b["expires_in"] <= 7200
    c = wx.stable(force_refresh=True)
    assert c["access_token"] != a["access_token"]
    assert wx.media("nope", token=a["access_token"]).json()["errcode"] == 40001
    assert wx.media("nope", token=c["access_token"]).json()["errcode"] == 40007


def test_classic_grace_period(sandbox: Sandbox, wx: WeChat) -> None:
    sandbox.configure(token_grace_s=0.3)
    first = wx.classic()["access_token"]
    replaced_at = time.monotonic()
    wx.classic()
    assert wx.media("nope", token=first).json()["errcode"] == 40007  # still inside the grace period
    wait_until(replaced_at + 0.35)
    assert wx.media("nope", token=first).json()["errcode"] == 40001


def test_expired_token_answers_42001(sandbox: Sandbox, wx: WeChat) -> None:
    sandbox.configure(token_expires_in=0.2)
    try:
        token = wx.stable(force_refresh=True)
        assert token["expires_in"] == pytest.approx(0.2)
        time.sleep(0.25)
        assert wx.media("nope", token=token["access_token"]).json()["errcode"] == 42001
        assert wx.stable()["access_token"] != token["access_token"]  # an expired stable token is replaced
    finally:  # tokens outlive a test: the next test must not get one that expires 0.2 s after this one
        sandbox.configure(token_expires_in=7200)
        wx.stable(force_refresh=True)


@pytest.mark.parametrize("appid,secret,errcode", [("wxother", SECRET, 40013), (APPID, "wrong", 40125)])
def test_wrong_credentials(wx: WeChat, appid: str, secret: str, errcode: int) -> None:
    answer = wx.classic(appid, secret)
    assert answer["errcode"] == errcode and answer["errmsg"]


def test_bad_or_missing_token_is_rejected_and_recorded(sandbox: Sandbox, wx: WeChat, http: requests.Session) -> None:
    r = http.post(f"{sandbox.url}/cgi-bin/message/custom/send", params={"access_token": "bogus"}, json={}, timeout=5)
    assert r.status_code == 200 and r.json()["errcode"] == 40001
    r = http.post(f"{sandbox.url}/cgi-bin/message/custom/send", json={}, timeout=5)
    assert r.json()["errcode"] == 41001
    assert [(c["api"], c["errcode"]) for c in sandbox.calls()] == [("send", 40001), ("send", 41001)]
    assert sandbox.custom_messages() == []


# ------------------------------------------------------------------------------------------------ media


def test_media_get_serves_the_clip_and_40007_for_unknown(sandbox: Sandbox, wx: WeChat) -> None:
    clip = sandbox.register_voice("开灯", duration_s=1.0)
    r = wx.media(clip["media_id"])
    assert r.status_code == 200 and r.content.startswith(b"#!AMR\n")
    assert r.headers["Content-Type"] == "audio/amr"
    assert r.headers["Content-Disposition"] == f'attachment; filename="{clip["media_id"]}.amr"'
    missing = wx.media("no-such-media")
    assert missing.status_code == 200 and missing.headers["Content-Type"].startswith("text/plain")
    assert missing.json() == {"errcode": 40007, "errmsg": "invalid media_id"}


def test_same_text_same_tone_distinct_texts_distinct_tones(sandbox: Sandbox) -> None:
    a1, a2 = sandbox.register_voice("甲", duration_s=0.5), sandbox.register_voice("甲", duration_s=0.5)
    b = sandbox.register_voice("乙", duration_s=0.5)
    assert a1["frequency"] == a2["frequency"] != b["frequency"]
    assert a1["media_id"] != a2["media_id"]
    assert {a1["frequency"], b["frequency"]} <= set(FREQUENCY_GRID)


# ------------------------------------------------------------------------------------------------ recognition


def test_round_trip_amr_to_text(sandbox: Sandbox, wx: WeChat) -> None:
    clip = sandbox.register_voice("打开客厅的灯", duration_s=2.0)
    sandbox.register_voice("关闭客厅的灯", duration_s=2.0)  # another tone on the grid
    amr = wx.media(clip["media_id"]).content
    mp3 = transcode_to_mp3(amr).data
    assert wx.add(mp3, "msg-1") == {"errcode": 0, "errmsg": "ok"}
    added = time.monotonic()
    early = wx.query("msg-1")  # not final before the latency: what was heard so far
    assert early["is_end"] is False and "打开客厅的灯".startswith(early["result"]) and early["result"] != "打开客厅的灯"
    wait_until(added + LATENCY + 0.05)
    assert wx.query("msg-1") == {"result": "打开客厅的灯", "is_end": True}
    wait_until(added + WINDOW + 0.1)
    expired = wx.query("msg-1")
    assert expired["errcode"] == 46001 and "window" in expired["errmsg"]


def test_round_trip_through_the_16k_media(sandbox: Sandbox, wx: WeChat) -> None:
    clip = sandbox.register_voice("播放音乐", duration_s=1.0, with_16k=True)
    r = wx.media(clip["media_id_16k"])
    assert r.headers["Content-Type"] == "audio/x-wav"
    assert decode_pcm(r.content)[1].sample_rate == 16000
    assert wx.add(transcode_to_mp3(r.content).data, "msg-16k")["errcode"] == 0
    time.sleep(LATENCY + 0.05)
    assert wx.query("msg-16k") == {"result": "播放音乐", "is_end": True}


def test_broken_audio_gets_an_empty_transcript(sandbox: Sandbox, wx: WeChat) -> None:
    clip = sandbox.register_voice("打开空调", duration_s=1.0)
    pcm8k, _ = decode_pcm(wx.media(clip["media_id"]).content, sample_rate=8000)
    pitch_shifted = encode_pcm(pcm8k, 16000, fmt="mp3")  # 8 kHz samples labelled 16 kHz
    assert wx.add(pitch_shifted, "shifted")["errcode"] == 0
    assert wx.add(make_tone(clip["frequency"] + 25, 1.0, fmt="mp3"), "unregistered")["errcode"] == 0
    time.sleep(LATENCY + 0.05)
    assert wx.query("shifted") == {"result": "", "is_end": True}  # finished, heard nothing
    assert wx.query("unregistered") == {"result": "", "is_end": True}


def test_partial_results_then_final_and_the_documented_form(sandbox: Sandbox, wx: WeChat,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    now = [500.0]
    monkeypatch.setattr(sandbox.state, "clock", lambda: now[0])
    sandbox.configure(recognition_latency_s=3.0, window_s=10.0)
    clip = sandbox.register_voice("打开客厅的灯", duration_s=1.0)
    mp3 = transcode_to_mp3(wx.media(clip["media_id"]).content).data
    assert wx.add(mp3, "p1")["errcode"] == 0
    seen = []
    for _ in range(4):
        seen.append(wx.query("p1"))
        now[0] += 1.0
    assert seen == [{"result": "", "is_end": False}, {"result": "打开", "is_end": False},
                    {"result": "打开客厅", "is_end": False}, {"result": "打开客厅的灯", "is_end": True}]
    sandbox.configure(recognition_partial=False)
    assert wx.add(mp3, "p2")["errcode"] == 0
    now[0] += 2.0
    assert wx.query("p2") == {"result": "", "is_end": False}
    sandbox.configure(recognition_is_end=False)  # the documented form: no is_end, empty = not ready
    assert wx.add(mp3, "p3")["errcode"] == 0
    first = wx.query("p3")
    now[0] += 3.0
    assert [first, wx.query("p3")] == [{"result": ""}, {"result": "打开客厅的灯"}]


def test_retired_recognition_answers_empty_and_final_and_pushes_carry_empty_recognition(
        sandbox: Sandbox, wx: WeChat, http: requests.Session) -> None:
    assert sandbox.register_voice("开灯", duration_s=0.5)["recognition"] is None  # recognition not in pushes
    assert http.post(f"{sandbox.url}/sandbox/config", json={"recognition_retired": True},
                     timeout=5).json()["recognition_retired"] is True
    clip = http.post(f"{sandbox.url}/sandbox/voices", json={"text": "开灯", "duration_s": 0.5}, timeout=5).json()
    assert clip["recognition"] == ""  # the push's <Recognition> is there, empty
    assert wx.add(transcode_to_mp3(wx.media(clip["media_id"]).content).data, "r1")["errcode"] == 0
    assert [wx.query("r1") for _ in range(2)] == [{"result": "", "is_end": True}] * 2  # at once, every time
    sandbox.configure(recognition_is_end=False)
    assert wx.query("r1") == {"result": ""}  # a retired recognition in the documented form: never ready


def test_transcriptions_hear_clips_as_the_recognition_does(sandbox: Sandbox, wx: WeChat,
                                                           http: requests.Session) -> None:
    clip = sandbox.register_voice("关上窗户", duration_s=1.0)
    amr = wx.media(clip["media_id"]).content
    url = f"{sandbox.url}/v1/audio/transcriptions"

    def post(audio: bytes, name: str = "voice.mp3", **form: str) -> requests.Response:
        return http.post(url, files={"file": (name, audio)}, data={"model": "whisper-1", **form}, timeout=10)

    mp3 = transcode_to_mp3(amr).data
    r = post(mp3, language="zh", prompt="打开、关上")
    assert r.status_code == 200 and r.json() == {"text": "关上窗户"}
    assert post(amr, "voice.amr", response_format="text").text == "关上窗户"  # any format PyAV decodes
    assert post(make_tone(FREQUENCY_GRID[-1] + 25, 1.0, fmt="mp3")).json() == {"text": ""}  # no clip tone: nothing
    assert post(b"not audio").status_code == 400
    assert http.post(url, data={"model": "whisper-1"}, timeout=5).status_code == 400  # no file
    calls = [c for c in sandbox.calls() if c["api"] == "transcriptions"]
    assert calls[0]["form"] == {"model": "whisper-1", "language": "zh", "prompt": "打开、关上"}
    assert (calls[0]["audio"]["codec"], calls[0]["audio"]["sample_rate"], calls[1]["audio"]["codec"]) == \
        ("mp3", 16000, "amr_nb")
    sandbox.configure(transcription_api_key="sk-sandbox", transcription_latency_s=0.3)
    started = time.monotonic()
    assert post(mp3).status_code == 401
    ok = http.post(url, files={"file": ("v.mp3", mp3)}, data={"model": "m"}, timeout=10,
                   headers={"Authorization": "Bearer sk-sandbox"})
    assert ok.json() == {"text": "关上窗户"} and time.monotonic() - started >= 0.3
    sandbox.inject_fault("audio/transcriptions", 0, http_status=503, body='{"error": {"message": "overloaded"}}')
    assert http.post(url, timeout=5).status_code == 503
    assert all("sk-sandbox" not in str(c) for c in sandbox.calls())


def test_unknown_voice_id(wx: WeChat) -> None:
    answer = wx.query("never-added")
    assert answer["errcode"] == 46001 and "not found" in answer["errmsg"]


@pytest.mark.parametrize("case", ["not-mp3", "format-param", "8khz", "stereo", "over-1mb", "empty"])
def test_addvoice_rejects_what_wechat_rejects(wx: WeChat, case: str) -> None:
    good = make_tone(1025, 0.5, fmt="mp3")
    upload, fmt, errcode = {
        "not-mp3": (make_tone(1025, 0.5, fmt="wav"), "mp3", 40005),
        "format-param": (good, "amr", 40005),
        "8khz": (make_tone(1025, 0.5, fmt="mp3", sample_rate=8000), "mp3", 40005),
        "stereo": (make_tone(1025, 0.5, fmt="mp3", channels=2), "mp3", 40005),
        "over-1mb": (good + bytes(1_000_001 - len(good)), "mp3", 40010),
        "empty": (b"", "mp3", 44001),
    }[case]
    answer = wx.add(upload, f"reject-{case}", fmt=fmt)
    assert answer["errcode"] == errcode, answer
    assert wx.query(f"reject-{case}")["errcode"] == 46001  # nothing was stored


def test_addvoice_duplicate_voice_id_and_missing_params(sandbox: Sandbox, wx: WeChat, http: requests.Session) -> None:
    mp3 = make_tone(1025, 0.5, fmt="mp3")
    assert wx.add(mp3, "dup")["errcode"] == 0
    again = wx.add(mp3, "dup")
    assert again["errcode"] == 47001 and "already used" in again["errmsg"]
    url = f"{sandbox.url}/cgi-bin/media/voice/addvoicetorecofortext"
    token = wx.token()
    r = http.post(url, params={"access_token": token, "format": "mp3"}, files={"media": ("a.mp3", mp3)}, timeout=5)
    assert r.json()["errcode"] == 40035
    r = http.post(url, params={"access_token": token, "format": "mp3", "voice_id": "x"}, data=b"raw", timeout=5)
    assert r.json()["errcode"] == 41005


# ------------------------------------------------------------------------------------------------ faults


def test_fault_busy_then_success(sandbox: Sandbox, wx: WeChat) -> None:
    clip = sandbox.register_voice("开门", duration_s=1.0)
    assert wx.add(transcode_to_mp3(wx.media(clip["media_id"]).content).data, "f1")["errcode"] == 0
    time.sleep(LATENCY + 0.05)
    sandbox.inject_fault("queryrecoresultfortext", -1, times=2)
    sandbox.inject_fault("queryrecoresultfortext", 45009)
    assert [wx.query("f1").get("errcode") for _ in range(3)] == [-1, -1, 45009]
    assert wx.query("f1") == {"result": "开门", "is_end": True}
    assert [c["errcode"] for c in sandbox.calls() if c["api"] == "queryrecoresultfortext"] == [-1, -1, 45009, 0]


def test_fault_http_500_and_malformed_body(sandbox: Sandbox, wx: WeChat) -> None:
    token = wx.token()
    sandbox.inject_fault("media/get", -1, http_status=500, body="<html>502 Bad Gateway</html>")
    sandbox.inject_fault("get", -1, body='{"errcode": ')
    r = wx.media("x", token=token)
    assert r.status_code == 500 and "Bad Gateway" in r.text
    r = wx.media("x", token=token)
    assert r.status_code == 200 and r.text == '{"errcode": '
    assert wx.media("x", token=token).json()["errcode"] == 40007


def test_fault_on_token_endpoints_and_send(sandbox: Sandbox, wx: WeChat) -> None:
    sandbox.inject_fault("stable_token", -1)
    assert wx.stable()["errcode"] == -1
    assert "access_token" in wx.stable()
    sandbox.inject_fault("send", 45015)
    assert wx.send({"touser": "o1", "msgtype": "text", "text": {"content": "hi"}}).json()["errcode"] == 45015
    assert sandbox.custom_messages() == []


def test_faults_over_the_control_api(sandbox: Sandbox, wx: WeChat, http: requests.Session) -> None:
    r = http.post(f"{sandbox.url}/sandbox/faults", json={"endpoint": "translatecontent", "errcode": -1}, timeout=5)
    assert r.status_code == 200
    assert wx.translate("你好")["errcode"] == -1
    assert wx.translate("你好")["to_content"] == "[en_US] 你好"


# ------------------------------------------------------------------------------------------------ translate, send, calls


def test_translate(sandbox: Sandbox, wx: WeChat, http: requests.Session) -> None:
    assert wx.translate("今天天气") == {"from_content": "今天天气", "to_content": "[en_US] 今天天气"}
    sandbox.register_translation("你好", "Hello")
    assert wx.translate("你好")["to_content"] == "Hello"
    http.post(f"{sandbox.url}/sandbox/translations", json={"谢谢": "Thanks"}, timeout=5)
    assert wx.translate("谢谢")["to_content"] == "Thanks"
    assert wx.translate("字" * 201)["errcode"] == 45002  # 603 bytes of UTF-8
    assert wx.translate("字" * 200)["to_content"].endswith("字")
    assert wx.translate("hi", lto="fr_FR")["errcode"] == 40035


def test_custom_send_is_recorded(sandbox: Sandbox, wx: WeChat, http: requests.Session) -> None:
    body = {"touser": "oUser1", "msgtype": "text", "text": {"content": "灯已打开"}}
    assert wx.send(body).json() == {"errcode": 0, "errmsg": "ok"}
    assert wx.send({"msgtype": "text"}).json()["errcode"] == 40003
    assert sandbox.custom_messages() == [body]
    assert http.get(f"{sandbox.url}/sandbox/messages", timeout=5).json() == [body]


def test_calls_are_recorded_in_order_without_secrets(sandbox: Sandbox, wx: WeChat, http: requests.Session) -> None:
    wx.classic()
    token = wx.token()
    wx.media("m1", token=token)
    wx.query("v1", token=token)
    wx.send({"touser": "o", "msgtype": "text", "text": {"content": "x"}}, token=token)
    calls = sandbox.calls()
    assert [c["api"] for c in calls] == ["token", "stable_token", "get", "queryrecoresultfortext", "send"]
    assert [c["method"] for c in calls] == ["GET", "POST", "GET", "POST", "POST"]
    assert [c["errcode"] for c in calls] == [0, 0, 40007, 46001, 0]
    assert all(c["status"] == 200 for c in calls)
    assert [c["t"] for c in calls] == sorted(c["t"] for c in calls)
    assert calls[0]["query"] == {"grant_type": "client_credential", "appid": APPID}
    assert calls[1]["json"] == {"grant_type": "client_credential", "appid": APPID, "force_refresh": False}
    assert calls[2]["query"] == {"media_id": "m1"}
    assert SECRET not in repr(calls) and token not in repr(calls)
    assert http.get(f"{sandbox.url}/sandbox/calls", timeout=5).json() == calls
    sandbox.reset()
    assert sandbox.calls() == []


# ------------------------------------------------------------------------------------------------ control API


def test_control_endpoints_register_clips_and_media(sandbox: Sandbox, wx: WeChat, http: requests.Session) -> None:
    clip = http.post(f"{sandbox.url}/sandbox/voices", json={"text": "拉上窗帘", "duration_s": 1.0, "with_16k": True},
                     timeout=10).json()
    assert {"media_id", "media_id_16k", "frequency"} <= set(clip)
    assert wx.media(clip["media_id"]).content.startswith(b"#!AMR\n")
    # Upload a fixture-like clip on a grid tone: the sandbox detects the tone and binds the text.
    tone = make_tone(FREQUENCY_GRID[-1], 1.0, fmt="wav")
    r = http.post(f"{sandbox.url}/sandbox/media", params={"text": "上传的", "filename": "up.wav"}, data=tone,
                  timeout=10)
    media_id = r.json()["media_id"]
    got = wx.media(media_id)
    assert got.content == tone and got.headers["Content-Type"] == "audio/x-wav"
    assert wx.add(transcode_to_mp3(got.content).data, "uploaded")["errcode"] == 0
    time.sleep(LATENCY + 0.05)
    assert wx.query("uploaded") == {"result": "上传的", "is_end": True}
    garbage = http.post(f"{sandbox.url}/sandbox/media", data=b"garbage", timeout=5).json()["media_id"]
    assert wx.media(garbage).content == b"garbage"
    bad = http.post(f"{sandbox.url}/sandbox/media", params={"text": "x"}, data=b"garbage", timeout=5)
    assert bad.status_code == 400 and "undecodable" in bad.json()["error"]


def test_control_config_and_reset(sandbox: Sandbox, http: requests.Session) -> None:
    r = http.post(f"{sandbox.url}/sandbox/config", json={"window_s": 2.5}, timeout=5)
    assert r.status_code == 200 and r.json()["window_s"] == 2.5
    r = http.post(f"{sandbox.url}/sandbox/config", json={"no_such": 1}, timeout=5)
    assert r.status_code == 400 and "no_such" in r.json()["error"]
    with pytest.raises(SandboxError):
        sandbox.configure(no_such=1)
    sandbox.inject_fault("send", -1)
    assert http.post(f"{sandbox.url}/sandbox/reset", timeout=5).json() == {"ok": True}
    assert sandbox.state.faults == []


def test_cli_reports_a_port_in_use(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", str(sandbox.port)]) == 1
    assert "cannot listen" in capsys.readouterr().err
