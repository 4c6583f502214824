"""Late answers through the customer-service API (``message/custom/send``), sent at most once by the caller.

WeChat allows a few such messages within 48 h of the user's message. 45015 (window passed) and 45047 (quota
used up) are final: logged as undeliverable with the message id and never retried. A busy or unreachable API
is retried a bounded number of times.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import xmltodict

from bot.core.pipeline import SUCCESS
from bot.wechat.errors import (BusyError, CustomerServiceQuotaError, CustomerServiceWindowError, TransportError,
                            WeChatAPIError)

log = logging.getLogger("bot.delivery")


def cs_payload(reply_xml: str) -> dict[str, Any] | None:
    """The customer-service form of a reply: text, image and voice map one to one; None when there is no
    reply. Other types (news, music, video) keep only their ``msgtype`` and are logged as undeliverable if
    they come late: their passive and customer-service formats differ, so this bot does not guess."""
    if not reply_xml or reply_xml == SUCCESS:
        return None
    fields = xmltodict.parse(reply_xml)["xml"]
    kind = fields.get("MsgType")
    if kind == "text":
        return {"msgtype": "text", "content": fields.get("Content") or ""}
    if kind in ("image", "voice"):
        return {"msgtype": kind, "media_id": (fields.get(kind.capitalize()) or {}).get("MediaId")}
    return {"msgtype": kind}


def send_late(client: Any, msg_id: str, openid: str, payload: dict[str, Any] | None, *, retries: int = 2,
              backoff_s: float = 0.5) -> bool:
    """Send ``payload`` (from :func:`cs_payload`) to ``openid``; True when WeChat accepted it."""
    if payload is None:
        log.info("delivery msg_id=%s late result is empty: nothing to send", msg_id)
        return False
    kind = payload.get("msgtype")
    senders = {"text": lambda: client.message.send_text(openid, payload["content"]),
               "image": lambda: client.message.send_image(openid, payload["media_id"]),
               "voice": lambda: client.message.send_voice(openid, payload["media_id"])}
    if kind not in senders:
        log.error("undeliverable msg_id=%s reason=a late %s reply cannot go through the customer-service API",
                  msg_id, kind)
        return False
    for attempt in range(retries + 1):
        try:
            if not isinstance(senders[kind](), dict):  # wechatpy hands back a body that is not JSON as it is
                raise TransportError("message/custom/send", None, "answer is not a JSON object")
        except (CustomerServiceWindowError, CustomerServiceQuotaError) as exc:
            log.error("undeliverable msg_id=%s reason=customer-service API refused errcode=%s (%s); not retried",
                      msg_id, exc.errcode, "48 h window passed" if exc.errcode == 45015 else "quota used up")
            return False
        except (BusyError, TransportError) as exc:
            if attempt == retries:
                log.error("undeliverable msg_id=%s reason=customer-service API failed %d times: %s",
                          msg_id, attempt + 1, exc)
                return False
            log.warning("delivery msg_id=%s customer-service send failed (%s); retrying", msg_id, exc)
            time.sleep(backoff_s * 2 ** attempt)
        except WeChatAPIError as exc:
            log.error("undeliverable msg_id=%s reason=customer-service API refused: %s", msg_id, exc)
            return False
        else:
            log.info("delivered msg_id=%s via=customer_service type=%s", msg_id, kind)
            return True
    return False
