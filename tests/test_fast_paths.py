"""The request path's own fast versions of library calls give exactly what the library calls give.

- ``bot.core.envelope.parse_xml`` / ``parse_message``: what xmltodict and wechatpy make of any XML, for every
  documented push and for generated XML of every shape (nesting, attributes, repeats, mixed text, entities,
  comments, malformed bytes), results and exceptions alike;
- ``bot.web.app.first_values``: ``parse_qsl(keep_blank_values=True)``'s first value per name;
- ``bot.core.envelope.render_text_reply``: ``wechatpy.replies.TextReply(...).render()``.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import pytest
import xmltodict
from hypothesis import given, settings
from hypothesis import strategies as st
from wechat_pushes import EVENTS, MESSAGES, QR_SUBSCRIBE, push
from wechatpy import parse_message as wechatpy_parse_message
from wechatpy.messages import TextMessage
from wechatpy.replies import TextReply

from bot.core.envelope import parse_message, parse_xml, render_text_reply
from bot.web.app import first_values


def outcome(fn: Any, xml: str) -> Any:
    """What ``fn(xml)`` returns, or the exception's type (and message, for ValueError)."""
    try:
        return ("ok", fn(xml))
    except ValueError as exc:
        return ("raised", ValueError, str(exc))
    except Exception as exc:
        return ("raised", type(exc))


def message_outcome(fn: Any, xml: str) -> Any:
    result = outcome(fn, xml)
    if result[0] == "ok" and result[1] is not None:
        message = result[1]
        return ("ok", type(message), message._data, message.type, getattr(message, "event", None))
    return result


def pushes() -> list[str]:
    found = [push(t, None, body, openid="o1", time=1) for t, body in MESSAGES.items()]
    found += [push("event", e, body, openid="o1", time=1) for e, body in EVENTS.items()]
    found += [push("event", "subscribe", QR_SUBSCRIBE, openid="o1", time=1),
              push("event", "subscribe", "<EventKey><![CDATA[scanbarcode|x]]></EventKey>", openid="o1", time=1),
              push("device_text", None, "<Content>x</Content>", openid="o1", time=1),
              push("device_event", "bind", "", openid="o1", time=1),
              push("device_event", None, "", openid="o1", time=1)]
    return found


@pytest.mark.parametrize("xml", pushes())
def test_every_documented_push_parses_as_wechatpy_parses_it(xml: str) -> None:
    assert outcome(parse_xml, xml) == outcome(xmltodict.parse, xml)
    assert message_outcome(parse_message, xml) == message_outcome(wechatpy_parse_message, xml)


EDGES = [
    "", " ", "<xml/>", "<xml></xml>", "<xml> </xml>", "<xml>text</xml>", "<xml><a>1</a>tail</xml>",
    "<xml><a>1</a><a>2</a></xml>", "<xml><a x='1'>1</a></xml>", "<xml y='2'><a>1</a></xml>",
    "<xml><a><b>1</b></a></xml>", "<xml><a> padded </a><b></b><c/></xml>", "<xml><a>x<!-- c -->y</a></xml>",
    "<xml><a><![CDATA[ <b>not markup</b> ]]></a></xml>", "<xml><a>&lt;&amp;&#x4F60;</a></xml>",
    "<?xml version='1.0' encoding='GBK'?><xml><a>1</a></xml>", "<xml><a>1</a></xml><second/>",
    "<!DOCTYPE xml [<!ENTITY e 'boom'>]><xml><a>&e;</a></xml>", "<xml><a>&undefined;</a></xml>",
    "<other><MsgType>text</MsgType></other>", "<xml><MsgType/></xml>", "<xml><MsgType><x>1</x></MsgType></xml>",
    "<xml><MsgType>event</MsgType></xml>", "<xml><MsgType>event</MsgType><Event/></xml>",
    "<xml><MsgType>event</MsgType><Event>subscribe</Event><EventKey><k>1</k></EventKey></xml>",
    "<xml xmlns='urn:x'><a>1</a></xml>", "<xml><a>1<?pi data?></a></xml>", "<xml><a>1</a>", "<xml><a>\ufeff</a></xml>",
    "\ufeff<xml><a>1</a></xml>", "<xml>\n  <a>1</a>\n  <b>2</b>\n</xml>", "<xml><a>1</b></xml>",
]


@pytest.mark.parametrize("xml", EDGES)
def test_edge_cases_parse_as_xmltodict_and_wechatpy_parse_them(xml: str) -> None:
    assert outcome(parse_xml, xml) == outcome(xmltodict.parse, xml)
    assert message_outcome(parse_message, xml) == message_outcome(wechatpy_parse_message, xml)


_names = st.sampled_from(["xml", "MsgType", "Content", "Event", "EventKey", "a", "item"])
_texts = st.sampled_from(["", " ", "text", "event", "subscribe", "qrscene_1", " 你好 ", "&amp;", "<![CDATA[x]]>",
                          "<!-- c -->", "&e;", "]]>", "<", "\n"])


@st.composite
def documents(draw: Any, depth: int = 0) -> str:
    name = draw(_names)
    attrs = draw(st.sampled_from(["", "", "", " k='v'"]))
    if depth < 2 and draw(st.booleans()):
        inner = "".join(draw(st.lists(st.one_of(_texts, documents(depth + 1)), max_size=5)))
    else:
        inner = draw(_texts)
    return f"<{name}{attrs}>{inner}</{name}>"


@settings(max_examples=400, derandomize=True, database=None, deadline=None)
@given(documents(), st.sampled_from(["", "", "<?xml version='1.0'?>", "<!DOCTYPE xml [<!ENTITY e 'x'>]>"]))
def test_generated_xml_parses_as_xmltodict_and_wechatpy_parse_it(document: str, prolog: str) -> None:
    xml = prolog + document
    assert outcome(parse_xml, xml) == outcome(xmltodict.parse, xml)
    assert message_outcome(parse_message, xml) == message_outcome(wechatpy_parse_message, xml)


_query_parts = st.sampled_from(["a", "b", "=", "&", "&&", "%", "%2", "%41", "%e4%bd%a0", "%ff", "%zz", "+", ";",
                                " ", "é", "signature", "nonce=1", "timestamp"])


@settings(max_examples=2000, derandomize=True, database=None, deadline=None)
@given(st.lists(_query_parts, max_size=12).map("".join))
def test_first_values_are_parse_qsl_first_values(query: str) -> None:
    expected: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        expected.setdefault(name, value)
    assert first_values(query) == expected


class FixedTime:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import wechatpy.replies
        monkeypatch.setattr(wechatpy.replies.time, "time", lambda: 1700000000.75)


@pytest.mark.parametrize("data", [
    {"ToUserName": "gh_account", "FromUserName": "oUser", "MsgType": "text", "Content": "hi"},
    {"ToUserName": "gh_account", "FromUserName": None, "MsgType": "text"},
    {"FromUserName": "oUser", "MsgType": "text"},
    {"ToUserName": "", "FromUserName": "oUser"},
    {"ToUserName": {"nested": "1"}, "FromUserName": "oUser"},
])
@pytest.mark.parametrize("content", ["你好 <b>&amp;</b>", "x]]]]><![CDATA[>y", ""])
def test_text_replies_render_as_wechatpy_renders_them(monkeypatch: pytest.MonkeyPatch, data: dict[str, Any],
                                                      content: str) -> None:
    FixedTime(monkeypatch)
    expected = TextReply(message=TextMessage(dict(data)), content=content).render()
    assert render_text_reply(TextMessage(dict(data)), content, 1700000000) == expected
