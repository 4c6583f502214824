"""A stand-in for WeChat's servers on the calling side: sign, encrypt, post, and read the reply back."""
from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

import requests
import xmltodict
from wechatpy.crypto import WeChatCrypto
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto

from bot.config import Config
from bot.core.envelope import sign
from bot.core.webhook import Webhook
from bot.testing import messages

Mode = Literal["plaintext", "compatible", "safe"]


@dataclass
class Reply:
    """What came back, decrypted and parsed; ``content`` is what the user would read."""

    status: int
    body: str
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str | None:
        return self.fields.get("MsgType")

    @property
    def content(self) -> str | None:
        """The text a user sees; None for ``success``/empty answers (the user sees nothing)."""
        return self.fields.get("Content")

    @property
    def media_id(self) -> str | None:
        """The media of a voice, image or video reply."""
        kind = (self.type or "").capitalize()
        inner = self.fields.get(kind)
        return inner.get("MediaId") if isinstance(inner, dict) else None

    @property
    def is_success(self) -> bool:
        return self.status == 200 and self.body in ("success", "")

    def __str__(self) -> str:
        if self.status != 200:
            return f"HTTP {self.status}: {self.body}"
        if self.is_success:
            return "(no reply: the user sees nothing)"
        return self.content if self.content is not None else f"[{self.type}] {self.fields}"


class Envelope:
    """Signs (and encrypts) a push the way WeChat does for one account's secrets; ``wecom=True``: the way WeCom
    does for a self-built app (always encrypted, ``msg_signature`` only, the corp id as ``appid``)."""

    def __init__(self, token: str, appid: str = "", aes_key: str = "", mode: Mode = "plaintext", *,
                 wecom: bool = False, agent_id: int = 0) -> None:
        if (mode != "plaintext" or wecom) and not aes_key:
            raise ValueError(f"mode {'safe (WeCom)' if wecom else mode!r} needs an EncodingAESKey")
        self.token, self.mode, self.appid = token, "safe" if wecom else mode, appid
        self.wecom, self.agent_id = wecom, agent_id
        self.crypto = (WeComCrypto if wecom else WeChatCrypto)(token, aes_key, appid) if aes_key else None

    @classmethod
    def for_config(cls, config: Config, mode: Mode | None = None) -> Envelope:
        w, account = config.wechat, config.account
        if account.kind == "wecom_app":
            return cls(w.token, w.appid, w.encoding_aes_key, wecom=True, agent_id=account.agent_id)
        return cls(w.token, w.appid, w.encoding_aes_key, mode or ("safe" if w.encoding_aes_key else "plaintext"))

    def wrap(self, xml: str, *, timestamp: int | None = None, nonce: str | None = None) -> tuple[dict[str, str], bytes]:
        """The query string and body WeChat (or WeCom) would send."""
        timestamp_s, nonce = str(timestamp or int(time.time())), nonce or secrets.token_hex(5)
        if self.wecom:
            assert self.crypto is not None
            encrypt = xmltodict.parse(self.crypto.encrypt_message(xml, nonce, timestamp_s))["xml"]["Encrypt"]
            body = (f"<xml><ToUserName><![CDATA[{self.appid}]]></ToUserName><AgentID><![CDATA[{self.agent_id}]]>"
                    f"</AgentID><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>")
            return ({"msg_signature": sign(self.token, timestamp_s, nonce, encrypt), "timestamp": timestamp_s,
                     "nonce": nonce}, body.encode())
        query = {"signature": sign(self.token, timestamp_s, nonce), "timestamp": timestamp_s, "nonce": nonce,
                 "openid": str(xmltodict.parse(xml)["xml"].get("FromUserName", ""))}
        if self.mode == "plaintext":
            return query, xml.encode()
        assert self.crypto is not None
        sealed = xmltodict.parse(self.crypto.encrypt_message(xml, nonce, timestamp_s))["xml"]
        encrypt = sealed["Encrypt"]
        query.update(encrypt_type="aes", msg_signature=sign(self.token, timestamp_s, nonce, encrypt))
        if self.mode == "safe":
            body = f"<xml><ToUserName><![CDATA[{messages.DEFAULT_ACCOUNT}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        else:
            body = xml.replace("</xml>", f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>")
        return query, body.encode()

    def handshake_query(self, echostr: str = "echo-test") -> dict[str, str]:
        """The URL check's query; WeCom's carries ``echostr`` encrypted, signed with it (``msg_signature``)."""
        timestamp, nonce = str(int(time.time())), secrets.token_hex(5)
        if self.wecom:
            assert self.crypto is not None
            sealed = xmltodict.parse(self.crypto.encrypt_message(echostr, nonce, timestamp))["xml"]["Encrypt"]
            return {"msg_signature": sign(self.token, timestamp, nonce, sealed), "timestamp": timestamp,
                    "nonce": nonce, "echostr": sealed}
        return {"signature": sign(self.token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
                "echostr": echostr}

    def unwrap(self, status: int, body: str) -> Reply:
        """Parse (and, for encrypted answers, verify and decrypt) the bot's answer."""
        if status != 200 or body in ("success", "") or not body.lstrip().startswith("<"):
            return Reply(status, body)
        fields = xmltodict.parse(body)["xml"]
        if "Encrypt" in fields:
            if self.crypto is None:
                raise AssertionError("the bot encrypted its answer but this client has no AES key")
            plain = self.crypto.decrypt_message(body, fields["MsgSignature"], fields["TimeStamp"], fields["Nonce"])
            fields = xmltodict.parse(plain)["xml"]
            body = plain
        return Reply(status, body, dict(fields))


def account_config(config: Config, account: str | None) -> Config:
    """The config of ``account`` (``[accounts.NAME]``); a [wechat] config when ``account`` is None."""
    if account is None:
        if config.accounts:
            names = ", ".join(a.account.name for a in config.accounts)
            raise ValueError(f"this config serves several accounts ({names}): pass account=NAME")
        return config
    found = [a for a in config.served() if a.account.name == account]
    if not found:
        names = ", ".join(a.account.name for a in config.accounts) or "none: it is a [wechat] config"
        raise ValueError(f"no account {account!r} in this config (accounts: {names})")
    return found[0]


def sender_fields(config: Config) -> dict[str, Any]:
    """What :mod:`bot.testing.messages` needs to write to the config's account: a WeCom app's pushes name the
    corp id and carry the app's ``AgentID``."""
    if config.account.kind == "wecom_app":
        return {"account": config.wechat.appid, "agent_id": config.account.agent_id}
    return {}


class BotClient:
    """Talks to a bot in-process (a :class:`Webhook`) or over HTTP (a URL), as WeChat would.

    >>> client = BotClient(webhook)            # or BotClient(config, url="http://127.0.0.1:8080/wechat")
    >>> client.text("打开客厅的灯").content
    """

    def __init__(self, target: Webhook | Config, *, url: str | None = None, mode: Mode | None = None,
                 openid: str = messages.DEFAULT_OPENID, timeout: float = 30.0, account: str | None = None) -> None:
        self.webhook = target if isinstance(target, Webhook) else None
        self.config = target.config if isinstance(target, Webhook) else account_config(target, account)
        self.url = url
        if self.webhook is None and url is None:
            raise ValueError("BotClient needs a Webhook (in-process) or a url")
        self.envelope = Envelope.for_config(self.config, mode)
        self.openid = openid
        self.timeout = timeout
        self.session = requests.Session()

    def post_raw(self, query: Mapping[str, str], body: bytes) -> tuple[int, str]:
        if self.webhook is not None:
            response = self.webhook.handle("POST", query, body)
            return response.status, response.body
        r = self.session.post(f"{self.url}?{urlencode(query)}", data=body, timeout=self.timeout,
                              headers={"Content-Type": "text/xml"})
        return r.status_code, r.text

    def send(self, xml: str) -> Reply:
        query, body = self.envelope.wrap(xml)
        return self.envelope.unwrap(*self.post_raw(query, body))

    def text(self, content: str, **kw: Any) -> Reply:
        return self.send(messages.text(content, **self._sender(kw)))

    def voice(self, media_id: str = "media_id", **kw: Any) -> Reply:
        return self.send(messages.voice(media_id, **self._sender(kw)))

    def event(self, name: str, **kw: Any) -> Reply:
        return self.send(messages.event(name, **self._sender(kw)))

    def _sender(self, kw: dict[str, Any]) -> dict[str, Any]:
        """Who writes to whom: this client's user, and for a WeCom app the corp id and the app's AgentID."""
        kw.setdefault("openid", self.openid)
        return {**sender_fields(self.config), **kw}

    def handshake(self, echostr: str = "echo-test") -> tuple[int, str]:
        query = self.envelope.handshake_query(echostr)
        if self.webhook is not None:
            r = self.webhook.handle("GET", query, b"")
            return r.status, r.body
        resp = self.session.get(self.url or "", params=query, timeout=self.timeout)
        return resp.status_code, resp.text
