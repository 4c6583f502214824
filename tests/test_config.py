"""Configuration: every mistake is one clear line naming the key; env secrets win; secrets stay out of repr."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, run_cli

from bot.config import Config, ConfigError, config_from_dict, load_config

VALID_WECHAT = '[wechat]\nappid = "wxa"\nappsecret = "s3cret-value"\ntoken = "t0ken-value"\n'


def load_text(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, env=env or {})


def test_example_config_loads_with_its_documented_defaults() -> None:
    cfg = load_config(REPO / "config.example.toml", env={})
    assert cfg.wechat.appid == "wxsandbox" and len(cfg.wechat.encoding_aes_key) == 43
    assert cfg.handlers.routers == ["handlers.dialog:router", "handlers.lights:router", "handlers.translate:router",
                                    "handlers.story:router", "handlers.echo:router"]
    assert cfg.server.replay_window_s == 300.0 and isinstance(cfg.server.replay_window_s, float)
    assert cfg.voice.lang == "zh_CN" and cfg.voice.openai.model == "whisper-1"
    assert cfg.base_dir == REPO
    # every key the dataclasses know is documented in the example (it says "every key is listed")
    import dataclasses
    text = (REPO / "config.example.toml").read_text(encoding="utf-8")
    for section in ("wechat", "server", "handlers", "voice", "storage", "logging", "matching", "session", "forward",
                    "llm"):
        for f in dataclasses.fields(getattr(cfg, section)):
            if f.name not in ("openai", "reply", "apologies"):
                assert f"\n{f.name} = " in text, f"[{section}] {f.name} is not in config.example.toml"
    for table in (cfg.voice.openai, cfg.voice.reply, cfg.voice.reply.openai, cfg.llm.apologies):
        for f in dataclasses.fields(table):
            assert f.name == "openai" or f"\n{f.name} = " in text, f"{f.name} is not in config.example.toml"


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, VALID_WECHAT)
    assert cfg.wechat.encoding_aes_key == "" and cfg.server.path == "/wechat"
    assert cfg.server.max_body_bytes == 65536 and cfg.handlers.routers == ["handlers.echo:router"]
    assert cfg.base_dir == tmp_path.resolve()


ERRORS = {
    "missing appid": ('[wechat]\nappsecret = "s"\ntoken = "t"\n', "[wechat] appid", "missing"),
    "missing [wechat]": ('[server]\nport = 80\n', "[wechat] appid", "missing"),
    "missing token": ('[wechat]\nappid = "a"\nappsecret = "s"\n', "[wechat] token", "missing"),
    "wrong type int": (VALID_WECHAT + '[server]\nport = "8080"\n', "[server] port", "expected an integer"),
    "bool is not int": (VALID_WECHAT + '[server]\nport = true\n', "[server] port", "expected an integer"),
    "wrong type str": ('[wechat]\nappid = 123\nappsecret = "s"\ntoken = "t"\n', "[wechat] appid", "expected a string"),
    "wrong type float": (VALID_WECHAT + '[voice]\nwindow_s = "10"\n', "[voice] window_s", "expected a number"),
    "wrong type bool": (VALID_WECHAT + '[voice]\nuse_push_recognition = "yes"\n', "[voice] use_push_recognition",
                        "expected true or false"),
    "list expected": (VALID_WECHAT + '[handlers]\nrouters = "handlers.echo:router"\n', "[handlers] routers",
                      "expected a list"),
    "list item type": (VALID_WECHAT + '[handlers]\nrouters = [1]\n', "[handlers] routers[0]", "expected a string"),
    "unknown key": (VALID_WECHAT + '[server]\nprot = 8080\n', "[server] prot", "unknown key"),
    "unknown section": (VALID_WECHAT + '[wechta]\nport = 8080\n', "[wechta]: unknown section", "expected one of: "
                        "wechat, server"),
    "unknown nested key": (VALID_WECHAT + '[voice.openai]\nmodle = "x"\n', "[voice.openai] modle", "unknown key"),
    "nested wrong type": (VALID_WECHAT + '[voice.openai]\ntimeout_s = "8"\n', "[voice.openai] timeout_s",
                          "expected a number"),
    "section not a table": ('wechat = "wxa"\n', "[wechat]", "expected a table"),
    "bad lang literal": (VALID_WECHAT + '[voice]\nlang = "fr_FR"\n', "[voice] lang", "'zh_CN' or 'en_US'"),
    "bad token_endpoint": (VALID_WECHAT + 'token_endpoint = "new"\n', "[wechat] token_endpoint", "'stable' or 'classic'"),
    "aes key too short": (VALID_WECHAT + 'encoding_aes_key = "abc"\n', "[wechat] encoding_aes_key", "43 characters"),
    "aes key too long": (VALID_WECHAT + f'encoding_aes_key = "{"a" * 44}"\n', "[wechat] encoding_aes_key", "got 44"),
    "path without slash": (VALID_WECHAT + '[server]\npath = "wechat"\n', "[server] path", "starting with '/'"),
    "port out of range": (VALID_WECHAT + '[server]\nport = 70000\n', "[server] port", "1-65535"),
    "unknown log level": (VALID_WECHAT + '[logging]\nlevel = "LOUD"\n', "[logging] level", "DEBUG, INFO, WARNING"),
    "bad router spec": (VALID_WECHAT + '[handlers]\nrouters = ["not a spec!"]\n', "[handlers] routers[0]",
                        "module:attribute"),
    "aes key not base64": (VALID_WECHAT + f'encoding_aes_key = "{"-" * 43}"\n', "[wechat] encoding_aes_key",
                           "43 characters of base64"),
    "aes key with a space": (VALID_WECHAT + f'encoding_aes_key = "{"A" * 42} "\n', "[wechat] encoding_aes_key",
                             "43 characters of base64"),
    "budget over WeChat's timeout": (VALID_WECHAT + '[reply]\nbudget_s = 6.0\n', "[reply] budget_s",
                                     "less than wechat_timeout_s (5), got 6"),
    "no tries": (VALID_WECHAT + '[reply]\ntries = 0\n', "[reply] tries", "positive"),
    "rq without redis": (VALID_WECHAT + '[reply]\nexecutor = "rq"\n', "[reply] executor",
                         '"rq" needs a redis:// (or rediss://) [storage] url, got sqlite://'),
    "no share for WeChat": (VALID_WECHAT + '[voice]\nwechat_share_s = 0\n', "[voice] wechat_share_s",
                            "positive number, got 0"),
    "stt url not http": (VALID_WECHAT + '[voice.openai]\nurl = "api.groq.com"\n', "[voice.openai] url",
                         "http:// or https:// URL"),
    "stt language with a space": (VALID_WECHAT + '[voice.openai]\nlanguage = "zh CN"\n', "[voice.openai] language",
                                  "language code"),
    "stt timeout": (VALID_WECHAT + '[voice.openai]\ntimeout_s = 0\n', "[voice.openai] timeout_s", "positive"),
    "bad TOML": (VALID_WECHAT + "[server\nport = 1\n", "config.toml", "not valid TOML"),
    "duplicate key": (VALID_WECHAT + 'appid = "again"\n', "config.toml", "not valid TOML"),
}


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_config_error_is_one_line_naming_the_key(tmp_path: Path, name: str) -> None:
    text, key, expectation = ERRORS[name]
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    assert key in message and expectation in message, message
    assert isinstance(info.value, ValueError)
    exc = info.value  # no chained traceback noise behind the one line
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)


def test_missing_file_names_the_next_step(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.toml \(copy config.example.toml to "
                                          r"config.toml and edit it, or pass --config FILE\)$"):
        load_config(tmp_path / "nope.toml")


def test_a_valid_aes_key_decodes_to_32_bytes(tmp_path: Path) -> None:
    """WeChat's keys: 43 characters of base64; the README's example key and a random one load."""
    import base64
    import os
    for key in ("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", base64.b64encode(os.urandom(32)).decode()[:43]):
        assert load_text(tmp_path, VALID_WECHAT + f'encoding_aes_key = "{key}"\n').wechat.encoding_aes_key == key


def test_aes_key_error_does_not_show_the_key(tmp_path: Path) -> None:
    key = "!" + "K" * 42
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, VALID_WECHAT + f'encoding_aes_key = "{key}"\n')
    assert "KKKK" not in str(info.value) and "mp.weixin.qq.com" in str(info.value)


@pytest.mark.parametrize("var,value,key", [
    ("WECHAT_AES_KEY", "short", "[wechat] encoding_aes_key"),
    ("WECHAT_AES_KEY", "-" * 43, "[wechat] encoding_aes_key"),
])
def test_an_error_in_an_environment_value_says_so(tmp_path: Path, var: str, value: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, VALID_WECHAT, env={var: value})
    message = str(info.value)
    assert message.startswith(key) and message.endswith(f"(the value comes from the environment variable {var})")


def test_a_file_error_does_not_blame_the_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, VALID_WECHAT + 'encoding_aes_key = "short"\n', env={"WECHAT_TOKEN": "t-env"})
    assert "environment" not in str(info.value)


def test_unreadable_paths_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path)  # a directory
    path = tmp_path / "latin1.toml"
    path.write_bytes(VALID_WECHAT.replace("wxa", "caf\xe9").encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        load_config(path)
    assert "\n" not in str(info.value)


def test_env_overrides_win_over_the_file(tmp_path: Path) -> None:
    env = {"WECHAT_APPID": "wxfromenv", "WECHAT_APPSECRET": "env-secret", "WECHAT_TOKEN": "env-token",
           "WECHAT_AES_KEY": "Z" * 43}
    cfg = load_text(tmp_path, VALID_WECHAT + 'encoding_aes_key = ""\n', env=env)
    assert (cfg.wechat.appid, cfg.wechat.appsecret, cfg.wechat.token, cfg.wechat.encoding_aes_key) == \
        ("wxfromenv", "env-secret", "env-token", "Z" * 43)


def test_the_speech_service_key_comes_from_the_environment_too(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, VALID_WECHAT + '[voice.openai]\napi_key = "in-file"\n',
                    env={"VOICEBOT_STT_API_KEY": "sk-from-env"})
    assert cfg.voice.openai.api_key == "sk-from-env" and "sk-from-env" not in repr(cfg)


def test_env_supplies_what_the_file_leaves_out(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, '[server]\nport = 9000\n',
                    env={"WECHAT_APPID": "wxe", "WECHAT_APPSECRET": "s", "WECHAT_TOKEN": "t"})
    assert cfg.wechat.appid == "wxe" and cfg.server.port == 9000


def test_empty_env_var_does_not_override(tmp_path: Path) -> None:
    assert load_text(tmp_path, VALID_WECHAT, env={"WECHAT_APPID": ""}).wechat.appid == "wxa"


def test_env_override_is_validated_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[wechat\] encoding_aes_key"):
        load_text(tmp_path, VALID_WECHAT, env={"WECHAT_AES_KEY": "short"})


def test_process_environment_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text(VALID_WECHAT, encoding="utf-8")
    monkeypatch.setenv("WECHAT_TOKEN", "from-os-environ")
    assert load_config(path).wechat.token == "from-os-environ"


def test_secrets_stay_out_of_repr(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, VALID_WECHAT + 'encoding_aes_key = "' + "K" * 43 + '"\n'
                    '[voice.openai]\napi_key = "sk-very-secret"\n')
    text = repr(cfg) + str(cfg) + repr(cfg.wechat) + repr(cfg.voice)
    for secret in ("s3cret-value", "t0ken-value", "K" * 43, "sk-very-secret"):
        assert secret not in text
    assert "wxa" in text  # the appid is not a secret and helps debugging


def test_intents_must_be_an_array_of_tables(tmp_path: Path) -> None:
    """``[intents]`` (one table) instead of ``[[intents]]`` stops start-up; the tables are tests/test_intents.py's."""
    with pytest.raises(ConfigError, match=r"^\[\[intents\]\]: expected an array of tables"):
        load_text(tmp_path, VALID_WECHAT + '[intents]\nanything = "goes"\n')
    assert load_text(tmp_path, VALID_WECHAT).intents == []


def test_replace_makes_a_changed_copy() -> None:
    cfg = config_from_dict({"wechat": {"appid": "a", "appsecret": "s", "token": "t"}})
    other = cfg.replace(server={"port": 9000}, handlers={"apology": "oops"})
    assert other.server.port == 9000 and other.handlers.apology == "oops"
    assert cfg.server.port == 8080 and other.server.path == cfg.server.path
    with pytest.raises(AttributeError):  # dataclasses.FrozenInstanceError
        cfg.server.port = 1  # type: ignore[misc]  # frozen


def test_serve_with_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(VALID_WECHAT + '[voice]\nlang = "klingon"\n', encoding="utf-8")
    result = run_cli("serve", "--config", str(bad), timeout=20)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("config error: ") and "[voice] lang" in lines[0]
    assert result.stdout == ""


def test_serve_with_missing_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli.commands import main
    assert main(["serve", "--config", str(tmp_path / "absent.toml")]) == 2
    assert capsys.readouterr().err.splitlines() == [f"config error: config file not found: {tmp_path / 'absent.toml'} "
                                                    "(copy config.example.toml to config.toml and edit it, or pass "
                                                    "--config FILE)"]
