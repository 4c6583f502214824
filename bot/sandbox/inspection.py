"""``/sandbox/*`` endpoints for the customer-service and media scene: tell the sandbox a user wrote, and read
what the account did — refused sends, typing, each user's quota, uploaded voice and what it says.

Kept apart from ``app.py``'s original control endpoints (clips, media, faults, config, calls, messages) so
each file stays one concern; every answer is the matching :class:`SandboxAccount` accessor as JSON:

- ``POST /sandbox/user_messages {"openid", "ago_s"?}`` → :meth:`SandboxAccount.user_messaged` (the window).
- ``GET /sandbox/users`` → every user's window; ``?openid=`` → one (``{}`` if never seen).
- ``GET /sandbox/refused`` → :meth:`SandboxAccount.refused_messages`.
- ``GET /sandbox/typing`` → :meth:`SandboxAccount.typing_calls`.
- ``GET /sandbox/uploads`` → :meth:`SandboxAccount.uploads`; ``?media_id=`` → one (404 if unknown).
"""
from __future__ import annotations

from typing import Any

from flask import Flask, Response, request

from bot.sandbox.account import SandboxAccount
from bot.sandbox.endpoint import control, control_body, json_response


def register(app: Flask, sandbox: SandboxAccount) -> None:
    """Add the endpoints above to the sandbox's app."""

    @app.post("/sandbox/user_messages")
    @control
    def control_user_messages() -> Any:
        b = control_body()
        return sandbox.user_messaged(str(b["openid"]), ago_s=float(b.get("ago_s") or 0.0))

    @app.get("/sandbox/users")
    @control
    def control_users() -> Any:
        openid = request.args.get("openid")
        return sandbox.user(openid) if openid else sandbox.users()

    @app.get("/sandbox/refused")
    @control
    def control_refused() -> Any:
        return sandbox.refused_messages()

    @app.get("/sandbox/typing")
    @control
    def control_typing() -> Any:
        return sandbox.typing_calls()

    @app.get("/sandbox/uploads")
    @control
    def control_uploads() -> Any:
        media_id = request.args.get("media_id")
        if not media_id:
            return sandbox.uploads()
        info = sandbox.media_info(media_id)
        return info if info is not None else json_response({"error": f"no media {media_id!r}"}, status=404)

    @app.get("/sandbox/uploads/<media_id>/data")
    def control_upload_data(media_id: str) -> Any:
        """The bytes of uploaded voice, as the user would hear it (``simulate --save``)."""
        found = sandbox.media_data(media_id)
        if found is None:
            return json_response({"error": f"no media {media_id!r}"}, status=404)
        data, content_type = found
        return Response(data, content_type=content_type)
