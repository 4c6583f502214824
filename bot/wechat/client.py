"""The WeChat API client: wechatpy's ``WeChatClient`` with a shared token and a bounded retry.

What we change and why:
- every URL, the token fetch included, honours ``[wechat] api_base_url`` (wechatpy hard-codes the host
  for the token);
- the access token lives in the configured store and is fetched by one caller at a time across workers
  (wechatpy keeps it per process, so workers break each other's tokens);
- ``/cgi-bin/stable_token`` by default, which a fetch elsewhere does not invalidate;
- on 40001/40014/42001: one refresh and one retry, never wechatpy's unbounded recursion;
- error codes become typed exceptions; no message carries the token or the secret.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import requests
import requests.adapters
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException

from bot.config import WeChatConfig
from bot.ops.logs import SECRET_PARAM
from bot.store import Store
from bot.wechat.errors import TokenInvalidError, TokenUnavailableError, TransportError, WeChatAPIError, error_for
from bot.wechat.media import WeChatVoiceMedia
from bot.wechat.token import AccessTokenManager, TokenError
from bot.wechat.voice import WeChatVoice

log = logging.getLogger("bot.wechat")

_SECRET_PARAM = SECRET_PARAM  # one pattern for every redaction (bot/ops/logs.py)


class _RedactSecrets(logging.Filter):
    """urllib3 logs every request line, query string included, at DEBUG: keep tokens and secrets out."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SECRET_PARAM.sub(r"\1***", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_urllib3_log = logging.getLogger("urllib3.connectionpool")
if not any(isinstance(f, _RedactSecrets) for f in _urllib3_log.filters):
    _urllib3_log.addFilter(_RedactSecrets())


def api_name(url: str) -> str:
    """``.../cgi-bin/media/voice/addvoicetorecofortext`` → ``media/voice/addvoicetorecofortext``."""
    return url.split("/cgi-bin/", 1)[-1].split("?", 1)[0]


class SharedToken:
    """What both API clients add to wechatpy's (mixed in before it): the access token shared through the store,
    one refresh and one retry on a rejected token, typed errors (``error_for``), and every URL on
    ``api_base_url``. The class mixing it in says how a token is fetched (:meth:`_fetch_token`)."""

    # set by the wechatpy client this is mixed into
    _http: requests.Session
    timeout: float
    API_BASE_URL: str
    #: how this API's errcodes become typed errors (bot/wechat/errors.py)
    error_for: Any = staticmethod(error_for)

    def _share_token(self, config: WeChatConfig, store: Store, key: str, *, session: requests.Session | None,
                     pool_size: int, account: str = "") -> None:
        self.base_url = config.api_base_url.rstrip("/")
        self.API_BASE_URL = f"{self.base_url}/cgi-bin/"
        self.account = account  # the metrics label of token fetches (bot/ops/account.py)
        if session is not None:
            self._http = session
        else:  # one pooled connection per job thread, so a busy bot does not churn connections
            adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=max(10, pool_size))
            self._http.mount("http://", adapter)
            self._http.mount("https://", adapter)
        self.tokens = AccessTokenManager(store, self._fetch_token, key=key, redact=[config.appsecret])

    @property
    def access_token(self) -> str:
        return self.tokens.get()

    def fetch_access_token(self) -> dict[str, Any]:
        token, expires_in = self._fetch_token()
        return {"access_token": token, "expires_in": expires_in}

    def _fetch_token(self) -> tuple[str, int]:
        raise NotImplementedError  # each client fetches its own kind of token

    def _fetched(self, api: str, call: Any) -> tuple[str, int]:
        """Run a token fetch ``call``: the token and its lifetime, counted and logged (never the token)."""
        from bot.ops.metrics import TOKEN_FETCHES, labelled
        started = time.perf_counter()
        try:
            result = self._json(api, call)
            if "access_token" not in result:
                raise WeChatAPIError(api, None, "answer without access_token")
        except WeChatAPIError as exc:
            result_label = "transport" if isinstance(exc, TransportError) else str(exc.errcode or "bad_answer")
            labelled(TOKEN_FETCHES, api, result_label, account=self.account).inc()
            raise
        labelled(TOKEN_FETCHES, api, "ok", account=self.account).inc()
        log.info("fetched access token endpoint=%s expires_in=%s ms=%.1f", api, result.get("expires_in"),
                 (time.perf_counter() - started) * 1000)
        return str(result["access_token"]), int(result.get("expires_in", 7200))

    def _json(self, api: str, call: Any) -> dict[str, Any]:
        try:
            response = call()
        except requests.RequestException as exc:
            raise TransportError(api, None, type(exc).__name__) from None
        if response.status_code >= 400:
            raise TransportError(api, None, f"HTTP {response.status_code}")
        try:
            result = response.json()
        except ValueError:
            raise TransportError(api, None, "answer is not JSON") from None
        if not isinstance(result, dict):
            raise TransportError(api, None, "answer is not a JSON object")
        if int(result.get("errcode") or 0) != 0:
            raise self.error_for(api, int(result["errcode"]), str(result.get("errmsg", "")))
        return result

    # -- every call: typed errors, one refresh-and-retry on a bad token -------------------------
    def _request(self, method: str, url_or_endpoint: str, **kwargs: Any) -> Any:
        api = api_name(url_or_endpoint)
        params = dict(kwargs.pop("params", None) or {})
        try:
            token = self.tokens.get()
            try:
                return self._call(method, url_or_endpoint, api, token, params, kwargs)
            except TokenInvalidError as exc:
                log.warning("%s: token rejected (errcode %s); refreshing once and retrying once", api, exc.errcode)
                token = self._refresh(token)
            return self._call(method, url_or_endpoint, api, token, params, kwargs)
        except TokenError as exc:
            raise TokenUnavailableError(api, exc.errcode, str(exc)) from None

    def _refresh(self, token: str) -> str:
        return self.tokens.refresh(token)

    def _call(self, method: str, url: str, api: str, token: str, params: dict[str, Any],
              kwargs: dict[str, Any]) -> Any:
        try:
            result = super()._request(  # type: ignore[misc]  # the wechatpy client this is mixed into
                method, url, params={**params, "access_token": token}, **kwargs)
        except WeChatClientException as exc:
            if exc.errcode is None:
                status = getattr(exc.response, "status_code", "?")
                raise TransportError(api, None, f"HTTP {status}") from None
            raise self.error_for(api, int(exc.errcode), str(exc.errmsg)) from None
        except requests.RequestException as exc:
            raise TransportError(api, None, type(exc).__name__) from None
        return result


class WeChatAPI(SharedToken, WeChatClient):
    """wechatpy's client plus the ``voice`` API group (``client.voice.add`` / ``.query`` / ``.translate``) and
    voice media for replies in ``media`` (``.upload_voice`` / ``.add_voice_material`` / ``.delete_material``)."""

    voice = WeChatVoice()
    media = WeChatVoiceMedia()

    def __init__(self, config: WeChatConfig, store: Store, *, session: requests.Session | None = None,
                 pool_size: int = 10, account: str = "") -> None:
        super().__init__(config.appid, config.appsecret, timeout=config.http_timeout_s, auto_retry=False)
        self.token_endpoint = config.token_endpoint
        self._force_refresh = False  # stable_token hands back the rejected token unless forced
        self._share_token(config, store, f"access_token:{config.appid}", session=session, pool_size=pool_size,
                          account=account)

    def _refresh(self, token: str) -> str:
        self._force_refresh = True
        try:
            return self.tokens.refresh(token)
        finally:
            self._force_refresh = False

    def _fetch_token(self) -> tuple[str, int]:
        force, self._force_refresh = self._force_refresh, False
        if self.token_endpoint == "stable":
            return self._fetched("stable_token", lambda: self._http.post(
                f"{self.base_url}/cgi-bin/stable_token", timeout=self.timeout, json={
                    "grant_type": "client_credential", "appid": self.appid, "secret": self.secret,
                    "force_refresh": force}))
        return self._fetched("token", lambda: self._http.get(
            f"{self.base_url}/cgi-bin/token", timeout=self.timeout, params={
                "grant_type": "client_credential", "appid": self.appid, "secret": self.secret}))


__all__ = ["SharedToken", "WeChatAPI"]
