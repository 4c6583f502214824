"""Voice media for replies (bot/wechat/media.py) against the sandbox's real media endpoints over HTTP:
temporary media, permanent material, their typed errors, and the per-account fallback with deletion."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from bot.config import WeChatConfig
from bot.ops.trace import Trace
from bot.sandbox import Sandbox
from bot.store.memory import MemoryStore
from bot.testing import test_config
from bot.voice.synthesizers import build_synthesizer_chain
from bot.voice.tones import make_tone
from bot.wechat import WeChatAPI
from bot.wechat.errors import (
    APIUnauthorizedError,
    InvalidMediaError,
    MaterialQuotaError,
    MediaFormatError,
    MediaSizeError,
)
from bot.wechat.media import VoiceUploader

APPID, SECRET = "wxmediatest", "media-secret"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(appid=APPID, appsecret=SECRET) as sb:
        yield sb


@pytest.fixture(autouse=True)
def clean(sandbox: Sandbox) -> Iterator[None]:
    sandbox.reset(settings=True)
    yield


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def client(sandbox: Sandbox, store: MemoryStore) -> WeChatAPI:
    return WeChatAPI(WeChatConfig(APPID, SECRET, "token", api_base_url=sandbox.url), store)


def clip(sandbox: Sandbox, text: str, seconds: float = 2.0, fmt: str = "amr") -> bytes:
    return make_tone(sandbox.state.clip_frequency(text), seconds, fmt=fmt)


def media_calls(sandbox: Sandbox) -> list[str]:
    return [c["path"].split("/cgi-bin/")[1] for c in sandbox.calls() if "/media/upload" in c["path"]
            or "/material/" in c["path"]]


@pytest.mark.parametrize("fmt", ["amr", "mp3"])
def test_upload_voice_makes_temporary_media_the_user_hears(sandbox: Sandbox, client: WeChatAPI, fmt: str) -> None:
    uploaded = client.media.upload_voice(clip(sandbox, "已打开客厅的灯", fmt=fmt), fmt)
    assert not uploaded.permanent and uploaded.created_at and abs(uploaded.created_at - time.time()) < 60
    info = sandbox.media_info(uploaded.media_id)
    assert info["kind"] == "temporary" and info["says"] == "已打开客厅的灯"
    assert info["duration_s"] == pytest.approx(2.0, abs=0.05)
    [call] = [c for c in sandbox.calls() if c["path"] == "/cgi-bin/media/upload"]
    assert call["query"] == {"type": "voice"}
    assert client.media.download(uploaded.media_id).content == sandbox.state.find_media(uploaded.media_id).data


def test_permanent_material_is_added_and_deleted(sandbox: Sandbox, client: WeChatAPI) -> None:
    uploaded = client.media.add_voice_material(clip(sandbox, "关闭卧室的灯"), "amr")
    assert uploaded.permanent and sandbox.media_info(uploaded.media_id)["says"] == "关闭卧室的灯"
    client.media.delete_material(uploaded.media_id)
    assert sandbox.media_info(uploaded.media_id)["deleted"]
    with pytest.raises(InvalidMediaError):
        client.media.delete_material(uploaded.media_id)  # already gone: 40007


def test_what_wechat_refuses_comes_back_as_typed_errors(sandbox: Sandbox, client: WeChatAPI) -> None:
    with pytest.raises(MediaFormatError) as exc:
        client.media.upload_voice(b"not audio at all" * 100, "amr")
    assert exc.value.errcode == 40005
    with pytest.raises(MediaFormatError):  # wav is permanent-material only
        client.media.add_voice_material(b"\x00" * 64, "wav")
    with pytest.raises(MediaSizeError) as exc:
        client.media.upload_voice(clip(sandbox, "很长", seconds=61), "amr")
    assert exc.value.errcode == 45007
    with pytest.raises(MediaSizeError) as exc:
        client.media.add_voice_material(b"\x00" * (2 * 1024 * 1024 + 1), "mp3")
    assert exc.value.errcode == 40006
    with pytest.raises(ValueError, match="amr, mp3"):
        client.media.upload_voice(b"RIFF", "wav")  # refused before any call: temporary media is AMR or mp3
    sandbox.configure(max_materials=0)
    with pytest.raises(MaterialQuotaError):
        client.media.add_voice_material(clip(sandbox, "好的"), "amr")


def test_an_account_without_temporary_media_gets_48001(sandbox: Sandbox, client: WeChatAPI) -> None:
    sandbox.configure(temporary_media=False)
    with pytest.raises(APIUnauthorizedError) as exc:
        client.media.upload_voice(clip(sandbox, "好的"), "amr")
    assert exc.value.errcode == 48001


def test_the_uploader_uses_temporary_media_where_the_account_may(sandbox: Sandbox, client: WeChatAPI,
                                                                  store: MemoryStore) -> None:
    uploader = VoiceUploader(client, store)
    trace = Trace("m-test")
    media_id, permanent = uploader.upload(clip(sandbox, "好的"), "amr", trace=trace)
    assert not permanent and sandbox.media_info(media_id)["kind"] == "temporary"
    assert media_calls(sandbox) == ["media/upload"] and store.get(f"voice_media:{APPID}") is None
    assert trace.steps["speech_upload"] > 0


def test_permission_fallback_to_permanent_material_remembered_and_deleted(sandbox: Sandbox, client: WeChatAPI,
                                                                          store: MemoryStore) -> None:
    sandbox.configure(temporary_media=False)
    uploader = VoiceUploader(client, store, ttl_s=3600)
    first, permanent = uploader.upload(clip(sandbox, "打开客厅的灯"), "amr")
    assert permanent and sandbox.media_info(first)["kind"] == "permanent"
    assert store.get(f"voice_media:{APPID}") == "permanent" and 3500 < store.ttl(f"voice_media:{APPID}") <= 3600
    second, permanent = uploader.upload(clip(sandbox, "关闭客厅的灯"), "amr")
    assert permanent
    # the refusal was learnt once: the second part went straight to permanent material
    assert media_calls(sandbox) == ["media/upload", "material/add_material", "material/add_material"]
    assert uploader.release(first) and uploader.release(second)
    assert sandbox.media_info(first)["deleted"] and sandbox.media_info(second)["deleted"]
    assert not uploader.release(first)  # already deleted: logged, never raised
    # another worker (another uploader over the same store) knows it too
    VoiceUploader(client, store).upload(clip(sandbox, "好的"), "amr")
    assert media_calls(sandbox)[-1] == "material/add_material" and media_calls(sandbox).count("media/upload") == 1


def test_the_memory_expires_and_temporary_media_is_tried_again(sandbox: Sandbox, client: WeChatAPI,
                                                               store: MemoryStore) -> None:
    sandbox.configure(temporary_media=False)
    uploader = VoiceUploader(client, store, ttl_s=0.2)
    assert uploader.upload(clip(sandbox, "好的"), "amr")[1]
    sandbox.configure(temporary_media=True)  # the account was verified meanwhile
    time.sleep(0.3)
    assert uploader.upload(clip(sandbox, "好的"), "amr")[1] is False


def test_an_account_refused_both_is_remembered_and_refused_at_once(sandbox: Sandbox, client: WeChatAPI,
                                                                   store: MemoryStore) -> None:
    sandbox.configure(temporary_media=False)
    sandbox.inject_fault("material/add_material", 48001)
    uploader = VoiceUploader(client, store)
    with pytest.raises(APIUnauthorizedError):
        uploader.upload(clip(sandbox, "好的"), "amr")
    calls = len(sandbox.calls())
    with pytest.raises(APIUnauthorizedError, match="remembered"):
        uploader.upload(clip(sandbox, "好的"), "amr")
    assert len(sandbox.calls()) == calls  # no call: the caller answers with text straight away


def test_a_150_second_answer_is_synthesized_uploaded_as_three_parts_and_released(sandbox: Sandbox,
                                                                                  client: WeChatAPI,
                                                                                  store: MemoryStore) -> None:
    sandbox.configure(temporary_media=False)
    text = "打开客厅的灯好的吗，" * 75
    trace = Trace("m-test")
    cfg = test_config(voice={"reply": {"openai": {"url": sandbox.url}}})
    speech = build_synthesizer_chain(cfg).speak(text, trace=trace)
    uploader = VoiceUploader(client, store)
    uploaded = [uploader.upload(part.data, part.fmt, trace=trace) for part in speech.parts]
    assert len(uploaded) == 3 and all(permanent for _, permanent in uploaded)
    heard = [sandbox.media_info(media_id) for media_id, _ in uploaded]
    assert [h["says"] for h in heard] == [text] * 3 and all(h["duration_s"] <= 60 for h in heard)
    assert sum(h["duration_s"] for h in heard) == pytest.approx(150, abs=0.2)
    assert set(trace.steps) == {"synthesize", "speech_transcode", "speech_upload"}
    assert all(uploader.release(media_id) for media_id, _ in uploaded)
    assert all(sandbox.media_info(media_id)["deleted"] for media_id, _ in uploaded)


def test_material_is_released_after_its_grace_period_and_the_oldest_first_when_full(
        sandbox: Sandbox, client: WeChatAPI, store: MemoryStore, caplog: pytest.LogCaptureFixture) -> None:
    """Permanent material is deleted ``grace_s`` after its answer went, by whoever's sweeper finds it due (a
    schedule in the store: it survives a restart); when the account's 1000 items are full (45074 — 3 here), the
    oldest scheduled items go at once, with one clear line, and the upload succeeds."""
    from bot.testing.clock import FakeClock
    from bot.wechat.materials import MaterialReleases
    sandbox.configure(temporary_media=False, max_materials=sandbox.state.material_count() + 3)  # 3 more fit
    clock = FakeClock()
    releases = MaterialReleases(client, store, clock, appid=APPID, grace_s=3600)
    uploader = VoiceUploader(client, store, releases=releases)
    held = [uploader.upload(clip(sandbox, f"第{i}段"), "amr")[0] for i in range(3)]
    for media_id in held:  # each answer delivered a minute apart
        releases.schedule([media_id])
        clock.advance(60)
    assert releases.release_due() == 0 and not any(sandbox.media_info(m)["deleted"] for m in held)
    fourth = uploader.upload(clip(sandbox, "第四段"), "amr")[0]  # full: the oldest scheduled ones make room
    assert sandbox.media_info(fourth)["kind"] == "permanent"
    assert [sandbox.media_info(m)["deleted"] for m in held] == [True, True, True]
    assert [r.getMessage() for r in caplog.records if "45074" in r.getMessage()] == [
        "voice media: the account's permanent material is full (45074, 1000 items): released the 3 oldest item(s) "
        "before their 3600s grace period ended ([voice.reply] material_grace_s)"]
    releases.schedule([fourth])
    restarted = MaterialReleases(client, store, clock, appid=APPID, grace_s=3600)  # another process, later
    clock.advance(3599)
    assert restarted.release_due() == 0 and not sandbox.media_info(fourth)["deleted"]
    clock.advance(2)
    assert restarted.release_due() == 1 and sandbox.media_info(fourth)["deleted"]
    assert restarted.release_due() == 0 and releases.release_due() == 0  # released once, by one of them
