"""Smart-home example: one intent answers typed and spoken commands alike."""
from bot import Context, Router

router = Router("lights")

ROOMS = {"客厅", "卧室", "厨房", "书房", "卫生间"}


@router.intent(r"(?P<action>打开|关闭|关掉|开)(?P<room>\S+?)的?灯")
def lights(ctx: Context, action: str, room: str) -> str | None:
    if room not in ROOMS:
        return f"没有找到“{room}”，可以说：{'、'.join(sorted(ROOMS))}。"
    verb = "打开" if action in ("打开", "开") else "关闭"
    return f"已{verb}{room}的灯"


@router.intent(r"(?i)turn (?P<state>on|off) the (?P<room>\w+) lights?")
def lights_en(ctx: Context, state: str, room: str) -> str:
    return f"Turned {state} the {room} lights"
