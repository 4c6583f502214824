"""How every WeChat endpoint of the sandbox answers and is recorded, shared by the endpoint groups.

One place for the order WeChat applies (an injected fault first, then the access token, then the endpoint's
own rules) and for the call log, so ``app.py``, ``customer_service.py`` and ``media_api.py`` cannot drift
apart: a new endpoint written with :meth:`Endpoints.api` is faultable, token-checked and logged like the rest.
"""
from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any, TypeAlias

from flask import Flask, Response, g, request

from bot.sandbox.state import Fault, SandboxError, SandboxState

JSON_TYPE = "application/json; encoding=utf-8"
_REDACT = {"access_token", "secret", "appsecret"}
_ERRMSG = {-1: "system error", 40001: "invalid credential", 42001: "access_token expired", 45009: "reach max api "
           "daily quota limit", 45015: "response out of time limit", 45047: "out of response count limit",
           48001: "api unauthorized"}

Answer: TypeAlias = dict[str, Any] | Response


def json_response(payload: Any, status: int = 200, content_type: str = JSON_TYPE) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False), status=status, content_type=content_type)


def err(errcode: int, errmsg: str) -> dict[str, Any]:
    return {"errcode": errcode, "errmsg": errmsg}


def error_response(errcode: int, errmsg: str, content_type: str = JSON_TYPE) -> Response:
    """A JSON error as a ready Response (for endpoints whose success is not JSON), still logged with its code."""
    resp = json_response(err(errcode, errmsg), content_type=content_type)
    resp.errcode, resp.errmsg = errcode, errmsg  # type: ignore[attr-defined]
    return resp


def fault_response(fault: Fault) -> Response:
    if fault.body is not None:
        kind = "text/html" if fault.body.lstrip().startswith("<") else "text/plain"
        resp = Response(fault.body, status=fault.http_status or 200, content_type=kind)
        resp.errmsg = None  # type: ignore[attr-defined]
        return resp
    msg = _ERRMSG.get(fault.errcode, "sandbox injected fault")
    resp = json_response(err(fault.errcode, msg), status=fault.http_status or 200)
    resp.errmsg = msg  # type: ignore[attr-defined]
    return resp


def json_body() -> dict[str, Any] | None:
    """The request's JSON object, or None (not JSON, or not an object): WeChat answers 47001 then."""
    body = request.get_json(force=True, silent=True)
    return body if isinstance(body, dict) else None


class Endpoints:
    """Registers WeChat endpoints on ``app`` over ``state``: ``@endpoints.api("/cgi-bin/...", ("POST",))``."""

    def __init__(self, app: Flask, state: SandboxState) -> None:
        self.app, self.state = app, state

    def api(self, rule: str, methods: tuple[str, ...], *, needs_token: bool = True) -> Callable:
        """Register a WeChat endpoint: faults first, then the token check, then the handler; log every call."""
        state = self.state

        def decorator(handler: Callable[[], Answer]) -> Callable[[], Response]:
            @functools.wraps(handler)
            def view() -> Response:
                started, cpu_started = state.clock(), time.perf_counter()
                fault = state.take_fault(request.path)
                if fault is not None:
                    resp, errcode = fault_response(fault), fault.errcode
                    errmsg = getattr(resp, "errmsg", None)
                else:
                    problem = state.check_token(request.args.get("access_token")) if needs_token else None
                    answer: Answer = err(*problem) if problem else handler()
                    if isinstance(answer, Response):
                        resp, errcode = answer, int(getattr(answer, "errcode", 0))
                        errmsg = getattr(answer, "errmsg", None)
                    else:
                        resp, errcode = json_response(answer), int(answer.get("errcode", 0))
                        errmsg = answer.get("errmsg")
                body = None if request.mimetype.startswith("multipart/") else json_body()
                state.record({
                    "api": request.path.rstrip("/").rsplit("/", 1)[-1],
                    "path": request.path,
                    "method": request.method,
                    "query": {k: v for k, v in request.args.items() if k not in _REDACT},
                    "json": {k: v for k, v in body.items() if k not in _REDACT} if body is not None else None,
                    "t": started,
                    "ms": (time.perf_counter() - cpu_started) * 1000,  # the sandbox's own handling time
                    "status": resp.status_code,
                    "errcode": errcode,
                    "errmsg": errmsg,
                    **getattr(g, "call_note", {}),  # what a handler adds (note_call), e.g. a form's fields
                })
                return resp

            self.app.add_url_rule(rule, handler.__name__, view, methods=list(methods))
            return view

        return decorator


def note_call(**fields: Any) -> None:
    """Add ``fields`` to this request's entry in the call log (never a secret: the log is readable by anyone)."""
    if not hasattr(g, "call_note"):
        g.call_note = {}
    g.call_note.update(fields)


# ------------------------------------------------------------------------------------- /sandbox/* control endpoints
def control(handler: Callable[[], Any]) -> Callable[[], Response]:
    """A ``/sandbox/*`` view: the handler's result as JSON (a Response as it is); a request it cannot honour is
    a 400 saying why."""

    @functools.wraps(handler)
    def view() -> Response:
        try:
            result = handler()
            return result if isinstance(result, Response) else json_response(result)
        except KeyError as exc:
            return json_response({"error": f"missing field {exc}"}, status=400)
        except (SandboxError, ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, status=400)

    return view


def control_body() -> dict[str, Any]:
    """The JSON object a control request must carry (else :class:`SandboxError`, a 400)."""
    data = json_body()
    if data is None:
        raise SandboxError("expected a JSON object body")
    return data
