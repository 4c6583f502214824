"""What the sandbox knows of each user: when they last wrote, what the account sent them since, typing.

WeChat's rules for the customer-service API, played per openid (every number a setting, so tests scale the
clocks down):

- After a user's message the account may send ``cs_quota`` (5) messages within ``cs_window_s`` (48 h); a
  new message from the user opens a new window and a new quota. Window passed → 45015, quota used → 45047.
- The typing indicator needs the user's message within ``typing_window_s`` (30 s) → else 45080; while one
  is showing (``typing_lasts_s``, 15 s, until ``CancelTyping`` or a message is sent) another ``Typing`` →
  45081. It needs the same 48 h window as messages (45015) and counts against no quota.

The sandbox hears nothing of what users send the bot, so tests say it: :meth:`Users.messaged`
(``POST /sandbox/user_messages``). An openid the sandbox was never told about is, by default
(``assume_user_messaged``), taken to have written just before the account first addressed it: every
customer-service call in WeChat follows a user's message, existing tests that never report one keep passing,
and the quota still counts from that first call. ``assume_user_messaged = False`` makes such a user unknown
(45015), for tests that want to prove they report every message.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Problem = tuple[int, str] | None


@dataclass
class UserWindow:
    """One user's customer-service window."""

    last_message_at: float
    implicit: bool  # assumed at first contact (assume_user_messaged), not reported
    sent: int = 0  # messages accepted since last_message_at
    typing_until: float | None = None  # a Typing indicator shows until then


class Users:
    """The per-openid windows; thread-safe under the sandbox state's lock."""

    def __init__(self, setting: Callable[[str], Any], clock: Callable[[], float], lock: threading.RLock) -> None:
        self._setting, self._clock, self._lock = setting, clock, lock
        self._windows: dict[str, UserWindow] = {}

    def messaged(self, openid: str, ago_s: float = 0.0) -> dict[str, Any]:
        """The user sent the account a message ``ago_s`` seconds ago: a new window and a fresh quota."""
        if not openid:
            raise ValueError("openid must not be empty")
        if ago_s < 0:
            raise ValueError("ago_s must be >= 0 (a message from the future opens no window)")
        with self._lock:
            self._windows[openid] = UserWindow(self._clock() - float(ago_s), implicit=False)
            return self.describe(openid)

    def take_send(self, openid: str) -> Problem:
        """Count one customer-service message to ``openid``, or say why WeChat refuses it (45015 / 45047)."""
        with self._lock:
            window, problem = self._open_window(openid)
            if window is None:
                return problem
            quota = int(self._setting("cs_quota"))
            if window.sent >= quota:
                return 45047, (f"out of response count limit: {window.sent} of {quota} messages sent since the "
                               "user's last message")
            window.sent += 1
            window.typing_until = None  # a message sent to the user ends the indicator
            return None

    def typing(self, openid: str, command: str) -> Problem:
        """Apply ``Typing`` / ``CancelTyping`` (already validated), or say why WeChat refuses it."""
        with self._lock:
            window, problem = self._open_window(openid)
            if window is None:
                return problem
            now = self._clock()
            if command == "CancelTyping":
                window.typing_until = None
                return None
            limit = float(self._setting("typing_window_s"))
            if now - window.last_message_at > limit:
                return 45080, (f"typing needs a message from the user within {limit:g} s; the last was "
                               f"{now - window.last_message_at:.1f} s ago")
            if window.typing_until is not None and now < window.typing_until:
                return 45081, "already typing: the indicator is still showing"
            window.typing_until = now + float(self._setting("typing_lasts_s"))
            return None

    def _open_window(self, openid: str) -> tuple[UserWindow | None, Problem]:
        """The user's window if it is still open, else (None, 45015); assumes a message for unknown users."""
        now = self._clock()
        window = self._windows.get(openid)
        if window is None:
            if not self._setting("assume_user_messaged"):
                return None, (45015, "response out of time limit: this user never sent the account a message")
            window = self._windows[openid] = UserWindow(now, implicit=True)
        span = float(self._setting("cs_window_s"))
        age = now - window.last_message_at
        if age > span:
            return None, (45015, f"response out of time limit: the user's last message was {age:.1f} s ago, "
                                 f"the window is {span:g} s")
        return window, None

    def describe(self, openid: str) -> dict[str, Any]:
        """What the inspect endpoint shows for one user ({} for one never seen)."""
        with self._lock:
            window = self._windows.get(openid)
            if window is None:
                return {}
            now = self._clock()
            age = now - window.last_message_at
            span, quota = float(self._setting("cs_window_s")), int(self._setting("cs_quota"))
            is_open = age <= span
            return {
                "openid": openid,
                "last_message_at": window.last_message_at,
                "last_message_s_ago": round(age, 3),
                "assumed": window.implicit,
                "sent": window.sent,
                "quota": quota,
                "remaining": max(0, quota - window.sent) if is_open else 0,
                "window_open": is_open,
                "window_left_s": round(max(0.0, span - age), 3),
                "typing": window.typing_until is not None and now < window.typing_until,
            }

    def all(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {openid: self.describe(openid) for openid in self._windows}

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()
