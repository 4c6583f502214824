"""One rule everywhere (issue 22, item 4): every rule that can refuse a config refuses it in every entry point —
``check``, ``serve``, ``run``, ``worker``, ``simulate``, gunicorn's master (bot/web/gunicorn_conf.py), a WSGI worker
(``bot.wsgi``) and a bot mounted into a Flask app — with the same one line.

The entry points run in this process, each exactly as its command or import runs it (``main([...])``, the
gunicorn settings file, the WSGI module): a few hundred runs take seconds. tests/test_entry_points.py runs some
of them as real processes. ``test_every_rule_has_a_case`` keeps the table whole: a ``raise ConfigError`` added
anywhere a config is judged needs a case here.
"""
from __future__ import annotations

import ast
import logging
import runpy
import sys
import tomllib
import traceback
from pathlib import Path
from typing import Any

import pytest
from conftest import BASE_CONFIG, REPO, free_port, merge, to_toml, write_config_file
from flask import Flask

from bot import VoiceBot
from bot.cli.commands import main
from bot.config import ConfigError, load_config
from bot.core.loading import load_routers
from bot.runtime import check_config

LLM = {"url": "http://127.0.0.1:9/v1", "model": "m"}
OA = {"kind": "official_account", "appid": "wxa", "appsecret": "s", "token": "t"}
WECOM = {"kind": "wecom_app", "corp_id": "ww1", "agent_id": 1000002, "secret": "s", "token": "t",
         "encoding_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"}
REPLY_ON = {"when": "voice", "openai": {"url": "http://127.0.0.1:9"}}
ROUTERS = "routers"  # a case refused where the routers are loaded: check shows it as a ✗ line (exit 1)
BUILD = "build"  # a case refused where the bot's parts are built: simulate, which builds none, lets it pass

# name -> (config sections merged into conftest.BASE_CONFIG, or raw file content; what the line starts with; kind)
CASES: dict[str, tuple[dict[str, Any] | str | bytes, str, str]] = {
    # bot/config/loading.py: the file and the types
    "not toml": ("[wechat\n", "", ""),
    "not utf-8": (b'[wechat]\nappid = "\xff"\n', "", ""),
    "unknown section": ({"nosuch": {"a": 1}}, "[nosuch]: unknown section", ""),
    "unknown key": ({"voice": {"nosuch": 1}}, "[voice] nosuch: unknown key", ""),
    "not a table": ({"voice": {"reply": "x"}}, "[voice] reply: expected a table", ""),
    "wrong type": ({"voice": {"lang": "zh"}}, "[voice] lang: expected 'zh_CN' or 'en_US'", ""),
    "list of strings": ({"voice": {"recognizers": [1]}}, "[voice] recognizers[0]: expected a string", ""),
    "missing key": ({"wechat": {"token": None}}, "[wechat] token: missing; expected a string", ""),
    "intents not an array": ({"intents": "x"}, "[[intents]]: expected an array of tables", ""),
    "intent not a table": ({"intents": ["x"]}, "[[intents]][0]: expected a table", ""),
    # bot/config/rules.py
    "server path": ({"server": {"path": "wechat"}}, "[server] path:", ""),
    "metrics path": ({"metrics": {"path": "/wechat"}}, "[metrics] path:", ""),
    "server port": ({"server": {"port": 70000}}, "[server] port:", ""),
    "logging level": ({"logging": {"level": "LOUD"}}, "[logging] level:", ""),
    "router spec": ({"handlers": {"routers": ["no such"]}}, "[handlers] routers[0]:", ""),
    "late answers": ({"reply": {"pickup_ttl_s": 0}}, "[reply] pickup_ttl_s:", ""),
    "max text bytes": ({"reply": {"max_text_bytes": 40}}, "[reply] max_text_bytes:", ""),
    "clock skew": ({"reply": {"clock_skew_s": -1}}, "[reply] clock_skew_s:", ""),
    "pickup notice": ({"reply": {"pickup_notice": " "}}, "[reply] pickup_notice:", ""),
    "synthesizer spec": ({"voice": {"reply": {"synthesizers": ["nosuch"]}}}, "[voice.reply] synthesizers[0]:", ""),
    "pickup ttl with voice": ({"voice": {"reply": REPLY_ON}, "reply": {"pickup_ttl_s": 300000}},
                              "[reply] pickup_ttl_s: at most", ""),
    "no synthesizer": ({"voice": {"reply": {**REPLY_ON, "synthesizers": []}}}, "[voice.reply] synthesizers: empty",
                       ""),
    "speech timeout": ({"voice": {"reply": {"openai": {"timeout_s": 0}}}}, "[voice.reply.openai] timeout_s:", ""),
    "material grace": ({"voice": {"reply": {"material_grace_s": 0}}}, "[voice.reply] material_grace_s:", ""),
    "speech url form": ({"voice": {"reply": {"openai": {"url": "x"}}}}, "[voice.reply.openai] url: expected", ""),
    "speech url required": ({"voice": {"reply": {"when": "voice"}}}, "[voice.reply.openai] url: required", ""),
    "empty token": ({"wechat": {"token": ""}}, "[wechat] token:", ""),
    "api base url": ({"wechat": {"api_base_url": "127.0.0.1:8090"}}, "[wechat] api_base_url:", ""),
    "recognizer url": ({"voice": {"openai": {"url": "localhost:9000"}}}, "[voice.openai] url: expected", ""),
    "recognizer language": ({"voice": {"openai": {"language": "zh CN"}}}, "[voice.openai] language:", ""),
    "recognizers' share": ({"voice": {"wechat_share_s": 0}}, "[voice] wechat_share_s:", ""),
    "http timeout": ({"wechat": {"http_timeout_s": 0}}, "[wechat] http_timeout_s:", ""),
    "window": ({"voice": {"window_s": -1}}, "[voice] window_s:", ""),
    "replay window": ({"server": {"replay_window_s": -1}}, "[server] replay_window_s:", ""),
    "aes key length": ({"wechat": {"encoding_aes_key": "short"}}, "[wechat] encoding_aes_key: expected 43", ""),
    "aes key from the environment": ({}, "[wechat] encoding_aes_key: expected 43 characters (or empty for plaintext "
                                         "mode), got 5 (the value comes from the environment variable WECHAT_AES_KEY)",
                                     ""),
    "aes key base64": ({"wechat": {"encoding_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCD-_!"}},
                       "[wechat] encoding_aes_key: expected 43 characters of base64", ""),
    "budget": ({"reply": {"budget_s": 6.0}}, "[reply] budget_s:", ""),
    "fast path": ({"reply": {"fast_path_s": -1}}, "[reply] fast_path_s:", ""),
    "tries": ({"reply": {"tries": 0}}, "[reply] tries:", ""),
    "rq without redis": ({"reply": {"executor": "rq"}, "storage": {"url": "sqlite:///state.db"}}, "[reply] executor:",
                         ""),
    "llm url form": ({"llm": {"url": "api.deepseek.com"}}, "[llm] url: expected", ""),
    "llm model required": ({"handlers": {"routers": ["handlers.llm:router"]}, "llm": {"url": LLM["url"]}},
                           "[llm] model: required", ""),
    "llm limits": ({"llm": {"temperature": 3.0}}, "[llm] temperature:", ""),
    "llm reset words": ({"llm": {"reset_words": [" "]}}, "[llm] reset_words:", ""),
    "llm reset reply": ({"llm": {"reset_reply": ""}}, "[llm] reset_reply:", ""),
    "llm apologies": ({"llm": {"apologies": {"auth": ""}}}, "[llm.apologies] auth:", ""),
    "llm extra": ({"llm": {"extra": {"model": "x"}}}, "[llm] extra:", ""),
    "fuzzy": ({"matching": {"fuzzy_threshold": 2.0}}, "[matching] fuzzy_threshold:", ""),
    "session ttl": ({"session": {"ttl_s": 0}}, "[session] ttl_s:", ""),
    "forward timeout": ({"forward": {"timeout_s": 0}}, "[forward] timeout_s:", ""),
    "forward required": ({"handlers": {"routers": ["handlers.forward:router"]}}, "[forward] url: required", ""),
    "forward url form": ({"handlers": {"routers": ["handlers.forward:router"]},
                          "forward": {"url": "x", "secret": "s"}}, "[forward] url: expected", ""),
    # bot/config/extras.py
    "extra missing": ({"voice": {"reply": {"synthesizers": ["openai", "espeak"]}}},
                      "[voice.reply] synthesizers[1]: 'espeak' needs the espeak extra", ""),
    # bot/core/intents.py
    "intent name": ({"intents": [{"name": " ", "keywords": ["a"], "reply": "b"}]}, "[[intents]][0] name:", ""),
    "intent twice": ({"intents": [{"name": "a", "keywords": ["a"], "reply": "b"},
                                  {"name": "a", "keywords": ["c"], "reply": "d"}]}, "[[intents]][1] name:", ""),
    "intent matches nothing": ({"intents": [{"name": "a", "reply": "b"}]}, "[[intents]][0] patterns:", ""),
    "intent keyword": ({"intents": [{"name": "a", "keywords": [""], "reply": "b"}]}, "[[intents]][0] keywords[0]:",
                       ""),
    "intent fuzzy": ({"intents": [{"name": "a", "keywords": ["a"], "reply": "b", "fuzzy": 2.0}]},
                     "[[intents]][0] fuzzy:", ""),
    "intent reply": ({"intents": [{"name": "a", "keywords": ["a"], "reply": " "}]}, "[[intents]][0] reply:", ""),
    "intent placeholder with keywords": ({"intents": [{"name": "a", "keywords": ["a"], "reply": "{x}"}]},
                                         "[[intents]][0] reply: placeholder {x} cannot", ""),
    "intent placeholder not a group": ({"intents": [{"name": "a", "patterns": ["b"], "reply": "{x}"}]},
                                       "[[intents]][0] reply: placeholder {x} is not", ""),
    "intent regex": ({"intents": [{"name": "a", "patterns": ["(unclosed"], "reply": "b"}]},
                     "[[intents]][0] patterns[0]:", ""),
    "intent template": ({"intents": [{"name": "a", "patterns": ["b"], "reply": "{"}]}, "[[intents]][0] reply: bad",
                        ""),
    "intent placeholder": ({"intents": [{"name": "a", "patterns": ["(?P<x>b)"], "reply": "{x:>5}"}]},
                           "[[intents]][0] reply: placeholder {x:>5} must be a plain name", ""),
    # bot/config/accounts.py and the accounts' part of bot/config/loading.py
    "accounts array": ({"wechat": None, "accounts": [OA]}, "[accounts]: expected tables named by account", ""),
    "accounts empty": ({"wechat": None, "accounts": {}}, "[accounts]: expected at least one", ""),
    "account name": (to_toml(merge(BASE_CONFIG, {"wechat": None})) + '\n[accounts."bad name"]\nkind = '
                     '"official_account"\n', "[accounts.bad name]: expected a name", ""),
    "account not a table": ({"wechat": None, "accounts": {"shop": "x"}}, "[accounts.shop]: expected a table", ""),
    "account kind": ({"wechat": None, "accounts": {"shop": {**OA, "kind": "mini_program"}}},
                     "[accounts.shop] kind:", ""),
    "account path form": ({"wechat": None, "accounts": {"shop": {**OA, "path": "shop"}}}, "[accounts.shop] path:",
                          ""),
    "account path twice": ({"wechat": None, "accounts": {"a": {**OA, "path": "/x"}, "b": {**OA, "path": "/x"}}},
                           "[accounts.b] path: '/x' is already", ""),
    "account own table": ({"wechat": None, "accounts": {"shop": {**OA, "reply": "x"}}},
                          "[accounts.shop.reply]: expected a table", ""),
    "account token": ({"wechat": None, "accounts": {"shop": {**OA, "token": ""}}}, "[accounts.shop] token:", ""),
    "wecom required": ({"wechat": None, "accounts": {"staff": {**WECOM, "corp_id": ""}}},
                       "[accounts.staff] corp_id: required", ""),
    "wecom agent id": ({"wechat": None, "accounts": {"staff": {**WECOM, "agent_id": 0}}},
                       "[accounts.staff] agent_id:", ""),
    "wecom api base url": ({"wechat": None, "accounts": {"staff": {**WECOM, "api_base_url": "x"}}},
                           "[accounts.staff] api_base_url:", ""),
    "wecom text limit": ({"wechat": None, "accounts": {"staff": {**WECOM, "reply": {"max_text_bytes": 4096}}}},
                         "[accounts.staff.reply] max_text_bytes: at most 2048 on a WeCom app", ""),
    "wechat beside accounts": ({"accounts": {"shop": OA}}, "[wechat]: a config with [accounts.NAME] tables", ""),
    "section not a table": ({"llm": "x"}, "[llm]: expected a table", ""),
    # bot/runtime.py: the store URL, and the parts of the bot (built as serve builds them)
    "store scheme": ({"storage": {"url": "postgres://db/bot"}}, "[storage] url: unsupported store URL scheme", ""),
    "recognizer unknown": ({"voice": {"recognizers": ["nosuch"]}}, "[voice] recognizers: unknown recognizer", BUILD),
    "recognizer module": ({"voice": {"recognizers": ["nomodule_xyz:R"]}}, "[voice] recognizers: cannot load", BUILD),
    "recognizer method": ({"voice": {"recognizers": ["test_one_rule:NOT_A_ROUTER"]}},
                          "[voice] recognizers: 'test_one_rule:NOT_A_ROUTER' gave int", BUILD),
    "recognizer url empty": ({"voice": {"recognizers": ["openai"]}}, "[voice.openai] url: empty", BUILD),
    "synthesizer building": ({"voice": {"reply": {**REPLY_ON, "synthesizers": ["test_one_rule:raising_factory"]}}},
                             "[voice.reply] synthesizers[0]: building", BUILD),
    # bot/core/loading.py: the routers
    "router module": ({"handlers": {"routers": ["nomodule_xyz:router"]}}, "[handlers] routers[0]: cannot import",
                      ROUTERS),
    "router raising at import": ({"handlers": {"routers": ["boom_at_import:router"], "search_paths": ["."]}},
                                 "[handlers] routers[0]: importing 'boom_at_import' raised RuntimeError", ROUTERS),
    "router attribute": ({"handlers": {"routers": ["handlers.echo:nosuch"]}}, "[handlers] routers[0]: module", ROUTERS),
    "router imported on first use": ({"handlers": {"routers": ["lazy_router:router"], "search_paths": ["."]}},
                                     "[handlers] routers[0]: cannot import module 'lazy_router'", ROUTERS),
    "router plugin": ({"handlers": {"routers": ["noplugin"]}}, "[handlers] routers[0]: 'noplugin' is neither", ROUTERS),
    "router factory": ({"handlers": {"routers": ["test_one_rule:raising_factory"]}},
                       "[handlers] routers[0]: calling 'test_one_rule:raising_factory' raised", ROUTERS),
    "router type": ({"handlers": {"routers": ["test_one_rule:NOT_A_ROUTER"]}}, "[handlers] routers[0]: 'test_one",
                    ROUTERS),
}
# The few raises no config file can reach here: the file chosen (or missing), an installed plugin that fails to
# load, a synthesizer without its extra when the extra check let it through (tests/test_startup_checks.py).
UNREACHABLE = {("bot/config/loading.py", "config file not found"), ("bot/config/loading.py", "no config file"),
               ("bot/config/loading.py", "cannot read config file"), ("bot/core/loading.py", "loading the plugin"),
               ("bot/voice/synthesizers/espeak.py", "needs the espeak extra"),
               # [voice.reply.openai] url is required by the rules whenever the chain is built at start-up
               ("bot/voice/synthesizers/openai.py", "url: empty"),
               # the top level's unknown sections are refused by bot/config/loading.py before the types are built
               ("bot/config/typed.py", "unknown section"),
               # an installed package whose section declaration is broken
               ("bot/config/sections.py", "cannot be loaded"), ("bot/config/sections.py", "declares")}
JUDGES = ("bot/config/loading.py", "bot/config/typed.py", "bot/config/accounts.py", "bot/config/sections.py",
          "handlers/llm/config.py", "handlers/forward/config.py", "bot/config/rules.py", "bot/config/extras.py",
          "bot/core/intents.py",
          "bot/core/loading.py", "bot/runtime.py", "bot/voice/chain.py", "bot/voice/recognizers/openai.py",
          "bot/voice/synthesizers/chain.py", "bot/voice/synthesizers/openai.py", "bot/voice/synthesizers/espeak.py")
NOT_A_ROUTER = 42


def raising_factory(config: Any = None) -> Any:
    raise RuntimeError("the factory failed")


def case_environment(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    if "extra missing" in name:
        monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    if "from the environment" in name:
        monkeypatch.setenv("WECHAT_AES_KEY", "short")


def write_case(directory: Path, name: str) -> Path:
    content = CASES[name][0]
    (directory / "boom_at_import.py").write_text("raise RuntimeError('boom')\n", encoding="utf-8")
    (directory / "lazy_router.py").write_text("def __getattr__(name):\n    import nomodule_xyz_lazy\n",
                                              encoding="utf-8")
    if isinstance(content, dict):
        return write_config_file(directory, "config.toml", **content)
    path = directory / "config.toml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.fixture(autouse=True)
def _case_environment(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Any:
    """The espeak extra is missing for its case; the serve loop never starts; root logging is left as found."""
    case_environment(monkeypatch, request.node.name)
    import bot.cli.serve
    monkeypatch.setattr(bot.cli.serve, "dev_server", lambda *a: pytest.fail("a refused config got to serving"))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:], root.level = handlers, level


def entry_points(path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                 kind: str) -> dict[str, tuple[int, str]]:
    """What each entry point answers a config with: (exit status, the one line it printed)."""
    def cli(*args: str) -> tuple[int, str]:
        code = main(list(args))
        out = capsys.readouterr()
        if kind == ROUTERS and args[0] == "check":  # check lists each router, the broken one as a ✗ line
            return code, next((line[2:].split(": ", 1)[1] for line in out.out.splitlines()
                               if line.startswith("✗ router")), out.out)
        return code, without_announcement(out.err, path)

    def imported(run: Any) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exited:
            run()
        return int(exited.value.code or 0), without_announcement(capsys.readouterr().err, path)

    monkeypatch.setenv("WECHAT_VOICEBOT_CONFIG", str(path))
    monkeypatch.chdir(path.parent)
    answers = {
        "check": cli("check", "--config", str(path)),
        "serve": cli("serve", "--config", str(path), "--port", str(free_port())),
        "run": cli("run", "--config", str(path), "--port", str(free_port())),
        # a worker refuses a config without executor = "rq" first: the routers' cases get one with it
        "worker": cli("worker", "--config", str(rq_variant(path) if kind == ROUTERS else path), "--burst"),
        "gunicorn": imported(lambda: runpy.run_path(str(REPO / "bot" / "web" / "gunicorn_conf.py"))),
        "wsgi": imported(lambda: runpy.run_path(str(REPO / "bot" / "web" / "wsgi.py"))),
    }
    if kind not in (BUILD, ROUTERS):
        answers["simulate"] = cli("simulate", "text", "hi", "--config", str(path), "--url", "http://127.0.0.1:9/x")
    try:
        VoiceBot(Flask("host"), str(path))
        answers["mounted"] = (0, "")
    except ConfigError as exc:
        answers["mounted"] = (2, f"config error: {exc}\n")
    return answers


def rq_variant(path: Path) -> Path:
    """The same config for RQ workers (nothing connects to Redis before the routers are loaded)."""
    with path.open("rb") as f:
        raw = tomllib.load(f)
    raw["reply"] = {**raw.get("reply", {}), "executor": "rq"}
    raw["storage"] = {**raw.get("storage", {}), "url": "redis://127.0.0.1:6379/15"}
    variant = path.with_name("rq.toml")
    variant.write_text(to_toml(raw), encoding="utf-8")
    return variant


def without_announcement(err: str, path: Path) -> str:
    """What a command printed, but the line saying which config it read (``serve`` says it before it loads the
    routers): the refusal must be all the rest."""
    return "".join(line for line in err.splitlines(keepends=True)
                   if line not in (f"wechat-voicebot: config {path}\n", f"wechat-voicebot: config {path.with_name('rq.toml')}\n"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_entry_point_refuses_with_the_same_line(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _, starts, kind = CASES[name]
    answers = entry_points(write_case(tmp_path, name), capsys, monkeypatch, kind)
    lines = {entry: line for entry, (_, line) in answers.items()}
    line = lines["serve"]
    assert line.startswith(f"config error: {starts}") and line.count("\n") == 1, line
    if kind == ROUTERS:
        assert answers.pop("check") == (1, line.removeprefix("config error: ").rstrip("\n")), lines
    expected_status = {"wsgi": 3}
    assert {entry: code for entry, (code, _) in answers.items()} == {e: expected_status.get(e, 2) for e in answers}
    assert {entry for entry, text in lines.items() if text != line and entry in answers} == set(), lines


def raises_in(relative: str) -> dict[int, str]:
    """Line -> message start of every ``raise ConfigError(...)`` in one file."""
    source = (REPO / relative).read_text(encoding="utf-8")
    found = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and \
                getattr(node.exc.func, "id", None) == "ConfigError":
            found[node.lineno] = ast.get_source_segment(source, node.exc) or ""
    return found


def raised_at(path: Path) -> tuple[str, int]:
    """Where loading, checking and building the routers of ``path`` raised its ConfigError (file, line)."""
    try:
        config = load_config(path)
        check_config(config)
        load_routers(config)
    except ConfigError as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        return str(Path(frame.filename).relative_to(REPO)), frame.lineno or 0
    raise AssertionError(f"{path} was not refused")


def test_every_rule_has_a_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    covered = set()
    for i, name in enumerate(CASES):
        directory = tmp_path / str(i)
        directory.mkdir()
        with monkeypatch.context() as m:
            case_environment(m, name)
            m.chdir(directory)
            m.syspath_prepend(str(directory))
            covered.add(raised_at(write_case(directory, name)))
    missing = [f"{relative}:{line}: {text[:90]}" for relative in JUDGES for line, text in raises_in(relative).items()
               if (relative, line) not in covered and not any(relative == f and words in text
                                                              for f, words in UNREACHABLE)]
    assert not missing, "rules without a case in CASES:\n" + "\n".join(missing)
