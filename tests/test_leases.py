"""The heartbeat: a process's liveness, renewed from one thread, without waking it per message; liveness read
on the delivery clock, so a fake clock lets a dead process's lease lapse at once."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bot.delivery.leases import Heartbeat, alive_key
from bot.ops.clock import SYSTEM
from bot.store import open_store
from bot.store.memory import MemoryStore
from bot.testing.clock import FakeClock


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


@contextmanager
def beating(beat: Heartbeat) -> Iterator[Heartbeat]:
    """The renewing thread, as the delivery runtime runs it."""
    stop = threading.Event()
    thread = threading.Thread(target=beat.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield beat
    finally:
        stop.set()
        beat.stop()
        thread.join(2)


def test_a_hold_dropped_at_once_still_gets_its_renewal_and_later_holds_do_not_rewake() -> None:
    store = CountingStore()
    with beating(Heartbeat(store, 30, SYSTEM)) as beat:
        beat.drop(beat.hold())  # a job that took a millisecond
        assert wait_for(lambda: store.get(beat.key) is not None)  # renewed although already dropped
        for _ in range(500):  # hundreds of quick jobs within ttl / 3 of that renewal
            beat.drop(beat.hold())
        time.sleep(0.2)
        assert store.sets == 1  # no renewal (and no thread wake-up) per message


def test_a_renewal_comes_every_third_of_the_ttl_while_held() -> None:
    store = open_store("memory://")
    observer = Heartbeat(store, 0.3, SYSTEM)  # another process, looking
    with beating(Heartbeat(store, 0.3, SYSTEM)) as beat:
        owner = beat.owner("thread")
        token = beat.hold()
        time.sleep(0.7)  # past two full ttls: alive only if renewed meanwhile
        assert observer.is_alive(owner)
        beat.drop(token)
        assert wait_for(lambda: not observer.is_alive(owner))  # nothing held: it lapses


def test_a_hold_taken_after_one_was_dropped_keeps_the_process_alive() -> None:
    """The take-over race: a try holds and drops at once (the thread beats, sees nothing held, sleeps); a hold
    taken shortly after, within ttl / 3 of that beat, must still be renewed for as long as it is held."""
    store = CountingStore()
    observer = Heartbeat(store, 1.5, SYSTEM)
    with beating(Heartbeat(store, 1.5, SYSTEM)) as beat:
        owner = beat.owner("thread")
        beat.drop(beat.hold())
        assert wait_for(lambda: store.get(beat.key) is not None)
        time.sleep(0.1)  # the thread has seen no holds and gone to sleep
        token = beat.hold()  # < ttl / 3 after the beat: not overdue yet
        deadline = time.monotonic() + 3.75  # 2.5 ttls
        while time.monotonic() < deadline:
            assert observer.is_alive(owner), "the process looked dead while a job was held"
            time.sleep(0.05)
        beat.drop(token)
        assert wait_for(lambda: not observer.is_alive(owner), 3.0)
        assert store.sets <= 12  # renewed about every ttl / 3, not in a loop


def test_an_idle_heartbeat_thread_sleeps_without_a_timeout_and_wakes_for_a_hold() -> None:
    store = CountingStore()
    with beating(Heartbeat(store, 0.3, SYSTEM)) as beat:
        beat.drop(beat.hold())
        assert wait_for(lambda: store.sets == 1)
        time.sleep(0.3)
        assert store.sets == 1  # nothing held: no renewals
        token = beat.hold()
        assert wait_for(lambda: store.sets >= 3, timeout=1.0)  # renewed again every 0.1 s
        beat.drop(token)


def test_liveness_is_read_on_the_delivery_clock() -> None:
    """A process that stops renewing is dead once its last renewal's ttl has passed on the clock — on a fake
    clock without waiting, on any store (the value says until when it vouches, the store's expiry is a
    backstop); this process is always alive to itself."""
    clock, store = FakeClock(), open_store("memory://")
    alive, other = Heartbeat(store, 6.0, clock), Heartbeat(store, 6.0, clock)
    owner = alive.owner("thread")
    token = alive.hold()
    assert alive.beat_if_due() and not alive.beat_if_due()  # due at once, then not for ttl / 3
    assert other.is_alive(owner) and not alive.is_alive(other.owner("x"))  # never beat: not alive
    clock.advance(2.0)
    assert alive.beat_if_due()  # renewed every ttl / 3 while held
    alive.drop(token)
    clock.advance(5.9)
    assert other.is_alive(owner)  # vouched for until its last renewal + ttl
    clock.advance(0.2)
    assert not other.is_alive(owner)
    assert alive_key(owner) == alive.key and owner.startswith("thread@")
