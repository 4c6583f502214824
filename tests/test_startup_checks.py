"""Optional extras and synthesizers are checked at start-up; a synthesizer that cannot run never costs the answer
(issue 22, item 3), and the install hint fits how the bot was installed (item 9).
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, write_config_file
from delivery_support import bot_config, start_sandbox

from bot.config import ConfigError, config_from_dict, extras
from bot.core.webhook import Webhook
from bot.runtime import build_delivery, build_pipeline, build_services, build_webhook
from bot.sandbox import Sandbox
from bot.testing import BotClient


def cannot_load(config: Any) -> Any:
    """A synthesizer whose library cannot be loaded on this machine (as espeak-ng's would without its data)."""
    raise OSError("libespeak-ng.so.1: cannot open shared object file: No such file or directory")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    sb = start_sandbox(0.05)
    yield sb
    sb.stop()


def speaking(sandbox: Sandbox, *synthesizers: str) -> Webhook:
    """A bot answering everything with voice (WeChat's real clock: synthesis and upload fit in the first try),
    put together as ``build_webhook`` does but without its start-up check: the synthesizers fail only now, at run
    time, as a library that stops loading would."""
    config = bot_config(sandbox.url, scale=1.0, handlers={"routers": ["handlers.echo:router"]},
                        voice={"reply": {"when": "always", "synthesizers": list(synthesizers),
                                         "openai": {"url": sandbox.url}}})
    with pytest.raises(ConfigError):  # what start-up says about them
        build_webhook(config)
    services = build_services(config)
    pipeline = build_pipeline(config, services=services)
    return Webhook(config, pipeline=pipeline, delivery=build_delivery(pipeline, services))


# -- a missing extra: refused where it is named, with the command that adds it -----------------------------
def test_a_synthesizer_whose_extra_is_missing_is_refused_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # not installed, as far as importing can tell
    raw = {"wechat": {"appid": "wxa", "appsecret": "s", "token": "t"},
           "voice": {"reply": {"synthesizers": ["openai", "espeak"]}}}  # the README's own example
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw)
    assert str(caught.value) == ("[voice.reply] synthesizers[1]: 'espeak' needs the espeak extra, which is not "
                                 f"installed (no module 'espeakng_loader'): {extras.install_hint('espeak')}")


@pytest.mark.parametrize("sections, key, extra, module", [
    ({"handlers": {"routers": ["handlers.llm:router"]}, "llm": {"url": "http://127.0.0.1:9/v1", "model": "m"}},
     "[handlers] routers[0]: 'handlers.llm:router'", "llm", "openai"),
    ({"storage": {"url": "redis://127.0.0.1:6379/15"}}, "[storage] url: a redis:// url", "redis", "redis"),
])
def test_every_extra_a_config_names_is_checked(monkeypatch: pytest.MonkeyPatch, sections: dict[str, Any], key: str,
                                               extra: str, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"wechat": {"appid": "wxa", "appsecret": "s", "token": "t"}, **sections})
    assert str(caught.value).startswith(f"{key} needs the {extra} extra, which is not installed (no module {module!r})")


@pytest.mark.parametrize("direct_url, expected", [
    (None, "'wechat-voicebot[llm]'"),  # from the package index
    ({"url": "file:///home/me/wechat-voicebot", "dir_info": {}}, "'/home/me/wechat-voicebot[llm]'"),  # a clone
    ({"url": "file:///home/me/wechat-voicebot", "dir_info": {"editable": True}},
     "-e '/home/me/wechat-voicebot[llm]'"),  # make install
    ({"url": "https://github.com/x/wechat-voicebot", "vcs_info": {"vcs": "git"}},
     "'wechat-voicebot[llm] @ https://github.com/x/wechat-voicebot'"),
])
def test_the_install_hint_fits_how_the_bot_was_installed(monkeypatch: pytest.MonkeyPatch, direct_url: Any,
                                                         expected: str) -> None:
    class Installed:
        def read_text(self, name: str) -> str | None:
            return json.dumps(direct_url) if direct_url is not None and name == "direct_url.json" else None
    monkeypatch.setattr(extras.metadata, "distributions", lambda name: [Installed()])
    hint = extras.install_hint("llm")
    assert hint.endswith(f"python -m pip install {expected}") or hint.endswith(f"python3 -m pip install {expected}"), hint


# -- check tries each synthesizer --------------------------------------------------------------------------
def test_check_lists_the_synthesizers_and_tries_each(tmp_path: Path, sandbox: Sandbox) -> None:
    path = write_config_file(tmp_path, wechat={"api_base_url": sandbox.url}, voice={"reply": {
        "when": "voice", "synthesizers": ["openai", "espeak", "test_startup_checks:cannot_load"],
        "openai": {"url": sandbox.url}}})
    refused = run_cli("check", "--config", str(path), cwd=Path(__file__).parent)
    assert refused.returncode == 2 and refused.stderr == (
        "config error: [voice.reply] synthesizers[2]: building 'test_startup_checks:cannot_load' raised OSError: "
        "libespeak-ng.so.1: cannot open shared object file: No such file or directory\n")
    path = write_config_file(tmp_path, wechat={"api_base_url": sandbox.url}, voice={"reply": {
        "when": "voice", "synthesizers": ["openai", "espeak"], "openai": {"url": "http://127.0.0.1:9"}}})
    result = run_cli("check", "--config", str(path), env={"PYTHONIOENCODING": "utf-8"})
    lines = [line for line in result.stdout.splitlines() if "synthesizer " in line]
    assert len(lines) == 2 and lines[0].startswith("✗ synthesizer openai: failed (unavailable:"), result.stdout
    assert lines[1].startswith("✓ synthesizer espeak: ready: a test sentence became ") and " s of amr voice" in lines[1]
    assert result.returncode == 1


def test_check_says_voice_replies_are_off(write_config: Any) -> None:
    result = run_cli("check", "--config", str(write_config()), env={"PYTHONIOENCODING": "utf-8"})
    assert '✓ voice replies: off ([voice.reply] when = "never"): synthesizers openai not tried' in result.stdout


# -- at run time: a synthesizer that cannot run hands over ---------------------------------------------------
def test_a_synthesizer_that_cannot_be_built_falls_through_to_the_next(sandbox: Sandbox) -> None:
    reply = BotClient(speaking(sandbox, "test_startup_checks:cannot_load", "openai")).text("你好")
    assert reply.type == "voice" and reply.media_id, reply.body


def test_when_none_can_run_the_answer_is_the_text_never_the_apology(sandbox: Sandbox) -> None:
    webhook = speaking(sandbox, "test_startup_checks:cannot_load", "nomodule_xyz:Synth")
    assert BotClient(webhook).text("你好").content == "你好"
