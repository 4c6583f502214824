"""Echo: replies with what the user said (typed, or the transcript of a voice message)."""
from bot import Context, Router

router = Router("echo")


@router.fallback
def echo(ctx: Context) -> str | None:
    if ctx.text:
        return ctx.original_text or ctx.text  # the user's own words, not the normalized ones matched on
    return None


@router.event("subscribe")
def welcome(ctx: Context) -> str:
    return "欢迎关注！发一段语音或文字试试。"
