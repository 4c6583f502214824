"""Speech-friendly matching: normalized ``ctx.text``, Chinese numerals, fuzzy keywords, ``[matching]``."""
from __future__ import annotations

import pytest

from bot import ConfigError, Context, Router
from bot.core.normalize import chinese_to_digits, fuzzy_ratio, guess_lang, normalize
from bot.core.webhook import Webhook
from bot.testing import BotClient, test_config


@pytest.mark.parametrize("said, normalized", [
    ("打开客厅的灯。", "打开客厅的灯"),                      # what a recognizer appends
    ("打开，客厅的灯！", "打开客厅的灯"),                     # full-width inner punctuation
    ("  打开 客厅 的灯 ？ ", "打开客厅的灯"),                  # spaces between Chinese words, around
    ("打开 3 号灯", "打开3号灯"),
    ("ＡＢＣ１２３！", "ABC123"),                              # full-width → half-width
    ("打开、关闭；好吗？", "打开关闭好吗"),
    ("Turn on the lights, please.", "Turn on the lights please"),
    ("wait...what?!", "wait what"),
    ("Hi,你好", "Hi 你好"),
    ("3.5元，10:30到，共1,000个。", "3.5元10:30到共1,000个"),   # marks inside numbers stay
    ("example.com", "example.com"),
    ("<![CDATA[x]]>", "<![CDATA[x]]>"),                       # not a separator: markup is left alone
    ("迈克尔·杰克逊", "迈克尔·杰克逊"),                        # the dot in names is not punctuation
    ("。。。", ""),
])
def test_normalize(said: str, normalized: str) -> None:
    assert normalize(said) == normalized


@pytest.mark.parametrize("chinese, digits", [
    ("三", "3"), ("两", "2"), ("十", "10"), ("十五", "15"), ("二十五", "25"), ("一百零八", "108"),
    ("一百五", "150"), ("三千零五", "3005"), ("三千二", "3200"), ("两万五", "25000"), ("一万零五", "10005"),
    ("三亿五千万", "350000000"), ("三零一", "301"), ("零", "0"),
    ("打开三号灯", "打开3号灯"), ("第十五层", "第15层"), ("调到二十五度", "调到25度"),
    ("千万别", "千万别"), ("三四百", "三四百"),              # no digit, or not a number we can read: unchanged
])
def test_chinese_numerals(chinese: str, digits: str) -> None:
    assert chinese_to_digits(chinese) == digits


def test_fuzzy_ratio() -> None:
    assert fuzzy_ratio("天气预报", "看看天气预报吧") == 1.0
    assert fuzzy_ratio("天气预报", "明天天汽预报怎么样") == pytest.approx(0.75)  # one misheard character
    assert fuzzy_ratio("天气预报", "天气预") == pytest.approx(6 / 7)            # one dropped
    assert fuzzy_ratio("help", "HLP me") == pytest.approx(6 / 7)
    assert fuzzy_ratio("天气预报", "打开客厅的灯") == 0.0
    assert fuzzy_ratio("", "x") == fuzzy_ratio("x", "") == 0.0


def test_guess_lang() -> None:
    assert guess_lang("今天 weather") == "zh_CN" and guess_lang("good morning") == "en_US"


# -- through the webhook -------------------------------------------------------------------------------
def shows_text() -> Router:
    router = Router("shows")

    @router.intent(r"^(?P<n>\d+)号灯$")
    def numbered(ctx: Context, n: str) -> str:
        return f"lamp {n}"

    @router.fallback
    def both(ctx: Context) -> str:
        return f"{ctx.text}|{ctx.original_text}"
    return router


def test_ctx_text_is_normalized_and_original_kept() -> None:
    client = BotClient(Webhook(test_config(), shows_text()))
    assert client.text("打开，客厅的灯！").content == "打开客厅的灯|打开，客厅的灯！"
    assert client.voice(recognition="打开 客厅的灯。").content == "打开客厅的灯|打开 客厅的灯。"


def test_matching_switches() -> None:
    plain = BotClient(Webhook(test_config(matching={"normalize": False}), shows_text()))
    assert plain.text("三号灯。").content == "三号灯。|三号灯。"
    numerals = BotClient(Webhook(test_config(matching={"chinese_numerals": True}), shows_text()))
    assert numerals.text("十二号灯。").content == "lamp 12"
    assert BotClient(Webhook(test_config(), shows_text())).text("十二号灯").content == "十二号灯|十二号灯"
    only_numerals = BotClient(Webhook(test_config(matching={"normalize": False, "chinese_numerals": True}),
                                      shows_text()))
    assert only_numerals.text("三号灯").content == "lamp 3"


def weather_router(**kw: float) -> Router:
    router = Router("weather")
    router.keyword("天气预报", **kw)(lambda ctx: "forecast")
    router.keyword("stop", exact=True, **kw)(lambda ctx: "stopped")
    return router


def test_fuzzy_keyword_argument() -> None:
    fuzzy = BotClient(Webhook(test_config(), weather_router(fuzzy=0.7)))
    assert fuzzy.text("明天天汽预报怎么样").content == "forecast"
    assert fuzzy.text("stpo").content == "stopped"                 # exact: ratio over the whole text, 0.75
    assert fuzzy.text("stop the music").content is None            # 0.44: no windows for an exact keyword
    assert fuzzy.text("打开客厅的灯").content is None
    strict = BotClient(Webhook(test_config(), weather_router()))
    assert strict.text("明天天汽预报怎么样").content is None          # default threshold 0: off


def test_matching_fuzzy_threshold_is_the_default() -> None:
    cfg = test_config(matching={"fuzzy_threshold": 0.7})
    assert BotClient(Webhook(cfg, weather_router())).text("明天天汽预报怎么样").content == "forecast"
    assert BotClient(Webhook(cfg, weather_router(fuzzy=0))).text("明天天汽预报怎么样").content is None


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="fuzzy"):
        Router().keyword("x", fuzzy=1.5)
    with pytest.raises(ValueError, match="no empty ones"):
        Router().keyword("x", "")
    with pytest.raises(ConfigError, match=r"^\[matching\] fuzzy_threshold: expected a number from 0 to 1, got 2$"):
        test_config(matching={"fuzzy_threshold": 2})
    with pytest.raises(ConfigError, match=r"^\[matching\] chinese_numerals: expected true or false"):
        test_config(matching={"chinese_numerals": "yes"})
