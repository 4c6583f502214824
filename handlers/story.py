"""A story told as it is written (``ctx.stream``): the demo of answers that take longer than WeChat waits.

``讲个故事`` / ``tell me a story`` streams a dozen sentences over ~20 s, like a language model would. What the
user sees depends on the account (README, "Delivery"): with the customer-service API the first sentences
arrive within the first try and the rest follows as customer-service messages; without it the last try
shows what is written by then, marked "（未完，回复任意文字继续）", and the rest comes with the next message.
"""
from __future__ import annotations

import time
from collections.abc import Iterator

from bot import Context, Router

router = Router("story")

STORY = ("从前有一座山。", "山里有一座庙。", "庙里住着一个老和尚和一个小和尚。", "有一天，小和尚说：师父，给我讲个故事吧。",
         "老和尚想了想，说：好。", "从前有一座山，山上有一座庙。", "庙里的灯每天晚上都亮着。", "山下的村子里，人们说那是星星掉了下来。",
         "小和尚听着听着，就睡着了。", "老和尚给他盖好被子。", "窗外下起了小雨。", "故事讲完了，晚安。")
SECONDS_PER_SENTENCE = 1.6


def tell(seconds_per_sentence: float = SECONDS_PER_SENTENCE) -> Iterator[str]:
    for sentence in STORY:
        time.sleep(seconds_per_sentence)
        yield sentence


@router.keyword("讲个故事", "tell me a story")
def story(ctx: Context) -> object:
    return ctx.stream(tell())
