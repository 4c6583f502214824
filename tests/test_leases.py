"""The heartbeat: a process's liveness, renewed from one thread, without waking it per message."""
from __future__ import annotations

import time

from bot.delivery.leases import Heartbeat, alive_key
from bot.store import open_store
from bot.store.memory import MemoryStore


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.sets = 0

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self.sets += 1
        super().set(key, value, ttl)


def wait_for(condition, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_a_hold_dropped_at_once_still_gets_its_renewal_and_later_holds_do_not_rewake() -> None:
    beat, store = Heartbeat(), CountingStore()
    beat.drop(beat.hold(store, ttl=30))  # a job that took a millisecond
    assert wait_for(lambda: store.get(alive_key(beat.owner("x"))) == "1")  # renewed although already dropped
    for _ in range(500):  # hundreds of quick jobs within ttl / 3 of that renewal
        beat.drop(beat.hold(store, ttl=30))
    time.sleep(0.2)
    assert store.sets == 1  # no renewal (and no thread wake-up) per message


def test_a_renewal_comes_every_third_of_the_ttl_while_held() -> None:
    beat, store = Heartbeat(), open_store("memory://")
    token = beat.hold(store, ttl=0.3)
    key = alive_key(beat.owner("x"))
    time.sleep(0.7)  # past two full ttls: alive only if renewed meanwhile
    assert store.get(key) == "1"
    beat.drop(token)
    assert wait_for(lambda: store.get(key) is None)  # nothing held: it lapses
