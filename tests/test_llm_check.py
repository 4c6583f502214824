"""handlers.llm: what ``python -m bot check`` says about the chat service (against the sandbox), and the
``[llm]`` config: every mistake one line naming the key, the key from the environment kept out of everything."""
from __future__ import annotations

import io
from typing import Any

import pytest
from llm_support import KEY, llm_config, llm_sandbox, sandbox_fixtures

from bot.config import Config
from bot.sandbox import Sandbox
from bot.testing.net import free_port

sandbox, _clean = sandbox_fixtures(llm_sandbox)


# -- check --------------------------------------------------------------------------------------------
def _check(config: Config) -> tuple[int, str]:
    from bot.cli.check import check_routers, report
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # a UTF-8 terminal: ✓ and ✗
    code = report(config, stream=out, checks=check_routers)
    out.seek(0)
    return code, out.read()


def test_check_reports_the_service_and_the_model(sandbox: Sandbox) -> None:
    code, out = _check(llm_config(sandbox))
    assert code == 0, out
    assert f"✓ llm service ({sandbox.url}/v1): answers with sandbox-chat" in out
    assert "✓ llm model (sandbox-chat): listed by the service (1 models)" in out


@pytest.mark.parametrize("case", ["wrong key", "unknown model", "unreachable", "no model list"])
def test_check_names_what_to_fix_and_never_the_key(sandbox: Sandbox, case: str) -> None:
    config = llm_config(sandbox)
    if case == "wrong key":
        config = config.replace(llm={"api_key": "sk-wrong-but-secret-123"})
    elif case == "unknown model":
        config = config.replace(llm={"model": "gpt-nope"})
    elif case == "unreachable":
        config = config.replace(llm={"url": f"http://127.0.0.1:{free_port()}/v1"})
    else:
        sandbox.inject_fault("v1/models", 0, http_status=404)
    code, out = _check(config)
    lines = {line.split(" (", 1)[0]: line for line in out.splitlines() if line.startswith(("✓", "✗"))}
    if case == "wrong key":
        assert code == 1 and "auth" in lines["✗ llm service"] and "[llm] api_key" in lines["✗ llm service"], out
        assert "sk-wrong-but-secret-123" not in out
    elif case == "unknown model":
        assert code == 1 and "not_found" in lines["✗ llm service"], out
        assert "not among the 1 models the service lists (sandbox-chat)" in lines["✗ llm model"], out
    elif case == "unreachable":
        assert code == 1 and "connection" in lines["✗ llm service"] and "[llm] url" in lines["✗ llm service"], out
    else:
        assert code == 0 and "not checked: the service lists no models" in lines["✓ llm model"], out
    assert KEY not in out


def test_python_m_bot_check_with_the_key_from_the_environment(sandbox: Sandbox, write_config: Any) -> None:
    from conftest import run_cli
    llm = {"url": f"{sandbox.url}/v1", "model": "sandbox-chat"}
    path = write_config(wechat={"api_base_url": sandbox.url}, handlers={"routers": ["handlers.llm:router"]}, llm=llm)
    good = run_cli("check", "--config", str(path), env={"PYTHONIOENCODING": "utf-8", "VOICEBOT_LLM_API_KEY": KEY})
    assert good.returncode == 0 and "✓ llm service" in good.stdout and "✓ llm model" in good.stdout, good.stdout
    bad = run_cli("check", "--config", str(path), env={"PYTHONIOENCODING": "utf-8",
                                                        "VOICEBOT_LLM_API_KEY": "sk-not-the-key-777"})
    assert bad.returncode == 1 and "✗ llm service" in bad.stdout and "(auth)" in bad.stdout, bad.stdout
    for result in (good, bad):
        assert KEY not in result.stdout + result.stderr and "sk-not-the-key-777" not in result.stdout + result.stderr


# -- config -------------------------------------------------------------------------------------------
BASE = {"wechat": {"appid": "wxa", "appsecret": "s", "token": "t"}}
ENABLED = {"handlers": {"routers": ["handlers.llm:router"]}, "llm": {"url": "http://127.0.0.1:1/v1", "model": "m"}}
CONFIG_ERRORS = {
    "no url": ({"handlers": ENABLED["handlers"], "llm": {"model": "m"}}, "[llm] url: required when"),
    "no model": ({"handlers": ENABLED["handlers"], "llm": {"url": "http://x/v1"}}, "[llm] model: required when"),
    "bad url": ({"llm": {"url": "ftp://x"}}, "[llm] url: expected an http:// or https:// URL"),
    "temperature": ({"llm": {"temperature": 2.5}}, "[llm] temperature: expected a number from 0 to 2"),
    "timeout": ({"llm": {"timeout_s": 0}}, "[llm] timeout_s: expected a positive number"),
    "negative turns": ({"llm": {"max_history_turns": -1}}, "[llm] max_history_turns: expected a number >= 0"),
    "extra not a table": ({"llm": {"extra": "x"}}, "[llm] extra: expected a table"),
    "extra sets stream": ({"llm": {"extra": {"stream": False}}}, "[llm] extra: 'stream' is set by handlers.llm"),
    "empty reset word": ({"llm": {"reset_words": [""]}}, "[llm] reset_words: expected non-empty words"),
    "empty apology": ({"llm": {"apologies": {"timeout": " "}}}, "[llm.apologies] timeout: expected a non-empty"),
    "unknown apology": ({"llm": {"apologies": {"oops": "x"}}}, "[llm.apologies] oops: unknown key"),
}


@pytest.mark.parametrize("name", list(CONFIG_ERRORS))
def test_config_mistakes_are_one_line_naming_the_key(name: str) -> None:
    from bot.config import ConfigError, config_from_dict
    section, message = CONFIG_ERRORS[name]
    with pytest.raises(ConfigError) as err:
        config_from_dict({**BASE, **section}, env={})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_key_comes_from_the_environment_and_stays_out_of_repr_and_logs() -> None:
    from bot.config import config_from_dict
    from bot.ops.logs import RedactFilter, config_secrets
    cfg = config_from_dict({**BASE, **ENABLED, "llm": {**ENABLED["llm"], "api_key": "sk-file"}},
                           env={"VOICEBOT_LLM_API_KEY": KEY})
    assert cfg.llm.api_key == KEY and KEY not in repr(cfg)
    assert KEY in config_secrets(cfg)
    assert KEY not in RedactFilter(config_secrets(cfg)).redact(f"calling with {KEY}")


def test_without_the_extra_the_router_says_what_to_install() -> None:
    import subprocess
    import sys

    from bot.config.extras import install_hint
    code = ("import sys; sys.modules['openai'] = None\n"  # as if the llm extra were not installed
            "from bot.config import config_from_dict, ConfigError\n"
            "from bot.core.loading import load_router\n"
            "try:\n    config_from_dict({'wechat': {'appid': 'a', 'appsecret': 's', 'token': 't'}, "
            "'handlers': {'routers': ['handlers.llm:router']}, 'llm': {'url': 'http://x/v1', 'model': 'm'}}, env={})\n"
            "except ConfigError as exc:\n    print(exc)\n"
            "try:\n    load_router('handlers.llm:router', '[handlers] routers[0]')\nexcept ConfigError as exc:\n"
            "    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    refused, unloadable = out.splitlines()  # issue 22: the config naming it is refused at load, in every entry point
    assert refused == ("[handlers] routers[0]: 'handlers.llm:router' needs the llm extra, which is not installed (no "
                       f"module 'openai'): {install_hint('llm')}")
    assert unloadable.startswith("[handlers] routers[0]: cannot import module 'handlers.llm'")
    assert unloadable.endswith(f"the llm extra: {install_hint('llm')})")  # the install as it was made (issue 22)
