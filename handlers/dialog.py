"""A two-turn dialog with ``ctx.session``: "打开灯" → "哪个房间？" → "客厅" → "已打开客厅的灯".

The first turn leaves a note in the user's session; the second turn finds it, even when another worker
process answers it, because sessions live in the configured store. List this router before
``handlers.lights:router`` (which answers the one-turn "打开客厅的灯").
"""
from bot import Context, Router

from .lights import ROOMS

router = Router("dialog")

PENDING = "lights_pending"  # the session key: the action waiting for a room


@router.intent(r"^(?:请|帮我)*(?P<action>打开|开|关闭|关掉|关)(?:一下)?(?:电)?灯$")
def which_room(ctx: Context, action: str) -> str:
    ctx.session[PENDING] = "打开" if action in ("打开", "开") else "关闭"
    return "哪个房间？"


@router.text
@router.voice
def room_answer(ctx: Context) -> str | None:
    """The second turn: only when the session says a room is awaited; otherwise other handlers answer."""
    action = ctx.session.get(PENDING)
    if action is None or not ctx.text:
        return None
    if ctx.text in ("取消", "算了", "不用了"):
        del ctx.session[PENDING]
        return "好的，已取消。"
    if any(verb in ctx.text for verb in ("开", "关")):  # a whole new command ("关闭卧室的灯"): let it through
        del ctx.session[PENDING]
        return None
    room = next((r for r in sorted(ROOMS) if r in ctx.text), None)
    if room is None:
        return f"没有找到“{ctx.text}”，可以说：{'、'.join(sorted(ROOMS))}，或者说“取消”。"
    del ctx.session[PENDING]
    return f"已{action}{room}的灯"
