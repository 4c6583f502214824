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


def test_a_hold_taken_after_one_was_dropped_keeps_the_process_alive() -> None:
    """The take-over race: a try holds and drops at once (the thread beats, sees nothing held, sleeps); a hold
    taken shortly after, within ttl / 3 of that beat, must still be renewed for as long as it is held."""
    beat, store = Heartbeat(), CountingStore()
    key = alive_key(beat.owner("x"))
    beat.drop(beat.hold(store, ttl=0.6))
    assert wait_for(lambda: store.get(key) == "1")
    time.sleep(0.1)  # the thread has seen no holds and gone to sleep
    token = beat.hold(store, ttl=0.6)  # < ttl / 3 after the beat: not overdue yet
    deadline = time.monotonic() + 1.5  # 2.5 ttls
    while time.monotonic() < deadline:
        assert store.get(key) == "1", "the liveness key lapsed while a job was held"
        time.sleep(0.02)
    beat.drop(token)
    assert wait_for(lambda: store.get(key) is None)
    assert store.sets <= 12  # renewed about every ttl / 3, not in a loop


def test_an_idle_heartbeat_thread_sleeps_without_a_timeout_and_wakes_for_a_hold() -> None:
    beat, store = Heartbeat(), CountingStore()
    beat.drop(beat.hold(store, ttl=0.3))
    assert wait_for(lambda: store.sets == 1)
    time.sleep(0.3)
    assert store.sets == 1  # nothing held: no renewals
    token = beat.hold(store, ttl=0.3)
    assert wait_for(lambda: store.sets >= 3, timeout=1.0)  # renewed again every 0.1 s
    beat.drop(token)
