"""Translation through WeChat's ``translatecontent``: "翻译 今天天气很好" → "The weather is nice today".

The direction follows the script: Chinese text goes to English, anything else to Chinese. The handler
needs the WeChat API client (``ctx.client``), which every bot built by ``bot.runtime.build_webhook`` has.
When the API fails (WeChat has said the voice API group may go offline) the user reads a clear message
and the failure is logged with the message id.
"""
import logging
import re

from bot import Context, Router
from bot.core.normalize import guess_lang

log = logging.getLogger("handlers.translate")

router = Router("translate")

MAX_BYTES = 600  # translatecontent's limit for the UTF-8 body
PREFIX = re.compile(r"^\s*(?:(?:请|帮我)*翻译(?:一下)?(?:成(?:英文|英语|中文))?|(?i:(?:please\s+)?translate\b))[\s:：,，]*")
MESSAGES = {
    "zh_CN": {"failed": "抱歉，翻译服务暂时不可用，请稍后再试。", "too_long": f"要翻译的内容太长了（最多 {MAX_BYTES} 字节）。"},
    "en_US": {"failed": "Sorry, translation is not available right now. Please try again later.",
              "too_long": f"That is too long to translate (at most {MAX_BYTES} bytes)."},
}


@router.intent(PREFIX.pattern + r"(?P<text>\S.*)$")
def translate(ctx: Context, text: str) -> str:
    # Translate what the user wrote, punctuation included; the normalized text is what matched.
    found = PREFIX.match(ctx.original_text or "")
    source = (ctx.original_text or "")[found.end():].strip() if found else ""
    source = source or text
    lfrom = guess_lang(source)
    lto = "en_US" if lfrom == "zh_CN" else "zh_CN"
    if len(source.encode("utf-8")) > MAX_BYTES:
        return MESSAGES[lfrom]["too_long"]
    try:
        translated = ctx.client.voice.translate(source, lfrom, lto).strip()
        if not translated:
            raise ValueError("empty translation")
    except Exception as exc:  # the API, the network or no client: the user gets a clear message either way
        log.warning("translate failed msg_id=%s %s->%s reason=%s: %s", ctx.msg_id, lfrom, lto,
                    type(exc).__name__, exc)
        return MESSAGES[lfrom]["failed"]
    return translated
