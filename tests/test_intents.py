"""No-code intents: ``[[intents]]`` tables become a router that runs before ``[handlers] routers``."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

from bot import ConfigError, Context, Router, load_config
from bot.config import IntentConfig, config_from_dict
from bot.core.intents import intents_router
from bot.core.loading import load_routers
from bot.core.router import combine
from bot.core.webhook import Webhook
from bot.testing import BotClient, test_config


def bot(intents: list[dict[str, Any]], routers: list[str] | None = None, **sections: Any) -> BotClient:
    """An in-process bot built from the config alone, as ``python -m bot serve`` builds it."""
    cfg = test_config(intents=intents, handlers={"routers": routers or ["handlers.echo:router"]}, **sections)
    return BotClient(Webhook(cfg))


# -- config.example.toml alone makes a useful bot ---------------------------------------------------------
@pytest.fixture(scope="module")
def example() -> BotClient:
    return BotClient(Webhook(load_config(REPO / "config.example.toml", env={})), openid="oEXAMPLEUSER")


HELP = "试试说：打开客厅的灯、打开灯、翻译 今天天气很好、营业时间、订单 20240101。发语音也可以。"
ORDER = "订单20240101已收到。这是一个示例意图：在配置里换成你的回答，或用 handlers.forward 接入你的订单系统。"


@pytest.mark.parametrize("said, answer", [
    ("帮助", HELP),
    ("HELP!", HELP),
    ("订单 20240101", ORDER),
    ("查订单20240101。", ORDER),
    ("营业时间", "我们每天 9:00-21:00 营业。"),
    ("营页时间？", "我们每天 9:00-21:00 营业。"),     # a misheard character: fuzzy = 0.75
    ("打开客厅的灯", "已打开客厅的灯"),               # the configured routers still answer
    ("上海天气", "上海天气"),                          # no sample intent takes a weather handler's words
    ("随便说说。", "随便说说。"),                      # and the echo fallback, with the user's own words
])
def test_example_config(example: BotClient, said: str, answer: str) -> None:
    assert example.text(said).content == answer


def test_example_config_voice_and_dialog(example: BotClient) -> None:
    assert example.voice(recognition="订单，20240101。").content == ORDER
    assert example.text("打开灯").content == "哪个房间？"
    assert example.voice(recognition="客厅。").content == "已打开客厅的灯"


def test_example_documents_every_intent_key() -> None:
    text = (REPO / "config.example.toml").read_text(encoding="utf-8")
    for f in dataclasses.fields(IntentConfig):
        assert f"\n{f.name} = " in text and f"#   {f.name}" in text, f.name


# -- matching and replies ----------------------------------------------------------------------------------
def test_named_groups_and_text_fill_the_template() -> None:
    client = bot([{"name": "price", "patterns": [r"(?P<item>\S+?)多少钱", r"how much is (?:the )?(?P<item>\w+)"],
                   "reply": "{item}：请看价目表（你说的是“{text}”）"}])
    assert client.text("苹果多少钱？").content == "苹果：请看价目表（你说的是“苹果多少钱”）"
    assert client.text("how much is the tea").content == "tea：请看价目表（你说的是“how much is the tea”）"
    assert client.text("你好").content == "你好"  # no intent: echo


def test_optional_group_and_literal_braces() -> None:
    client = bot([{"name": "greet", "patterns": [r"^你好(?P<who>小\S)?$"], "reply": "{{你好}}{who}"}])
    assert client.text("你好").content == "{你好}"
    assert client.text("你好小明").content == "{你好}小明"


def test_keywords_and_fuzzy() -> None:
    client = bot([{"name": "hours", "keywords": ["营业时间"], "reply": "9 点到 21 点"},
                  {"name": "refund", "keywords": ["退款流程"], "fuzzy": 0.7, "reply": "退款请点菜单"}])
    assert client.text("请问营业时间是").content == "9 点到 21 点"
    assert client.text("营页时间").content == "营页时间"                 # no fuzzy for this one
    assert client.text("退宽流程怎么走").content == "退款请点菜单"        # 0.75 ≥ 0.7
    defaulted = bot([{"name": "hours", "keywords": ["营业时间"], "reply": "9 点到 21 点"}],
                    matching={"fuzzy_threshold": 0.7})
    assert defaulted.text("营页时间").content == "9 点到 21 点"          # [matching] fuzzy_threshold


def test_priority_then_file_order() -> None:
    intents = [{"name": "a", "keywords": ["灯"], "reply": "a"},
               {"name": "b", "keywords": ["灯"], "reply": "b"},
               {"name": "c", "keywords": ["客厅"], "reply": "c", "priority": 5}]
    client = bot(intents)
    assert client.text("客厅的灯").content == "c"   # higher priority first, wherever it is in the file
    assert client.text("台灯").content == "a"        # equal priorities: file order


def test_intents_run_before_the_configured_routers() -> None:
    client = bot([{"name": "lights-override", "patterns": ["客厅"], "reply": "客厅的灯坏了"}],
                 routers=["handlers.lights:router", "handlers.echo:router"])
    assert client.text("打开客厅的灯").content == "客厅的灯坏了"
    assert client.text("打开卧室的灯").content == "已打开卧室的灯"
    cfg = test_config(intents=[{"name": "x", "keywords": ["x"], "reply": "x"}],
                      handlers={"routers": ["handlers.lights:router"]})
    assert [r.name for r in load_routers(cfg)] == ["intents", "lights"]
    assert load_routers(test_config(handlers={"routers": ["handlers.lights:router"]}))[0].name == "lights"


def test_a_router_passed_in_code_gets_no_intents() -> None:
    """Documented: intents come with the configured routers; a router given explicitly replaces both."""
    mine = Router("mine")
    mine.fallback(lambda ctx: "mine")
    cfg = test_config(intents=[{"name": "x", "keywords": ["hi"], "reply": "intent"}])
    assert BotClient(Webhook(cfg, mine)).text("hi").content == "mine"


def test_intents_from_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "bot.toml"
    path.write_text('[wechat]\nappid = "wx1"\nappsecret = "s"\ntoken = "t"\n[storage]\nurl = "memory://"\n'
                    '[handlers]\nrouters = []\n\n'
                    '[[intents]]\nname = "hi"\nkeywords = ["hi"]\nreply = "hello"\n\n'
                    '[[intents]]\nname = "bye"\npatterns = [\'^bye (?P<who>\\w+)$\']\nreply = "bye {who}"\n',
                    encoding="utf-8")
    client = BotClient(Webhook(load_config(path, env={})))
    assert client.text("oh hi").content == "hello"
    assert client.text("bye bob").content == "bye bob"


# -- start-up validation: one line naming [[intents]][i] key ---------------------------------------------
GOOD = {"name": "ok", "keywords": ["ok"], "reply": "ok"}


@pytest.mark.parametrize("intents, message", [
    ([{"keywords": ["x"], "reply": "x"}], r"[[intents]][0] name: missing; expected a string"),
    ([GOOD, {"name": "r", "keywords": ["x"]}], r"[[intents]][1] reply: missing; expected a string"),
    ([{**GOOD, "repl": "x"}], r"[[intents]][0] repl: unknown key (expected one of: name, reply, patterns, "
                              r"keywords, priority, fuzzy)"),
    ([{**GOOD, "patterns": "x"}], r"[[intents]][0] patterns: expected a list of strings, got 'x'"),
    ([{**GOOD, "keywords": ["ok", 3]}], r"[[intents]][0] keywords[1]: expected a string, got 3"),
    ([{**GOOD, "priority": 1.5}], r"[[intents]][0] priority: expected an integer, got 1.5"),
    ([{**GOOD, "fuzzy": "high"}], r"[[intents]][0] fuzzy: expected a number, got 'high'"),
    ([{**GOOD, "fuzzy": 1.5}], r"[[intents]][0] fuzzy: expected a number from 0 to 1, got 1.5"),
    ([GOOD, GOOD], r"[[intents]][1] name: 'ok' is already the name of [[intents]][0]"),
    ([{"name": "n", "reply": "x"}], r"[[intents]][0] patterns: expected at least one pattern or keyword"),
    ([{**GOOD, "patterns": ["ok", "(unclosed"]}], r"[[intents]][0] patterns[1]: not a valid regular expression"),
    ([{**GOOD, "keywords": [" "]}], r"[[intents]][0] keywords[0]: expected a non-empty string"),
    ([{**GOOD, "reply": ""}], r"[[intents]][0] reply: expected a non-empty template"),
    ([{**GOOD, "reply": "{"}], r"[[intents]][0] reply: bad template"),
    ([{"name": "w", "patterns": ["(?P<city>.+)天气", "weather"], "reply": "{city}"}],
     r"[[intents]][0] reply: placeholder {city} is not a named group (?P<city>...) of patterns[1]"),
    ([{"name": "w", "patterns": ["(?P<city>.+)天气"], "keywords": ["天气"], "reply": "{city}"}],
     r"[[intents]][0] reply: placeholder {city} cannot be filled when a keyword matches"),
    ([{**GOOD, "reply": "{text!r}"}], r"[[intents]][0] reply: placeholder {text!r} must be a plain name"),
    ([{**GOOD, "reply": "{text.upper}"}], r"[[intents]][0] reply: placeholder {text.upper} must be a plain name"),
    ({"name": "x"}, r"[[intents]]: expected an array of tables"),
    (["x"], r"[[intents]][0]: expected a table, got 'x'"),
])
def test_bad_intents_stop_start_up(intents: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:  # the types when the config loads, the rest when the bot is built
        Webhook(config_from_dict({"wechat": {"appid": "a", "appsecret": "s", "token": "t"}, "intents": intents}))
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_intents_router_in_code() -> None:
    """With a router of your own, ``intents_router(config.intents)`` puts the config's intents in front."""
    seen: list[Context] = []
    router = Router("after")

    @router.text
    def record(ctx: Context) -> str:
        seen.append(ctx)
        return "router"
    cfg = test_config(intents=[{"name": "hi", "keywords": ["hi"], "reply": "intent"}])
    intents = intents_router(cfg.intents)
    assert intents is not None and intents_router([]) is None
    client = BotClient(Webhook(cfg, combine([intents, router])))
    assert client.text("hi").content == "intent" and seen == []
    assert client.text("other").content == "router" and len(seen) == 1
