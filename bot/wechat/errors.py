"""Typed errors for WeChat's error codes, so callers branch on a class and users read a reason.

Messages never contain the access token or the AppSecret: URLs are left out on purpose.
"""
from __future__ import annotations


class WeChatAPIError(Exception):
    """WeChat answered an error code (or something that is not an answer).

    ``retryable``: busy, try the same call again shortly. ``final``: no other way will do better for this
    message (the user cannot receive it): nothing to keep for pickup. Neither: not this way — keep the answer
    for the user's next message."""

    retryable = False
    final = False

    def __init__(self, api: str, errcode: int | None, errmsg: str = "") -> None:
        super().__init__(f"{api}: errcode {errcode} ({errmsg})" if errcode is not None else f"{api}: {errmsg}")
        self.api, self.errcode, self.errmsg = api, errcode, errmsg


class BusyError(WeChatAPIError):
    """-1: the system is busy; try again shortly."""
    retryable = True


class TokenInvalidError(WeChatAPIError):
    """40001 / 40014 / 42001: the access token is bad or expired; refresh once and retry once."""


class InvalidMediaError(WeChatAPIError):
    """40007: the media_id is unknown or has expired (3 days)."""


class InvalidVoiceError(WeChatAPIError):
    """40010 and friends: WeChat refused the audio (format, size, rate)."""


class DuplicateVoiceIdError(WeChatAPIError):
    """The voice_id was already uploaded (a retry of the same message): poll the earlier upload."""


class VoiceExpiredError(WeChatAPIError):
    """The voice_id is unknown or its 10 s window has passed."""


class MediaFormatError(InvalidVoiceError):
    """40004 / 40005 from the media and material APIs: WeChat does not take the file as voice (AMR or mp3)."""


class MediaSizeError(InvalidVoiceError):
    """40006 / 40010 / 45001 / 45007 from the media and material APIs: the file is over 2 MB or over 60 s."""


class MaterialQuotaError(WeChatAPIError):
    """45074: the account holds as much permanent material as it may (1000 items): delete some first."""


class APIUnauthorizedError(WeChatAPIError):
    """48001 ("api unauthorized") / 48004 (api banned) / 50001: this account may not call the API (its type or
    verification), e.g. the customer-service API on an unverified account;
    callers remember it per account and take another way (bot/wechat/media.py)."""


class RateLimitedError(WeChatAPIError):
    """45009: daily API quota reached."""


class FrequencyLimitError(RateLimitedError):
    """WeCom 45009 ("api freq out of limit") / 45033 (too many concurrent calls): the app's per-minute limits
    (30 messages a minute to one user); retried a bounded number of times, then the answer is kept."""
    retryable = True


class CustomerServiceWindowError(WeChatAPIError):
    """45015: the user's 48 h window for customer-service messages has passed."""


class CustomerServiceQuotaError(WeChatAPIError):
    """45047: the customer-service message quota for this user is used up."""


class ContentTooLongError(WeChatAPIError):
    """45002: the content is over WeChat's size limit (2048 UTF-8 bytes for a text)."""


class RecipientError(WeChatAPIError):
    """WeCom 81013 / 82001 / 40003 / 60111, or the user listed in ``invaliduser``: the user is not (or no longer)
    in the app's visible range; nothing was sent, and no other way reaches them from this app."""
    final = True


class UnsupportedError(WeChatAPIError):
    """An API this kind of account does not have (a WeCom app: no customer-service typing, no recognition, no
    translation): raised before any call."""


class TokenUnavailableError(WeChatAPIError):
    """No access token could be fetched (bad AppSecret, IP not whitelisted, API unreachable)."""


class TransportError(WeChatAPIError):
    """No usable HTTP answer: connection refused, timeout, 5xx or a body that is not JSON."""
    retryable = True


ERRCODE_CLASSES: dict[int, type[WeChatAPIError]] = {
    -1: BusyError,
    40001: TokenInvalidError,
    40014: TokenInvalidError,
    42001: TokenInvalidError,
    40007: InvalidMediaError,
    40010: InvalidVoiceError,
    45009: RateLimitedError,
    45002: ContentTooLongError,
    45015: CustomerServiceWindowError,
    48004: APIUnauthorizedError,
    45047: CustomerServiceQuotaError,
    48001: APIUnauthorizedError,
    50001: APIUnauthorizedError,
}
# Undocumented by WeChat for the recognition API; the sandbox answers these, and they only apply there.
VOICE_ERRCODE_CLASSES: dict[int, type[WeChatAPIError]] = {
    46001: VoiceExpiredError,       # voice_id unknown or its 10 s window has passed
    47001: DuplicateVoiceIdError,   # voice_id already uploaded (a retry of the same message)
}


# What the media and material APIs mean by the codes WeChat documents for them (voice: AMR or mp3, ≤ 2 MB, ≤ 60 s).
MEDIA_APIS = frozenset({"media/upload", "material/add_material", "material/del_material"})
MEDIA_ERRCODE_CLASSES: dict[int, type[WeChatAPIError]] = {
    40004: MediaFormatError,   # invalid media type
    40005: MediaFormatError,   # invalid file type
    40006: MediaSizeError,     # invalid file size
    40010: MediaSizeError,     # invalid voice size
    45001: MediaSizeError,     # media size out of limit
    45007: MediaSizeError,     # voice playtime out of limit
    45074: MaterialQuotaError,  # material list size out of limit
}


# WeCom's global return codes (developer.work.weixin.qq.com 全局错误码), for a self-built app's calls. 40001 is
# "invalid secret" there (a gettoken failure), not a bad token as on the Official Account.
WECOM_ERRCODE_CLASSES: dict[int, type[WeChatAPIError]] = {
    -1: BusyError,
    40014: TokenInvalidError,   # invalid access_token
    41001: TokenInvalidError,   # access_token missing
    42001: TokenInvalidError,   # access_token expired
    40007: InvalidMediaError,
    45002: ContentTooLongError,
    45009: FrequencyLimitError,  # api freq out of limit
    45033: FrequencyLimitError,  # api concurrent out of limit
    48002: APIUnauthorizedError,  # api forbidden for this app
    40056: APIUnauthorizedError,  # invalid agentid: the token's app is not this agent
    60020: APIUnauthorizedError,  # not allow to access from your ip: add it to the app's trusted IPs
    40003: RecipientError,      # invalid userid
    60111: RecipientError,      # userid not found
    81013: RecipientError,      # user & party & tag all invalid
    82001: RecipientError,      # all recipients invalid or out of the app's visible range
}


def wecom_error_for(api: str, errcode: int, errmsg: str = "") -> WeChatAPIError:
    """The typed error for a WeCom app's call (media errors as the Official Account's media APIs)."""
    specific = MEDIA_ERRCODE_CLASSES if api in MEDIA_APIS else {}
    cls = specific.get(errcode) or WECOM_ERRCODE_CLASSES.get(errcode) or WeChatAPIError
    return cls(api, errcode, errmsg)


def error_for(api: str, errcode: int, errmsg: str = "") -> WeChatAPIError:
    specific = (VOICE_ERRCODE_CLASSES if api.startswith("media/voice/") else
                MEDIA_ERRCODE_CLASSES if api in MEDIA_APIS else {})
    cls = specific.get(errcode) or ERRCODE_CLASSES.get(errcode) or WeChatAPIError
    return cls(api, errcode, errmsg)
