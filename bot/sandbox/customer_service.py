"""The customer-service endpoints: ``message/custom/send`` and ``message/custom/typing``, as WeChat answers them.

Both are refused with **48001** (api unauthorized) on an account without the customer-service API (setting
``customer_service = False``: unverified accounts, personal subscription accounts among them), before the body
is read, as WeChat's gateway does. Then, in this order:

message/custom/send
- body not JSON → 47001; no ``touser`` → 40003 (invalid openid); no ``msgtype`` → 40008 (invalid message type).
- ``text``: empty or missing ``text.content`` → 44004 (empty content); over ``max_text_bytes`` (2048) bytes of
  UTF-8 → 45002 (content size out of limit), as WeChat answers a text over 2048 bytes.
- ``voice``: a ``voice.media_id`` the account does not hold (never uploaded, expired after ``media_ttl_s``, or a
  deleted permanent material) → 40007 (invalid media_id).
- The user's window (bot/sandbox/users.py): 48 h after their last message passed → 45015, the ``cs_quota`` (5)
  messages of this window already sent → 45047. Only an accepted message counts.
- Other message types (image, news, ...) are accepted as they are and recorded.

message/custom/typing (``{"touser", "command": "Typing" | "CancelTyping"}``)
- body not JSON → 47001; no ``touser`` → 40003; any other ``command`` → 45072 ("command字段取值不对", WeChat's
  documented code for this endpoint, rather than a generic 40035).
- 48 h window passed → 45015; ``Typing`` more than ``typing_window_s`` (30 s) after the user's last message →
  45080; ``Typing`` while one still shows (``typing_lasts_s``, 15 s) → 45081 — the three as documented.
  Typing never counts against the quota.

Every call lands in the call log (``state.record``): ``SandboxAccount.refused_messages()`` and
``typing_calls()`` read it, so refusals and typing show in ``/sandbox/refused`` and ``/sandbox/typing``.
"""
from __future__ import annotations

from typing import Any

from bot.sandbox.account import SandboxAccount
from bot.sandbox.endpoint import Answer, Endpoints, err, json_body

TYPING_COMMANDS = ("Typing", "CancelTyping")


def unauthorized() -> dict[str, Any]:
    return err(48001, "api unauthorized: the customer-service API needs a verified account "
                      "(sandbox setting customer_service is false)")


def register(endpoints: Endpoints, sandbox: SandboxAccount) -> None:
    """Add send and typing to the sandbox's app."""
    state = sandbox.state

    def content_problem(body: dict[str, Any]) -> dict[str, Any] | None:
        """What is wrong with the message itself, whoever it goes to."""
        kind = body.get("msgtype")
        if kind == "text":
            content = (body.get("text") or {}).get("content") if isinstance(body.get("text"), dict) else None
            if not content or not isinstance(content, str):
                return err(44004, "empty content")
            size, limit = len(content.encode("utf-8")), int(state.setting("max_text_bytes"))
            if size > limit:
                return err(45002, f"content size out of limit: {size} bytes of UTF-8 > {limit}")
        elif kind == "voice":
            voice = body.get("voice")
            media_id = voice.get("media_id") if isinstance(voice, dict) else None
            if not isinstance(media_id, str) or state.find_media(media_id) is None:
                return err(40007, f"invalid media_id {media_id!r}: not uploaded, expired or deleted")
        return None

    def addressed() -> Any:
        """What send and typing check first, in WeChat's order: the account may use the API, the body is JSON,
        it names a user. The body, or the error answer."""
        if not state.setting("customer_service"):
            return unauthorized()
        body = json_body()
        if body is None:
            return err(47001, "data format error")
        if not body.get("touser"):
            return err(40003, "invalid openid")
        return body

    @endpoints.api("/cgi-bin/message/custom/send", ("POST",))
    def send() -> Answer:
        body = addressed()
        if not isinstance(body, dict) or "touser" not in body:
            return body
        if not body.get("msgtype"):
            return err(40008, "invalid message type")
        problem = content_problem(body)
        if problem:
            return problem
        with state.lock:  # count and record as one step, so the log's order is the quota's order
            refused = state.users.take_send(str(body["touser"]))
            if refused:
                return err(*refused)
            state.record_message(body)
        return err(0, "ok")

    @endpoints.api("/cgi-bin/message/custom/typing", ("POST",))
    def typing() -> Answer:
        body = addressed()
        if not isinstance(body, dict) or "touser" not in body:
            return body
        command = body.get("command")
        if command not in TYPING_COMMANDS:
            return err(45072, f"invalid command {command!r}: must be Typing or CancelTyping")
        refused = state.users.typing(str(body["touser"]), command)
        return err(*refused) if refused else err(0, "ok")
