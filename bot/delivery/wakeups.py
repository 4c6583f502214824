"""Waking the tries that wait for a job of this process, instead of polling the store for it.

A try waits on its message's event; the job (or whatever moves the record in this process) sets it. Keys in
``local`` have their job running here: their tries need not poll, the job will wake them.
"""
from __future__ import annotations

import threading


class Wakeups:
    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}
        self.local: set[str] = set()  # keys whose job runs in this process
        self._lock = threading.Lock()

    def event(self, key: str) -> threading.Event:
        """The event to wait on for ``key`` (take it before reading the record: a wake in between is kept)."""
        with self._lock:
            return self._events.setdefault(key, threading.Event())

    def running_here(self, key: str) -> None:
        with self._lock:
            self.local.add(key)

    def wake(self, key: str) -> None:
        """The record of ``key`` moved (its job here ended): wake every try waiting for it."""
        with self._lock:
            event = self._events.pop(key, None)
            self.local.discard(key)
        if event is not None:
            event.set()

    def done_waiting(self, key: str, event: threading.Event | None) -> None:
        """A try stopped waiting: forget its event unless the job here will still wake it."""
        with self._lock:
            if key not in self.local and event is not None and self._events.get(key) is event:
                del self._events[key]
