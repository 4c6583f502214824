"""The envelope: everything between the raw HTTP request and a parsed message.

Verify the signature (``msg_signature`` in AES mode, ``signature`` otherwise) in constant time, reject
stale timestamps, decrypt, check the AppID, parse; and on the way out, encrypt the reply when the request
was encrypted. wechatpy does the crypto and parsing; this module decides what each failure means.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from xml.parsers import expat
from xml.parsers.expat import ExpatError

import xmltodict
from wechatpy import replies
from wechatpy.crypto import PrpCrypto, WeChatCrypto
from wechatpy.enterprise.crypto import PrpCrypto as WeComPrpCrypto
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.events import EVENT_TYPES
from wechatpy.exceptions import InvalidAppIdException
from wechatpy.messages import MESSAGE_TYPES, BaseMessage, UnknownMessage

from bot.config import ServerConfig, WeChatConfig
from bot.core.answer import Image, Part, Text, Voice
from bot.core.text import cdata
from bot.ops.clock import SYSTEM, Clock

log = logging.getLogger("bot.envelope")


class EnvelopeError(Exception):
    """A request WeChat (or an attacker) sent that we refuse; ``status`` is the HTTP answer."""

    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.status = status
        self.reason = reason


class NotAMessage(Exception):
    """Well-formed, authenticated XML that is not a message: answered ``success`` and dropped."""


# wechatpy rewrites Event in place for a subscription through a QR code (it is "subscribe" on the wire).
_RENAMED_SUBSCRIBE = ("subscribe_scan", "subscribe_scan_product")


def wire_type(message: BaseMessage) -> str:
    """The push's ``MsgType`` as WeChat sent it, lowercased: wechatpy says ``unknown`` for types it does not
    know (``ctx.type`` and the ``bot.message`` line use this)."""
    data = getattr(message, "_data", None) or {}
    return str(data.get("MsgType") or message.type).lower()


def wire_event(message: BaseMessage) -> str | None:
    """The push's ``Event`` as WeChat sent it, lowercased (``CLICK`` → ``click``, ``WifiConnected`` →
    ``wificonnected``), None when it has none. wechatpy gives ``None`` for events it does not know
    (``subscribe_msg_popup_event``, ``PUBLISHJOBFINISH``…) and its own names for others (``wificconnected``,
    ``shakearound_user_shake``, ``subscribe_scan``): matching by those would never see the real ones."""
    data = getattr(message, "_data", None) or {}
    event = data.get("Event")
    if event is None:
        return None
    event = str(event).lower()
    return "subscribe" if event in _RENAMED_SUBSCRIBE else event


@dataclass
class Inbound:
    """An authenticated, decrypted, parsed push, with what we need to answer it."""

    message: BaseMessage
    encrypted: bool
    nonce: str
    xml: str
    #: Dedupe key: ``MsgId``, or ``FromUserName+CreateTime`` for events, which have none.
    key: str = field(init=False)
    #: How long this try waited for a thread since the server queued its connection, and since its timestamp
    #: says it was sent (the first try's own: bot/core/timing.py).
    waited_s: float = 0.0
    stamp_late_s: float = 0.0
    #: When WeChat sent the message's first try, on the pipeline clock's monotonic time (delivery sets it): the
    #: recognizers share the message's time from then (bot/voice/recognizers/chain.py).
    arrived: float | None = None
    #: Which of WeChat's tries of the message this request is (delivery sets it; 0: not known).
    attempt: int = 0

    def __post_init__(self) -> None:
        msg_id = self.data.get("MsgId")
        self.key = f"m:{msg_id}" if msg_id else \
            f"e:{self.data.get('FromUserName', '')}:{self.data.get('CreateTime', '')}"

    @property
    def data(self) -> dict[str, Any]:
        """The raw fields, for what wechatpy does not expose (``MediaId16K``)."""
        data: dict[str, Any] = self.message._data
        return data

    @property
    def msg_id(self) -> str:
        return self.key[2:]

    @property
    def msg_type(self) -> str:
        """``MsgType`` as WeChat sent it (see :func:`wire_type`)."""
        return wire_type(self.message)


def sign(*parts: str) -> str:
    """WeChat's signature: sha1 over the sorted parts (``wechatpy.utils.WeChatSigner``'s, without its objects)."""
    return hashlib.sha1(b"".join(sorted(part.encode("utf-8") for part in parts))).hexdigest()


class _NotFlat(Exception):
    """XML that is not a root of text-only elements: xmltodict's general rules decide what it becomes."""


def _forbid_entities(*_args: Any) -> None:
    raise ValueError("entities are disabled")  # as xmltodict's parse (disable_entities=True) does


def parse_xml(text: str) -> Any:
    """``xmltodict.parse(text)``, faster for the shape of nearly every push: a root whose children are text
    elements without attributes, each once (``{"xml": {"MsgType": "text", ...}}``). Anything else (nested
    elements such as ``ScanCodeInfo``, attributes, repeated names, text beside the children) is handed to
    xmltodict itself; malformed XML and entity declarations raise what xmltodict raises (same expat set-up)."""
    try:
        return _parse_flat(text)
    except _NotFlat:
        return xmltodict.parse(text)


def _parse_flat(text: str) -> Any:
    fields: dict[str, str | None] = {}
    chunks: list[str] = []
    path: list[str] = []  # the open elements: the root, then one of its children

    def start(name: str, attrs: list[str]) -> None:
        if attrs or len(path) == 2:
            raise _NotFlat
        path.append(name)
        chunks.clear()

    def characters(data: str) -> None:
        if len(path) == 2:
            chunks.append(data)
        elif data.strip():  # text in the root, beside its children: xmltodict keeps it as "#text"
            raise _NotFlat

    def end(name: str) -> None:
        if len(path) == 2:
            if name in fields:
                raise _NotFlat  # repeated: xmltodict makes a list
            fields[name] = "".join(chunks).strip() or None
            path.pop()

    parser = expat.ParserCreate("utf-8", None)
    parser.ordered_attributes = True
    parser.buffer_text = True
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    parser.EntityDeclHandler = _forbid_entities
    parser.Parse(text.encode("utf-8"), True)
    return {path[0]: fields or None}  # the root stays in path: expat allows no element after it


def parse_message(xml: str) -> BaseMessage | None:
    """``wechatpy.parse_message`` over :func:`parse_xml`: the same message class and fields, and the same
    exceptions for XML that is not a message (KeyError, TypeError, AttributeError)."""
    if not xml:
        return None
    message = parse_xml(xml)["xml"]
    message_type = message["MsgType"].lower()
    if message_type != "event" and not message_type.startswith("device_"):
        return MESSAGE_TYPES.get(message_type, UnknownMessage)(message)
    # events: wechatpy's own rules (wechatpy/parser.py), including its renamed subscriptions
    event_type = message["Event"].lower() if "Event" in message else None
    if event_type is None and message_type.startswith("device_"):
        event_type = message_type
    elif message_type.startswith("device_"):
        event_type = f"device_{event_type}"
    if event_type == "subscribe" and message.get("EventKey"):
        event_key = message["EventKey"]
        if event_key.startswith(("scanbarcode|", "scanimage|")):
            event_type = message["Event"] = "subscribe_scan_product"
        elif event_key.startswith("qrscene_"):
            event_type = message["Event"] = "subscribe_scan"
            message["EventKey"] = event_key[len("qrscene_"):]
    return EVENT_TYPES.get(event_type, UnknownMessage)(message)


_TEXT_REPLY = ("<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[{}]]></Content>\n"
               "<FromUserName><![CDATA[{}]]></FromUserName>\n<ToUserName><![CDATA[{}]]></ToUserName>\n"
               "<CreateTime>{}</CreateTime>\n</xml>")


def render_text_reply(message: BaseMessage, content: str, now: int) -> str:
    """``replies.TextReply(message=message, content=content, time=now).render()``, formatted at once when the
    message has both user names (as every push has): wechatpy's reply object reads each field through a
    descriptor."""
    data = getattr(message, "_data", None)
    if isinstance(message, BaseMessage) and isinstance(data, dict) and not hasattr(message, "agent"):
        ours, theirs = data.get("ToUserName"), data.get("FromUserName")
        if ours and theirs and isinstance(ours, str) and isinstance(theirs, str) and isinstance(content, str):
            return _TEXT_REPLY.format(content, ours, theirs, now)
    return str(replies.TextReply(message=message, content=content, time=now).render())


class Envelope:
    """Opens and seals WeChat callbacks for one Official Account."""

    # wechatpy's crypto for this kind of account, and what a payload for another account raises
    crypto_class: Any = WeChatCrypto
    prp_class: Any = PrpCrypto
    wrong_id: tuple[type[Exception], str] = (InvalidAppIdException, "wrong AppID in the encrypted message")

    def __init__(self, wechat: WeChatConfig, server: ServerConfig, *, clock: Clock = SYSTEM) -> None:
        self.token = wechat.token
        self.appid = wechat.appid
        self.replay_window_s = server.replay_window_s
        self.max_body_bytes = server.max_body_bytes
        self.clock = clock
        self.crypto = self.crypto_class(wechat.token, wechat.encoding_aes_key, wechat.appid) \
            if wechat.encoding_aes_key else None
        self._prp = self.prp_class(self.crypto.key) if self.crypto else None  # one per envelope: reusable cipher

    def handshake(self, query: Mapping[str, str]) -> str:
        """The URL check WeChat makes when the callback is configured: answer ``echostr``."""
        self._verify(query, "signature")
        echostr = query.get("echostr")
        if echostr is None:
            raise EnvelopeError(400, "missing echostr")
        return echostr

    def is_encrypted(self, query: Mapping[str, str]) -> bool:
        """Whether a push is in compatible or safe mode (``encrypt_type=aes``)."""
        return query.get("encrypt_type", "raw").lower() == "aes"

    def open(self, query: Mapping[str, str], body: bytes) -> Inbound:
        if len(body) > self.max_body_bytes:
            raise EnvelopeError(413, "body too large", f"{len(body)} > {self.max_body_bytes} bytes")
        if not body.strip():
            raise EnvelopeError(400, "empty body")
        encrypted = self.is_encrypted(query)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise EnvelopeError(400, "body is not UTF-8") from None
        if encrypted:
            xml = self._decrypt(query, text)
        else:
            self._verify(query, "signature")
            xml = text
        try:
            message = parse_message(xml)
        except (ExpatError, ValueError) as exc:  # xmltodict raises ValueError on entities
            raise EnvelopeError(400, "malformed XML", type(exc).__name__) from None
        except (KeyError, TypeError, AttributeError):
            raise NotAMessage("XML without a MsgType") from None
        if message is None:
            raise EnvelopeError(400, "empty body")
        return Inbound(message=message, encrypted=encrypted, nonce=query.get("nonce", ""), xml=xml)

    def seal(self, inbound: Inbound, reply_xml: str) -> str:
        """Encrypt a reply for an encrypted request; plaintext requests get it as it is."""
        if not inbound.encrypted or self.crypto is None:
            return reply_xml
        return str(self.crypto.encrypt_message(reply_xml, inbound.nonce or "wvb", str(int(self.clock.time()))))

    def render(self, inbound: Inbound, part: Part) -> str:
        """One part of an answer as the passive reply XML to ``inbound`` (the only place replies become XML)."""
        message = inbound.message
        if isinstance(part, Text):
            return render_text_reply(message, cdata(part.content), int(self.clock.time()))
        if isinstance(part, Voice):
            return str(replies.VoiceReply(message=message, media_id=part.media_id).render())
        if isinstance(part, Image):
            return str(replies.ImageReply(message=message, media_id=part.media_id).render())
        return part.xml

    def _verify(self, query: Mapping[str, str], name: str, *extra: str) -> None:
        signature, timestamp, nonce = query.get(name), query.get("timestamp"), query.get("nonce")
        if not signature or not timestamp or nonce is None:
            raise EnvelopeError(400, "missing signature parameters", f"need {name}, timestamp, nonce")
        expected = sign(self.token, timestamp, nonce, *extra)
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            raise EnvelopeError(403, "bad signature", name)
        if self.replay_window_s > 0:
            try:
                age = abs(self.clock.time() - int(timestamp))
            except ValueError:
                raise EnvelopeError(400, "bad timestamp", "not an integer") from None
            if age > self.replay_window_s:
                raise EnvelopeError(403, "stale timestamp", f"{age:.0f}s outside the {self.replay_window_s:.0f}s window")

    def _decrypt(self, query: Mapping[str, str], text: str) -> str:
        if self.crypto is None:
            raise EnvelopeError(400, "encrypted request but no encoding_aes_key configured")
        try:
            envelope = parse_xml(text)["xml"]
            encrypt = envelope["Encrypt"]
        except (ExpatError, ValueError) as exc:
            raise EnvelopeError(400, "malformed XML", type(exc).__name__) from None
        except (KeyError, TypeError):
            raise EnvelopeError(400, "encrypted request without an Encrypt element") from None
        if not isinstance(encrypt, str):
            raise EnvelopeError(400, "encrypted request without an Encrypt element")
        self._verify(query, "msg_signature", encrypt)
        return self._decrypt_verified(encrypt)

    def _decrypt_verified(self, encrypt: str) -> str:
        """Decrypt what the caller verified in constant time (without wechatpy's second signature check)."""
        wrong_id, reason = self.wrong_id
        try:
            assert self._prp is not None  # asked for only when a key is configured
            return str(self._prp.decrypt(encrypt, self.appid))
        except wrong_id:
            raise EnvelopeError(403, reason) from None
        except Exception as exc:  # bad base64, padding or length: the ciphertext is not ours
            raise EnvelopeError(400, "cannot decrypt", type(exc).__name__) from None


class WeComEnvelope(Envelope):
    """Opens and seals a WeCom (企业微信) self-built app's callbacks: wechatpy's WeCom crypto, the corp id as the
    receive id, and every push encrypted (there is no plaintext mode, and no ``encrypt_type`` parameter).

    The URL check differs from the Official Account's: ``echostr`` is encrypted and signed like a push
    (``msg_signature`` over token, timestamp, nonce and echostr); the answer is its decrypted text, exactly."""

    crypto_class = WeComCrypto
    prp_class = WeComPrpCrypto
    wrong_id = (InvalidCorpIdException, "wrong CorpID in the encrypted message")

    def __init__(self, wechat: WeChatConfig, server: ServerConfig, *, agent_id: int = 0,
                 clock: Clock = SYSTEM) -> None:
        super().__init__(wechat, server, clock=clock)
        self.agent_id = str(agent_id) if agent_id else ""

    def handshake(self, query: Mapping[str, str]) -> str:
        echostr = query.get("echostr")
        if echostr is None:
            raise EnvelopeError(400, "missing echostr")
        echostr = echostr.replace(" ", "+")  # a '+' sent without URL-encoding reads as a space; base64 has none
        self._verify(query, "msg_signature", echostr)
        return self._decrypt_verified(echostr)

    def is_encrypted(self, query: Mapping[str, str]) -> bool:
        return True

    def open(self, query: Mapping[str, str], body: bytes) -> Inbound:
        inbound = super().open(query, body)
        agent = inbound.data.get("AgentID")
        if self.agent_id and agent and str(agent).strip() != self.agent_id:
            raise EnvelopeError(403, "wrong AgentID", f"a push for app {str(agent)[:12]}, this is {self.agent_id}")
        return inbound
