"""bot.sandbox over real HTTP: account kinds, the customer-service quota, text limits, typing, voice media.

Real servers on free ports, real audio made with PyAV; clocks scaled down through the sandbox's settings (or
``ago_s``), so nothing waits for WeChat's 48 hours.
"""
from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import av
import pytest
import requests

from bot.sandbox import Sandbox
from bot.testing.net import free_port, wait_until_up
from bot.voice.tones import make_tone

APPID, SECRET = "wxaccounts", "accounts-secret"
TEXT = {"msgtype": "text", "text": {"content": "灯已打开"}}


def wma_tone(frequency: float, duration_s: float) -> bytes:
    """A real WMA (wmav2 in ASF) tone, re-encoded with PyAV from make_tone's wav: add_material takes wma."""
    buf = io.BytesIO()
    with av.open(io.BytesIO(make_tone(frequency, duration_s, fmt="wav"))) as src, \
            av.open(buf, mode="w", format="asf") as out:
        stream = out.add_stream("wmav2", rate=16000)
        stream.layout, stream.bit_rate = "mono", 32000
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=16000)
        for frame in src.decode(audio=0):
            for chunk in resampler.resample(frame):
                chunk.pts = None
                for packet in stream.encode(chunk):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(appid=APPID, appsecret=SECRET) as sb:
        yield sb


@pytest.fixture(autouse=True)
def clean(sandbox: Sandbox) -> None:
    sandbox.reset(settings=True)  # every test starts on a verified account with WeChat's numbers


class WeChat:
    """The calls a bot makes, over HTTP, with a stable token."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.base, self.http = sandbox.url, requests.Session()
        self.token = self.http.post(f"{self.base}/cgi-bin/stable_token", json={
            "grant_type": "client_credential", "appid": APPID, "secret": SECRET}, timeout=5).json()["access_token"]

    def post(self, path: str, *, params: dict[str, str] | None = None, **kw: Any) -> requests.Response:
        return self.http.post(f"{self.base}{path}", params={"access_token": self.token, **(params or {})},
                              timeout=10, **kw)

    def send(self, touser: str, body: dict[str, Any] = TEXT) -> int:
        return self.post("/cgi-bin/message/custom/send", json={"touser": touser, **body}).json()["errcode"]

    def text(self, touser: str, content: str) -> int:
        return self.send(touser, {"msgtype": "text", "text": {"content": content}})

    def voice(self, touser: str, media_id: str) -> int:
        return self.send(touser, {"msgtype": "voice", "voice": {"media_id": media_id}})

    def typing(self, touser: str, command: str = "Typing") -> int:
        body = {"touser": touser, "command": command}
        return self.post("/cgi-bin/message/custom/typing", json=body).json()["errcode"]

    def upload(self, data: bytes | None, *, kind: str = "voice", path: str = "/cgi-bin/media/upload",
               filename: str = "reply.mp3") -> dict[str, Any]:
        files = {"media": (filename, data)} if data is not None else None
        return self.post(path, params={"type": kind}, files=files, data=None if files else b"x").json()

    def add_material(self, data: bytes | None, **kw: Any) -> dict[str, Any]:
        return self.upload(data, path="/cgi-bin/material/add_material", **kw)

    def material(self, action: str, media_id: str | None) -> requests.Response:
        return self.post(f"/cgi-bin/material/{action}", json={} if media_id is None else {"media_id": media_id})

    def media_get(self, media_id: str) -> requests.Response:
        return self.http.get(f"{self.base}/cgi-bin/media/get", params={"access_token": self.token,
                                                                      "media_id": media_id}, timeout=5)

    def inspect(self, what: str, **params: str) -> Any:
        r = self.http.get(f"{self.base}/sandbox/{what}", params=params, timeout=5)
        assert r.status_code == 200, r.text
        return r.json()

    def control(self, what: str, body: dict[str, Any]) -> requests.Response:
        return self.http.post(f"{self.base}/sandbox/{what}", json=body, timeout=5)


@pytest.fixture
def wx(sandbox: Sandbox) -> Iterator[WeChat]:
    client = WeChat(sandbox)
    yield client
    client.http.close()


# ------------------------------------------------------------------------------------------------ account kinds


def test_an_account_without_customer_service_answers_48001_to_send_and_typing() -> None:
    with Sandbox(appid=APPID, appsecret=SECRET, customer_service=False) as sb:
        wx = WeChat(sb)
        assert wx.send("oA") == 48001
        assert wx.typing("oA") == 48001
        r = wx.post("/cgi-bin/message/custom/send", data=b"not json")
        assert r.json()["errcode"] == 48001  # refused before the body is looked at
        assert sb.custom_messages() == []
        assert [(r["touser"], r["errcode"]) for r in sb.refused_messages()] == [("oA", 48001), (None, 48001)]
        assert [(t["command"], t["errcode"]) for t in sb.typing_calls()] == [("Typing", 48001)]
        assert "api unauthorized" in sb.refused_messages()[0]["errmsg"]
        assert wx.inspect("")["account"] == {"customer_service": False, "temporary_media": True}
        assert sb.users() == {}  # a refused account call opens no window


def test_the_account_kind_switches_over_the_control_api(sandbox: Sandbox, wx: WeChat) -> None:
    assert wx.send("oB") == 0
    r = wx.control("config", {"customer_service": False})
    assert r.status_code == 200 and r.json()["customer_service"] is False
    assert wx.send("oB") == 48001
    wx.control("config", {"customer_service": True})
    assert wx.send("oB") == 0
    bad = wx.control("config", {"customer_service": "false"})  # a string would be truthy: refused
    assert bad.status_code == 400 and "true or false" in bad.json()["error"]
    assert wx.control("config", {"cs_quota": -1}).status_code == 400
    sandbox.configure(customer_service=False)
    assert wx.control("reset", {"settings": True}).json() == {"ok": True}
    assert sandbox.state.setting("customer_service") is True and sandbox.state.setting("appid") == APPID


def test_the_cli_plays_an_unverified_account() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bot", "sandbox", "--port", str(port), "--unverified",
                             "--cs-quota", "2", "--max-text-bytes", "600"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/sandbox/", proc)
        info = requests.get(f"http://127.0.0.1:{port}/sandbox/", timeout=5).json()
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0].decode()
    assert info["account"] == {"customer_service": False, "temporary_media": False}
    assert (info["settings"]["cs_quota"], info["settings"]["max_text_bytes"]) == (2, 600)
    assert "no customer-service API" in out and "no temporary media" in out


# ------------------------------------------------------------------------------------------------ quota


def test_five_messages_per_user_message_then_45047(sandbox: Sandbox, wx: WeChat) -> None:
    sandbox.user_messaged("oQ")
    assert [wx.send("oQ") for _ in range(6)] == [0, 0, 0, 0, 0, 45047]
    assert wx.send("oOther") == 0  # per user
    user = wx.inspect("users", openid="oQ")
    assert (user["sent"], user["remaining"], user["assumed"], user["window_open"]) == (5, 0, False, True)
    assert wx.control("user_messages", {"openid": "oQ"}).json()["remaining"] == 5  # the user wrote again
    assert [wx.send("oQ") for _ in range(6)] == [0, 0, 0, 0, 0, 45047]  # refused sends counted nothing
    assert len([m for m in sandbox.custom_messages() if m["touser"] == "oQ"]) == 10
    refused = wx.inspect("refused")
    assert [(r["touser"], r["errcode"]) for r in refused] == [("oQ", 45047), ("oQ", 45047)]
    assert "5 of 5" in refused[0]["errmsg"]


def test_concurrent_sends_never_exceed_the_quota(sandbox: Sandbox, wx: WeChat) -> None:
    barrier, results = threading.Barrier(12), []

    def one() -> None:
        client = WeChat(sandbox)
        barrier.wait()
        results.append(client.send("oRace"))
    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert sorted(results) == [0] * 5 + [45047] * 7
    assert len(sandbox.custom_messages()) == 5 and sandbox.user("oRace")["sent"] == 5


def test_an_unreported_user_counts_as_having_just_written(sandbox: Sandbox, wx: WeChat) -> None:
    sandbox.configure(cs_quota=2)
    assert [wx.send("oNew") for _ in range(3)] == [0, 0, 45047]
    assert sandbox.user("oNew")["assumed"] is True
    sandbox.configure(assume_user_messaged=False)  # strict: only users the test reported
    assert wx.send("oNever") == 45015
    assert "never sent" in sandbox.refused_messages()[-1]["errmsg"]
    sandbox.user_messaged("oNever")
    assert wx.send("oNever") == 0


def test_the_48_hour_window_then_45015(sandbox: Sandbox, wx: WeChat) -> None:
    sandbox.user_messaged("oOld", ago_s=48 * 3600 + 1)  # WeChat's own numbers, no waiting
    assert wx.send("oOld") == 45015
    assert sandbox.user("oOld")["window_open"] is False and sandbox.user("oOld")["remaining"] == 0
    sandbox.configure(cs_window_s=0.3)  # a scaled-down clock, really run out
    sandbox.user_messaged("oW")
    assert wx.send("oW") == 0
    time.sleep(0.35)
    assert wx.send("oW") == 45015
    sandbox.user_messaged("oW")
    assert wx.send("oW") == 0
    assert [r["errcode"] for r in sandbox.refused_messages()] == [45015, 45015]


# ------------------------------------------------------------------------------------------------ text limits


def test_text_over_max_text_bytes_is_45002(sandbox: Sandbox, wx: WeChat) -> None:
    exactly = "字" * 682 + "ab"  # 2046 + 2 = 2048 bytes of UTF-8
    assert len(exactly.encode()) == 2048
    assert wx.text("oT", exactly) == 0
    assert wx.text("oT", exactly + "c") == 45002
    assert wx.text("oT", "") == 44004
    sandbox.configure(max_text_bytes=6)
    assert (wx.text("oT", "你好"), wx.text("oT", "你好!")) == (0, 45002)
    assert [r["errcode"] for r in sandbox.refused_messages()] == [45002, 44004, 45002]
    assert "2049 bytes" in sandbox.refused_messages()[0]["errmsg"]
    assert sandbox.user("oT")["sent"] == 2  # refused content costs no quota


# ------------------------------------------------------------------------------------------------ typing


def test_typing_is_recorded_with_its_time_and_follows_wechats_rules(sandbox: Sandbox, wx: WeChat) -> None:
    sandbox.user_messaged("oY")
    before = sandbox.state.clock()
    assert wx.typing("oY") == 0
    assert sandbox.user("oY")["typing"] is True
    assert wx.typing("oY") == 45081  # still showing
    assert wx.typing("oY", "CancelTyping") == 0
    assert wx.typing("oY") == 0
    assert wx.send("oY") == 0  # a message ends the indicator
    assert wx.typing("oY") == 0
    assert wx.typing("oY", "typing") == 45072
    calls = wx.inspect("typing")
    assert [(c["command"], c["errcode"]) for c in calls] == [
        ("Typing", 0), ("Typing", 45081), ("CancelTyping", 0), ("Typing", 0), ("Typing", 0), ("typing", 45072)]
    assert all(c["touser"] == "oY" for c in calls) and all(c["t"] >= before for c in calls)
    assert [c["t"] for c in calls] == sorted(c["t"] for c in calls)
    assert sandbox.user("oY")["sent"] == 1  # typing counts against no quota


def test_typing_needs_a_recent_message_and_lasts_a_while(sandbox: Sandbox, wx: WeChat) -> None:
    sandbox.user_messaged("oZ", ago_s=31)
    assert wx.typing("oZ") == 45080
    assert wx.send("oZ") == 0  # messages still may: the 48 h window is open
    sandbox.user_messaged("oGone", ago_s=48 * 3600 + 1)
    assert wx.typing("oGone") == 45015
    sandbox.configure(typing_lasts_s=0.2)
    sandbox.user_messaged("oZ")
    assert wx.typing("oZ") == 0
    time.sleep(0.25)
    assert wx.typing("oZ") == 0  # the first one has gone by itself
    r = wx.post("/cgi-bin/message/custom/typing", data=b"not json")
    assert r.json()["errcode"] == 47001
    assert wx.post("/cgi-bin/message/custom/typing", json={"command": "Typing"}).json()["errcode"] == 40003


# ------------------------------------------------------------------------------------------------ voice media


def test_temporary_voice_upload_is_served_listed_and_says_its_sentence(sandbox: Sandbox, wx: WeChat) -> None:
    tone = sandbox.register_voice("已打开客厅的灯", duration_s=0.5)["frequency"]
    mp3, amr = make_tone(tone, 1.5, fmt="mp3"), make_tone(tone, 2.0, fmt="amr")
    up = wx.upload(mp3)
    assert set(up) == {"type", "media_id", "created_at"} and up["type"] == "voice"
    assert abs(up["created_at"] - time.time()) < 5
    got = wx.media_get(up["media_id"])
    assert got.content == mp3 and got.headers["Content-Type"] == "audio/mpeg"
    second = wx.upload(amr, filename="reply.amr")["media_id"]
    listed = wx.inspect("uploads")
    assert [(u["media_id"], u["kind"], u["says"]) for u in listed] == [
        (up["media_id"], "temporary", "已打开客厅的灯"), (second, "temporary", "已打开客厅的灯")]
    assert listed[0]["duration_s"] == pytest.approx(1.5, abs=0.05)
    assert listed[1]["duration_s"] == pytest.approx(2.0, abs=0.05) and listed[1]["content_type"] == "audio/amr"
    unknown = wx.upload(make_tone(tone + 25, 0.5, fmt="mp3"))["media_id"]  # off the grid: says nothing
    assert sandbox.media_info(unknown)["says"] is None
    assert wx.inspect("uploads", media_id=second)["bytes"] == len(amr)
    assert wx.http.get(f"{wx.base}/sandbox/uploads", params={"media_id": "nope"}, timeout=5).status_code == 404
    assert wx.voice("oV", up["media_id"]) == 0
    assert sandbox.custom_messages()[-1] == {"touser": "oV", "msgtype": "voice", "voice": {"media_id": up["media_id"]}}
    assert wx.voice("oV", "never-uploaded") == 40007
    assert wx.send("oV", {"msgtype": "voice", "voice": {}}) == 40007
    assert [c["api"] for c in sandbox.calls()].count("upload") == 3


@pytest.mark.parametrize("case,errcode", [
    ("wav", 40005), ("garbage", 40005), ("image", 40004), ("no-field", 41005), ("empty", 44001),
    ("over-2mb", 40006), ("over-60s", 45007)])
def test_temporary_upload_refuses_what_wechat_refuses(sandbox: Sandbox, wx: WeChat, case: str, errcode: int) -> None:
    data, kind = {
        "wav": (make_tone(1025, 0.5, fmt="wav"), "voice"),
        "garbage": (b"not audio at all", "voice"),
        "image": (make_tone(1025, 0.5, fmt="mp3"), "image"),
        "no-field": (None, "voice"),
        "empty": (b"", "voice"),
        "over-2mb": (bytes(2 * 1024 * 1024 + 1), "voice"),
        "over-60s": (make_tone(1025, 61.0, fmt="mp3"), "voice"),
    }[case]
    held = len(sandbox.uploads())
    answer = wx.upload(data, kind=kind)
    assert answer["errcode"] == errcode, answer
    assert len(sandbox.uploads()) == held  # nothing was stored


def test_sixty_seconds_of_amr_is_accepted(wx: WeChat) -> None:
    assert "media_id" in wx.upload(make_tone(1025, 60.0, fmt="amr"), filename="long.amr")


def test_without_temporary_media_a_bot_falls_back_to_permanent_material(sandbox: Sandbox, wx: WeChat) -> None:
    sandbox.configure(temporary_media=False)
    tone = sandbox.register_voice("今天晴", duration_s=0.5)["frequency"]
    wav = make_tone(tone, 1.0, fmt="wav")
    refused = wx.upload(make_tone(tone, 1.0, fmt="mp3"))
    assert refused["errcode"] == 48001 and "add_material" in refused["errmsg"]
    added = wx.add_material(wav, filename="reply.wav")
    assert set(added) == {"media_id"}
    info = sandbox.media_info(added["media_id"])
    assert (info["kind"], info["says"], info["live"]) == ("permanent", "今天晴", True)
    assert wx.media_get(added["media_id"]).json()["errcode"] == 40007  # permanent is not on media/get
    got = wx.material("get_material", added["media_id"])
    assert got.content == wav and got.headers["Content-Type"] == "audio/x-wav"
    assert wx.voice("oP", added["media_id"]) == 0
    assert wx.material("del_material", added["media_id"]).json() == {"errcode": 0, "errmsg": "ok"}
    assert wx.voice("oP", added["media_id"]) == 40007
    assert wx.material("del_material", added["media_id"]).json()["errcode"] == 40007
    assert wx.material("del_material", None).json()["errcode"] == 41006
    assert wx.material("get_material", added["media_id"]).json()["errcode"] == 40007
    assert sandbox.media_info(added["media_id"])["deleted"] is True
    assert [c["api"] for c in sandbox.calls()][1:] == [
        "upload", "add_material", "get", "get_material", "send", "del_material", "send", "del_material",
        "del_material", "get_material"]  # after the token


def test_permanent_material_formats_and_the_1000_item_cap(sandbox: Sandbox, wx: WeChat) -> None:
    tone = sandbox.register_voice("风很大", duration_s=0.5)["frequency"]
    for fmt in ("mp3", "amr", "wav"):
        assert "media_id" in wx.add_material(make_tone(1025, 0.5, fmt=fmt), filename=f"a.{fmt}")
    wma = wma_tone(tone, 1.0)
    media_id = wx.add_material(wma, filename="a.wma")["media_id"]
    assert (sandbox.media_info(media_id)["says"], sandbox.media_info(media_id)["content_type"]) == (
        "风很大", "audio/x-ms-wma")
    assert wx.upload(wma, filename="a.wma")["errcode"] == 40005  # temporary media: amr and mp3 only
    assert wx.add_material(b"garbage")["errcode"] == 40005
    assert wx.add_material(make_tone(1025, 61.0, fmt="mp3"))["errcode"] == 45007
    held = sandbox.state.material_count()
    sandbox.configure(max_materials=held + 1)  # WeChat's cap is 1000; one slot left here
    last = wx.add_material(make_tone(1025, 0.5, fmt="mp3"))["media_id"]
    full = wx.add_material(make_tone(1025, 0.5, fmt="mp3"))
    assert full["errcode"] == 45074 and "delete" in full["errmsg"]
    wx.material("del_material", last)
    assert "media_id" in wx.add_material(make_tone(1025, 0.5, fmt="mp3"))


def test_temporary_media_expires(sandbox: Sandbox, wx: WeChat) -> None:
    sandbox.configure(media_ttl_s=0.2)  # WeChat: 3 days
    media_id = wx.upload(make_tone(1025, 0.5, fmt="mp3"))["media_id"]
    assert wx.voice("oE", media_id) == 0
    time.sleep(0.25)
    assert wx.media_get(media_id).json()["errcode"] == 40007
    assert wx.voice("oE", media_id) == 40007
    assert sandbox.media_info(media_id)["live"] is False


# ------------------------------------------------------------------------------------------------ inspecting


def test_the_info_page_shows_the_whole_scene(sandbox: Sandbox, wx: WeChat) -> None:
    sandbox.configure(cs_quota=1)
    wx.send("oI")
    wx.send("oI")
    wx.typing("oI")
    wx.upload(make_tone(1025, 0.5, fmt="mp3"))
    info = wx.inspect("")
    cs = info["customer_service"]
    assert [m["touser"] for m in cs["messages"]] == ["oI"]
    assert [r["errcode"] for r in cs["refused"]] == [45047]
    assert [t["command"] for t in cs["typing"]] == ["Typing"]
    assert cs["users"]["oI"]["sent"] == 1 and cs["users"]["oI"]["typing"] is True
    assert info["uploads"][-1]["kind"] == "temporary"
    assert info["settings"]["cs_quota"] == 1
    assert set(wx.inspect("users")) == {"oI"}
    sandbox.reset()
    assert sandbox.users() == {} and sandbox.refused_messages() == [] and sandbox.typing_calls() == []
    assert wx.inspect("users", openid="oI") == {}


def test_user_messages_control_validates_its_body(wx: WeChat) -> None:
    assert wx.control("user_messages", {}).status_code == 400
    assert wx.control("user_messages", {"openid": "oX", "ago_s": -1}).status_code == 400
    answer = wx.control("user_messages", {"openid": "oX", "ago_s": 10}).json()
    assert answer["openid"] == "oX" and answer["last_message_s_ago"] >= 10 and answer["assumed"] is False
