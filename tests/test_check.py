"""``python -m bot check``, run as a user runs it (a subprocess), against the real sandbox over HTTP."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from delivery_support import SECRET, start_sandbox

from bot.sandbox import Sandbox
from bot.testing.net import free_port


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    sb = start_sandbox(0.05)
    yield sb
    sb.stop()


def check(write_config: Any, sandbox: Sandbox, env: dict[str, str] | None = None, voice_file: Path | None = None,
          **sections: Any) -> Any:
    wechat = {"api_base_url": sandbox.url, **sections.pop("wechat", {})}
    path = write_config(wechat=wechat, **sections)
    extra = ["--voice", str(voice_file)] if voice_file else []
    return run_cli("check", "--config", str(path), *extra, env={"PYTHONIOENCODING": "utf-8", **(env or {})})


def lines(result: Any) -> dict[str, str]:
    """``{check name: whole line}`` (``!``: a warning)."""
    return {line[2:].split(": ", 1)[0]: line for line in result.stdout.splitlines() if line[:1] in "✓✗!"}


def clip_file(sandbox: Sandbox, tmp_path: Path, text: str = "打开客厅的灯") -> Path:
    """A recording the sandbox hears as ``text`` (its tone for that sentence), as ``check --voice`` takes one."""
    media_id = sandbox.register_voice(text)["media_id"]
    path = tmp_path / "clip.amr"
    path.write_bytes(sandbox.media_data(media_id)[0])  # type: ignore[index]
    return path


def test_everything_ready_against_the_sandbox(write_config: Any, sandbox: Sandbox, tmp_path: Path) -> None:
    result = check(write_config, sandbox, voice={"recognizers": ["push", "wechat"]},
                   voice_file=clip_file(sandbox, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    found = lines(result)
    assert {f"WeChat API ({sandbox.url}, stable token)", "store (memory://)", "voice clip", "recognizer push",
            "recognizer wechat", "voice fallback", "router handlers.lights:router", "router handlers.echo:router",
            "callback", "customer-service API", "voice replies"} == set(found)
    assert all(line.startswith("✓") for name, line in found.items() if name != "voice fallback"), result.stdout
    assert re.fullmatch(r'✓ recognizer wechat: heard "打开客厅的灯" in \d\.\d\d s', found["recognizer wechat"])
    assert found["voice fallback"].startswith("! voice fallback: only WeChat's own recognition is configured")
    assert "available: late answers are sent as customer-service messages" in found["customer-service API"]
    assert result.stdout.rstrip().endswith("ready")
    apis = [c["api"] for c in sandbox.calls()]
    tail = apis[len(apis) - 2 - apis[::-1].index("send"):]
    assert tail[:2] == ["stable_token", "send"]  # a real token, then the probe
    assert tail[2:4] == ["stable_token", "addvoicetorecofortext"] and set(tail[4:]) == {"queryrecoresultfortext"}


@pytest.mark.parametrize("reply,ok,says", [
    ({}, True, "unavailable (errcode 48001): the customer-service API needs a verified account; late answers will "
               "be picked up"),
    ({"customer_service": True}, False, "set [reply] customer_service"),
    ({"customer_service": False}, True, "off by config"),
])
def test_check_tells_an_account_without_the_customer_service_api(write_config: Any, reply: dict[str, Any], ok: bool,
                                                                  says: str) -> None:
    with start_sandbox(customer_service=False) as unverified:
        result = check(write_config, unverified, reply=reply)
    line = lines(result)["customer-service API"]
    assert line.startswith("✓" if ok else "✗") and says in line, result.stdout
    assert not [m for m in unverified.custom_messages()]  # the probe sent nothing


def test_wrong_appsecret_names_the_fix(write_config: Any, sandbox: Sandbox) -> None:
    result = check(write_config, sandbox, wechat={"appsecret": "not-the-secret"})
    assert result.returncode == 1, result.stdout
    api = lines(result)[f"WeChat API ({sandbox.url}, stable token)"]
    assert api.startswith("✗") and "40125" in api and "[wechat] appsecret" in api
    assert lines(result)["recognizer wechat"].startswith("✗")  # it needs that token
    assert "not-the-secret" not in result.stdout + result.stderr and SECRET not in result.stdout


def test_whitelist_errcode_says_add_the_ip(write_config: Any, sandbox: Sandbox) -> None:
    sandbox.inject_fault("stable_token", 40164)
    result = check(write_config, sandbox)
    api = lines(result)[f"WeChat API ({sandbox.url}, stable token)"]
    assert result.returncode == 1 and "40164" in api and "IP whitelist" in api, result.stdout


def test_unreachable_redis_and_openai_and_ascii_output(write_config: Any, sandbox: Sandbox) -> None:
    port = free_port()
    result = check(write_config, sandbox, env={"PYTHONIOENCODING": "ascii"},
                   storage={"url": f"redis://:hunter2pass@127.0.0.1:{port}/0"},
                   voice={"recognizers": ["push", "openai"], "openai": {"url": f"http://127.0.0.1:{free_port()}"}})
    assert result.returncode == 1
    out = result.stdout
    store = next(line for line in out.splitlines() if "store (" in line)
    assert store.startswith("[FAIL]") and "unreachable" in store and "[storage] url" in store, out
    assert "hunter2pass" not in out
    openai = next(line for line in out.splitlines() if "recognizer openai" in line)
    assert openai.startswith("[FAIL]") and "failed in" in openai and "(unavailable: " in openai
    assert "check [voice.openai] url" in openai
    assert next(line for line in out.splitlines() if "recognizer push" in line).startswith("[ok]")
    assert "✓" not in out and "✗" not in out


def test_without_a_clip_each_recognizer_is_checked_for_what_it_needs(write_config: Any, sandbox: Sandbox,
                                                                      tmp_path: Path) -> None:
    result = check(write_config, sandbox, voice={"recognizers": ["openai"], "openai": {"url": sandbox.url}},
                   voice_file=tmp_path / "missing.amr")
    found = lines(result)
    assert found["voice clip"].startswith("✗") and "cannot read" in found["voice clip"], result.stdout
    assert found["recognizer openai"].startswith("✓") and "reachable (HTTP" in found["recognizer openai"]
    assert "voice fallback" not in found  # a speech service is configured


def test_a_retired_recognition_without_a_fallback_says_what_to_configure(write_config: Any) -> None:
    """No --voice against the sandbox: one of its own clips (it hears no speech). The wechat line says it heard
    nothing and why; the last voice line says what to configure. Nothing is sent to any user."""
    with start_sandbox(recognition_retired=True) as retired:
        result = check(write_config, retired, voice={"recognizers": ["push", "wechat"]})
        found = lines(result)
        assert result.returncode == 1, result.stdout
        assert found["voice clip"] == ('✓ voice clip: 2.0 s, the sandbox\'s clip for "打开客厅的灯" (the sandbox hears '
                                       'its own clips, not speech)'), result.stdout
        wechat = found["recognizer wechat"]
        assert wechat.startswith("✗ recognizer wechat: heard nothing in ") and "(empty_final: " in wechat
        assert "retired" in wechat
        fallback = found["voice fallback"]
        assert fallback.startswith("! ") and '[voice] recognizers = ["push", "wechat", "openai"]' in fallback
        assert "[voice.openai] url" in fallback
        (upload,) = [c for c in retired.calls() if c["api"] == "addvoicetorecofortext"]
        assert upload["errcode"] == 0 and upload["query"]["voice_id"].startswith("wvb")
        assert not retired.custom_messages()  # the customer-service probe names no user and is refused
        assert {m["touser"] for m in retired.refused_messages()} == {""}


def test_real_speech_from_espeak_reaches_the_speech_service(write_config: Any, sandbox: Sandbox) -> None:
    """Not against the sandbox (its WeChat API here is a closed port): the clip is espeak-ng speaking the sentence,
    sent to the speech service, which in this sandbox hears only tones: "heard nothing", with the fix."""
    result = check(write_config, sandbox, wechat={"api_base_url": f"http://127.0.0.1:{free_port()}"},
                   voice={"recognizers": ["openai"], "openai": {"url": sandbox.url}})
    found = lines(result)
    assert re.fullmatch(r'✓ voice clip: \d\.\d s, espeak-ng saying "打开客厅的灯"', found["voice clip"]), result.stdout
    openai = found["recognizer openai"]
    assert openai.startswith("✗ recognizer openai: heard nothing in ") and "check [voice.openai] model" in openai
    (stt,) = [c for c in sandbox.calls() if c["api"] == "transcriptions"][-1:]
    assert (stt["audio"]["codec"], stt["audio"]["sample_rate"], stt["audio"]["channels"]) == ("mp3", 16000, 1)
    assert stt["audio"]["bytes"] > 2000 and stt["form"]["language"] == "zh"  # about a second of speech


def test_a_fallback_that_hears_the_clip_makes_the_failing_wechat_a_warning(write_config: Any,
                                                                            tmp_path: Path) -> None:
    with start_sandbox(recognition_retired=True) as retired:
        result = check(write_config, retired, voice_file=clip_file(retired, tmp_path),
                       voice={"recognizers": ["push", "wechat", "openai"], "openai": {"url": retired.url}})
    found = lines(result)
    assert result.returncode == 0, result.stdout
    assert found["recognizer wechat"].startswith("! recognizer wechat: heard nothing")
    assert found["recognizer wechat"].endswith("the chain hands over to openai, which heard it")
    assert re.fullmatch(r'✓ recognizer openai: heard "打开客厅的灯" in \d\.\d\d s', found["recognizer openai"])
    assert "voice fallback" not in found


def test_unloadable_router_fails(write_config: Any, sandbox: Sandbox) -> None:
    result = check(write_config, sandbox, handlers={"routers": ["handlers.lights:router", "nosuchmodule:router"]})
    assert result.returncode == 1
    assert lines(result)["router nosuchmodule:router"].startswith("✗")
    assert "cannot import module 'nosuchmodule'" in lines(result)["router nosuchmodule:router"]
    assert lines(result)["router handlers.lights:router"].startswith("✓")


def test_broken_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[wechat]\nappid = "x"\nappsecret = "y"\ntoken = "z"\n[voice]\nlang = "zh"\n', encoding="utf-8")
    result = run_cli("check", "--config", str(path))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "config error: [voice] lang: expected 'zh_CN' or 'en_US', got 'zh'\n"
