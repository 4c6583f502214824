"""Build the XML WeChat would push, for any message type."""
from __future__ import annotations

import itertools
import time
from typing import Any

_ids = itertools.count(int(time.time() * 1000) % 10**9 * 10**6)

DEFAULT_OPENID = "oTESTUSER0000000000000000000"
DEFAULT_ACCOUNT = "gh_test_account"


_last_time = 0


def next_msg_id() -> int:
    return next(_ids)


def next_create_time() -> int:
    """Now, but never the same second twice: events are deduplicated on FromUserName+CreateTime, and a
    test sending two events in one second would otherwise see the second one as WeChat's retry."""
    global _last_time
    _last_time = max(int(time.time()), _last_time + 1)
    return _last_time


def _field(name: str, value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"<{name}>{value}</{name}>"
    safe = str(value).replace("]]>", "]]]]><![CDATA[>")
    return f"<{name}><![CDATA[{safe}]]></{name}>"


def build(msg_type: str, fields: dict[str, Any], *, openid: str = DEFAULT_OPENID, account: str = DEFAULT_ACCOUNT,
          create_time: int | None = None, agent_id: int | None = None) -> str:
    """``<xml>`` with the common header and ``fields`` in order; ``None`` values are left out. ``agent_id``: a
    WeCom app's push (``account`` is then the corp id, ``openid`` the user's UserID)."""
    head = {"ToUserName": account, "FromUserName": openid, "CreateTime": int(create_time or time.time()),
            "MsgType": msg_type}
    parts = [_field(k, v) for k, v in {**head, **fields, "AgentID": agent_id}.items() if v is not None]
    return "<xml>" + "".join(parts) + "</xml>"


def text(content: str, *, msg_id: int | None = None, **kw: Any) -> str:
    return build("text", {"Content": content, "MsgId": msg_id or next_msg_id()}, **kw)


def voice(media_id: str = "media_id", *, recognition: str | None = None, media_id_16k: str | None = None,
          fmt: str = "amr", msg_id: int | None = None, **kw: Any) -> str:
    """A voice push; ``recognition=""`` gives an empty ``<Recognition>`` as real pushes often have."""
    return build("voice", {"MediaId": media_id, "Format": fmt, "MsgId": msg_id or next_msg_id(),
                           "MediaId16K": media_id_16k, "Recognition": recognition}, **kw)


def event(name: str, *, event_key: str | None = None, **kw: Any) -> str:
    kw.setdefault("create_time", next_create_time())
    return build("event", {"Event": name, "EventKey": event_key}, **kw)


def image(pic_url: str = "http://example.invalid/a.jpg", media_id: str = "media_id", *, msg_id: int | None = None,
          **kw: Any) -> str:
    return build("image", {"PicUrl": pic_url, "MediaId": media_id, "MsgId": msg_id or next_msg_id()}, **kw)


def location(latitude: float, longitude: float, label: str = "", *, scale: int = 15, msg_id: int | None = None,
             **kw: Any) -> str:
    """A location the user shared (WeChat's ``Location_X`` is the latitude, ``Location_Y`` the longitude)."""
    return build("location", {"Location_X": latitude, "Location_Y": longitude, "Scale": scale, "Label": label,
                              "MsgId": msg_id or next_msg_id()}, **kw)


def link(url: str, title: str = "", description: str = "", *, msg_id: int | None = None, **kw: Any) -> str:
    """A link the user shared (an article, a web page)."""
    return build("link", {"Title": title or url, "Description": description, "Url": url,
                          "MsgId": msg_id or next_msg_id()}, **kw)
