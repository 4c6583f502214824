"""Redis store, for workers spread over several machines (and the RQ executor).

Single commands (``SET NX PX``, ``PTTL``) and short Lua scripts make every operation atomic on the
server, so no client-side lock is needed. redis-py is imported lazily: it is an optional extra.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from bot.store.base import IndexOp, Store, StoreError, check_ttl, redact_url

T = TypeVar("T")

# Compare-and-set, with index changes: KEYS[1] the record, KEYS[2..] index zsets (none for a plain CAS); ARGV:
# expect_absent ("1"/"0"), expected, value, px ("" = no expiry), then for each index a member and a score
# ('' removes the member)
_CAS = """
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur then return 0 end
elseif cur ~= ARGV[2] then
  return 0
end
if ARGV[4] == '' then redis.call('SET', KEYS[1], ARGV[3])
else redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4]) end
for i = 2, #KEYS do
  local member, score = ARGV[2 * i + 1], ARGV[2 * i + 2]
  if score == '' then redis.call('ZREM', KEYS[i], member)
  else redis.call('ZADD', KEYS[i], score, member) end
end
return 1
"""

# KEYS[1] the record, KEYS[2] an index zset; ARGV: value, px ("" = no expiry): set only when neither exists
_ADD_IF_EMPTY = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
if ARGV[2] == '' then redis.call('SET', KEYS[1], ARGV[1])
else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return 1
"""

# KEYS[1] an index zset; ARGV: member, score ('' = whatever its score)
_INDEX_DISCARD = """
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not cur then return 0 end
if ARGV[2] ~= '' and tonumber(cur) ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"""

# KEYS[1]; ARGV: expected
_CAD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# KEYS[1]; ARGV: amount, px ("" = no expiry); the TTL is set only when this call created the key
_INCR = """
local existed = redis.call('EXISTS', KEYS[1])
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
if existed == 0 and ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return total
"""


def _px(ttl: float | None) -> int | None:
    ttl = check_ttl(ttl)
    return None if ttl is None else max(1, math.ceil(ttl * 1000))


class RedisStore(Store):
    """Keys live under ``prefix`` in the URL's database; ``rediss://`` uses TLS."""

    def __init__(
        self,
        url: str,
        prefix: str = "wvb:",
        *,
        connect_timeout_s: float = 2.0,
        socket_timeout_s: float = 5.0,
        retries: int = 2,
    ) -> None:
        super().__init__(prefix)
        self.url = redact_url(url)
        password = urlsplit(url).password
        self._secret = unquote(password) if password else None
        try:
            import redis
            from redis.backoff import ExponentialWithJitterBackoff
            from redis.retry import Retry
        except ImportError as exc:
            from bot.config.extras import install_hint

            raise StoreError(f"store URL {self.url} needs the redis client: {install_hint('redis')}") from exc
        self._redis_error: type[Exception] = redis.RedisError
        self._unreachable: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
        try:
            self._client = redis.Redis.from_url(
                url,
                decode_responses=True,
                socket_connect_timeout=connect_timeout_s,
                socket_timeout=socket_timeout_s,
                retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.2), retries),
            )
        except (ValueError, self._redis_error) as exc:
            raise self._wrap(exc) from None
        self._cas = self._client.register_script(_CAS)
        self._index_discard = self._client.register_script(_INDEX_DISCARD)
        self._add_if_empty = self._client.register_script(_ADD_IF_EMPTY)
        self._cad = self._client.register_script(_CAD)
        self._incr = self._client.register_script(_INCR)

    def _wrap(self, exc: Exception) -> StoreError:
        """A StoreError naming the (redacted) URL, with the password scrubbed from redis-py's text."""
        from bot.ops.metrics import STORE_ERRORS, labelled
        labelled(STORE_ERRORS, "redis").inc()
        detail = str(exc) or type(exc).__name__
        if self._secret:
            detail = detail.replace(self._secret, "***")
        if isinstance(exc, getattr(self, "_unreachable", ())):
            return StoreError(f"redis store {self.url} is unreachable: {detail}")
        return StoreError(f"redis store {self.url}: {detail}")

    def _run(self, op: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return op(*args, **kwargs)
        except self._redis_error as exc:
            raise self._wrap(exc) from None

    def get(self, key: str) -> str | None:
        return self._run(self._client.get, self._k(key))  # type: ignore[return-value]  # decode_responses

    def get_peeking(self, key: str, peek: str) -> tuple[str | None, bool]:
        def both() -> tuple[str | None, bool]:
            pipe = self._client.pipeline(transaction=False)  # one round trip
            pipe.get(self._k(key))
            pipe.exists(self._ix(peek))  # a sorted set with no member does not exist
            value, found = pipe.execute()
            return value, bool(found)
        return self._run(both)

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self._run(self._client.set, self._k(key), value, px=_px(ttl))

    def add(self, key: str, value: str, ttl: float | None = None, *, index: Sequence[IndexOp] = ()) -> bool:
        if index:
            return self.compare_and_set(key, None, value, ttl, index=index)
        return bool(self._run(self._client.set, self._k(key), value, nx=True, px=_px(ttl)))

    def add_if_empty(self, key: str, value: str, ttl: float | None = None, *, empty: str) -> bool:
        px = _px(ttl)
        return bool(self._run(self._add_if_empty, keys=[self._k(key), self._ix(empty)],
                              args=[value, "" if px is None else px]))

    def compare_and_set(
        self, key: str, expected: str | None, value: str, ttl: float | None = None, *,
        index: Sequence[IndexOp] = (),
    ) -> bool:
        px = _px(ttl)
        args: list[Any] = ["1" if expected is None else "0", expected or "", value, "" if px is None else px]
        for _, member, score in index:
            args += [member, "" if score is None else repr(float(score))]
        keys = [self._k(key), *(self._ix(name) for name, _, _ in index)]
        return bool(self._run(self._cas, keys=keys, args=args))

    def index_range(self, index: str, until: float = math.inf, limit: int = 100) -> list[tuple[str, float]]:
        bound = "+inf" if until == math.inf else repr(float(until))
        rows = self._run(self._client.zrangebyscore, self._ix(index), "-inf", bound, start=0, num=limit,
                         withscores=True)
        return [(str(m), float(s)) for m, s in rows]  # type: ignore[misc,str-unpack]

    def index_discard(self, index: str, member: str, score: float | None = None) -> bool:
        args = [member, "" if score is None else repr(float(score))]
        return bool(self._run(self._index_discard, keys=[self._ix(index)], args=args))

    def compare_and_delete(self, key: str, expected: str) -> bool:
        return bool(self._run(self._cad, keys=[self._k(key)], args=[expected]))

    def delete(self, key: str) -> None:
        self._run(self._client.delete, self._k(key))

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        px = _px(ttl)
        args = [int(amount), "" if px is None else px]
        return int(self._run(self._incr, keys=[self._k(key)], args=args))

    def ttl(self, key: str) -> float | None:
        ms = self._run(self._client.pttl, self._k(key))
        return None if ms is None or ms < 0 else ms / 1000.0

    def ping(self) -> None:
        self._run(self._client.ping)

    def close(self) -> None:
        try:
            self._client.close()
        except self._redis_error:
            pass
