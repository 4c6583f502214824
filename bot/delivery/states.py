"""The delivery states and every move between them: the one place that writes delivery records.

Who may move a message's record, from which state, to which: the table :data:`MOVES`, one row per move.
Each move is one named method of :class:`States`, and each is one atomic store operation (a compare-and-set
from the record as read, or the add that creates it), together with the index changes it implies: the
``open`` index (records a process must look at without a request, due at a time) and each user's pickup
index. The engine, the job runner, the answerer, the late sender, pickup and the sweeper decide *which* move
to ask for; this module decides whether it is legal (:class:`IllegalMove` otherwise: a bug) and performs it.
Exactly-once is the property that, for each message, one move into ``delivered`` (or ``pending``) wins.

``tests/test_architecture.py`` fails when another module writes a delivery record.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from bot.config import ReplyConfig
from bot.core.answer import Answer
from bot.delivery.record import FINAL, OPEN, Record, State, pickup_index
from bot.ops.clock import Clock
from bot.store import Store
from bot.store.base import IndexOp

RUNNING, DONE, SENDING, DELIVERED, PENDING = State.RUNNING, State.DONE, State.SENDING, State.DELIVERED, State.PENDING
EXPIRED, UNDELIVERABLE = State.EXPIRED, State.UNDELIVERABLE


class Actor(enum.StrEnum):
    """Who asks for a move."""

    TRY = "try"  # a request of this message: its first try or one of WeChat's retries
    JOB = "job"  # the run that owns the record (a thread of a web process, or an RQ worker)
    SWEEPER = "sweeper"  # any process's sweeper, for records no request will come for
    PICKUP = "pickup"  # a request of another message of the same user, showing answers kept for them
    SENDER = "sender"  # the sender of a late answer by customer service (its owner while it sends)


T, J, S, P, SD = Actor.TRY, Actor.JOB, Actor.SWEEPER, Actor.PICKUP, Actor.SENDER


@dataclass(frozen=True)
class Move:
    name: str
    sources: frozenset[State | None]  # None: the record does not exist yet
    targets: frozenset[State | None]  # None: the record is gone
    actors: frozenset[Actor]
    why: str

    @property
    def keeps_state(self) -> bool:
        """Moves from several states to the same set change something else (the owner, a due time)."""
        return self.name in _KEEP_STATE

    def edges(self) -> list[tuple[State | None, State | None]]:
        return [(s, t) for s in self.sources for t in self.targets if not self.keeps_state or s == t]


_KEEP_STATE = frozenset({"take_over", "look_later"})


def _move(name: str, sources: set[State | None], targets: set[State | None], actors: set[Actor], why: str) -> Move:
    return Move(name, frozenset(sources), frozenset(targets), frozenset(actors), why)


MOVES: dict[str, Move] = {m.name: m for m in (
    _move("claim", {None}, {RUNNING}, {T},
          "the first try of a message creates its record; the job starts (in the try itself for messages "
          "without voice); a fast handler's try writes it when the handler is still running at fast_path_s"),
    _move("answer_at_once", {None}, {DELIVERED}, {T},
          "a fast handler answered within fast_path_s, before anything was written: the record is created "
          "delivered, with its reply (one write)"),
    _move("unclaim", {RUNNING}, {None}, {T},
          "the job could not be started (the queue is unreachable): the try answers in its request, undeduplicated"),
    _move("adopt", {RUNNING}, {RUNNING}, {J}, "an RQ worker takes a queued job over from the process that queued it"),
    _move("take_over", {RUNNING, SENDING}, {RUNNING, SENDING}, {T, S},
          "the owner's process stopped renewing its heartbeat: a new owner runs the job again, or sends what is "
          "left"),
    _move("progress", {RUNNING}, {RUNNING}, {J}, "a streamed answer's complete sentences so far"),
    _move("show_partial", {RUNNING}, {RUNNING}, {T},
          "the try that must answer shows the sentences written so far; the job sends the rest late"),
    _move("last_try_passed", {RUNNING}, {RUNNING}, {T}, "no try will carry the answer: the job sends it late itself"),
    _move("finish", {RUNNING}, {DONE}, {J}, "the answer is ready for a try of the message to carry"),
    _move("answer", {RUNNING, DONE}, {DELIVERED}, {T},
          "a try carries the answer passively (from running: the try ran the job itself, in its budget)"),
    _move("finish_shown", {RUNNING}, {DELIVERED}, {J}, "a streamed answer that tries showed whole"),
    _move("send_late", {RUNNING, DONE}, {SENDING}, {J, T, S},
          "the answer goes by customer service; its sender owns the record while it sends"),
    _move("part_sent", {SENDING}, {SENDING, DELIVERED}, {SD},
          "customer service took one more part (the last: delivered); a new sender would resume after it"),
    _move("keep", {RUNNING, DONE}, {PENDING}, {J, T, S},
          "no try or customer service can carry it: kept for the user's next message"),
    _move("keep_refused", {SENDING}, {PENDING}, {SD}, "customer service refused what was left: kept for pickup"),
    _move("unreachable", {SENDING}, {UNDELIVERABLE}, {SD},
          "no way reaches the user (a WeCom app's user outside its visible range): they could not send the next "
          "message a pickup waits for either"),
    _move("pick_up", {PENDING}, {PENDING, DELIVERED}, {P},
          "a try of the user's next message shows the next kept part (the last one: delivered)"),
    _move("put_back", {PENDING, DELIVERED}, {PENDING}, {P}, "that try's reply did not go out: kept again"),
    _move("expire", {PENDING}, {EXPIRED}, {S}, "kept for pickup longer than pickup_ttl_s"),
    _move("undeliverable", {RUNNING, DONE}, {UNDELIVERABLE}, {J, T, S}, "an answer with no user to go to"),
    _move("look_later", {RUNNING, DONE, SENDING, PENDING}, {RUNNING, DONE, SENDING, PENDING}, {S},
          "not due yet (the owner is alive, the pickup still waits): look again at a later time"),
)}


class IllegalMove(RuntimeError):
    """A move the table does not allow: a bug in the caller, never a race (races lose the compare-and-set)."""


class States:
    """One bot's delivery records in its store: read them, and move each with one atomic operation."""

    def __init__(self, store: Store, config: ReplyConfig, clock: Clock, hold_margin_s: float) -> None:
        self.store, self.config, self.clock, self.hold_margin_s = store, config, clock, hold_margin_s

    # -- reading, and the rules of time ----------------------------------------------------------------
    @staticmethod
    def rkey(key: str) -> str:
        return f"dl:{key}"

    def read(self, key: str) -> tuple[str | None, Record | None]:
        raw = self.store.get(self.rkey(key))
        return raw, Record.load(raw)

    def last_chance(self, created: float) -> float:
        """Wall clock after which no try of the message can answer it passively any more."""
        cfg = self.config
        tries = 1 if cfg.mode == "customer_service" else cfg.tries
        return created + tries * cfg.wechat_timeout_s + self.hold_margin_s

    def overdue(self, record: Record) -> bool:
        return record.late or self.clock.time() > self.last_chance(record.created)

    def expires(self, record: Record) -> float:
        """When a record kept for pickup stops waiting."""
        return (record.kept_at or record.created) + self.config.pickup_ttl_s

    def ttl(self, record: Record) -> float:
        """A record kept for pickup lives as long as the pickup may wait; others for ``state_ttl_s``."""
        if record.state is PENDING:
            return self.config.pickup_ttl_s + self.config.state_ttl_s
        return self.config.state_ttl_s

    def kept_for(self, openid: str, limit: int) -> list[tuple[str, float]]:
        """The user's kept answers, oldest first (``(key, when it came)``)."""
        return self.store.index_range(pickup_index(openid), limit=limit)

    def forget_kept(self, openid: str, key: str, score: float) -> None:
        """Drop an index entry whose record is no longer kept (picked up, expired or gone)."""
        self.store.index_discard(pickup_index(openid), key, score)

    def due(self, limit: int = 100) -> list[tuple[str, float]]:
        """Open records whose time has come (``(key, due)``)."""
        return self.store.index_range(OPEN, until=self.clock.time(), limit=limit)

    def any_open(self) -> bool:
        return bool(self.store.index_range(OPEN, limit=1))

    def forget_open(self, key: str, score: float) -> None:
        self.store.index_discard(OPEN, key, score)

    def count_retry(self, key: str) -> int:
        """One more try of the message arrived: which one it is (2, 3…)."""
        return 1 + self.store.incr(f"{self.rkey(key)}:tries", ttl=self.config.state_ttl_s)

    # -- the moves ---------------------------------------------------------------------------------------
    def claim(self, key: str, record: Record) -> tuple[str | None, bool]:
        """Create the record (the first try of a message): its raw form, or None when it already exists; and
        whether the user may have answers kept for pickup (False: none, no need to look)."""
        self._check("claim", Actor.TRY, None, record)
        raw = record.dump()
        index = [_open_at(key, self.last_chance(record.created))]
        if not record.openid:
            added = self.store.add(self.rkey(key), raw, ttl=self.config.state_ttl_s, index=index)
            return (raw if added else None), False
        added, kept = self.store.add_peeking(self.rkey(key), raw, ttl=self.config.state_ttl_s, index=index,
                                             peek=pickup_index(record.openid))
        return (raw if added else None), kept

    def peek(self, key: str, openid: str | None) -> tuple[str | None, bool]:
        """The record as stored (raw) and whether the user may have answers kept for pickup, in one read round:
        what a fast handler's try looks at before it runs the handler with nothing written."""
        if not openid:
            return self.store.get(self.rkey(key)), False
        return self.store.get_peeking(self.rkey(key), pickup_index(openid))

    def answer_at_once(self, key: str, record: Record, *, unless_kept: str | None = None) -> bool:
        """Create the record already delivered (``record``: its reply, for a copy or a retry to carry again);
        False when a copy of the message created it first — or, with ``unless_kept`` (an openid), when that user
        has answers kept for pickup (nothing was read before: the same write looks)."""
        self._check("answer_at_once", Actor.TRY, None, record)
        if unless_kept:
            return self.store.add_if_empty(self.rkey(key), record.dump(), ttl=self.ttl(record),
                                           empty=pickup_index(unless_kept))
        return self.store.add(self.rkey(key), record.dump(), ttl=self.ttl(record))

    def unclaim(self, key: str, raw: str, record: Record) -> bool:
        self._check("unclaim", Actor.TRY, record, None)
        return self.store.compare_and_delete(self.rkey(key), raw)  # the open index entry is dropped when found

    def adopt(self, key: str, raw: str, record: Record, owner: str) -> bool:
        return self._swap("adopt", Actor.JOB, key, raw, record, record.but(owner=owner, since=self.clock.time()))

    def owned_long_enough(self, record: Record) -> bool:
        """Whether the record's owner has had a lease's time to write its first heartbeat: a younger owner is
        never declared dead (its process may not have beaten yet)."""
        return self.clock.time() >= (record.since or record.created) + self.config.lease_s

    def take_over(self, actor: Actor, key: str, raw: str, record: Record, owner: str) -> Record | None:
        """The record with its new owner (a job to run again, or parts to send), or None when it moved."""
        new = record.but(owner=owner, since=self.clock.time())
        return new if self._swap("take_over", actor, key, raw, record, new) else None

    def progress(self, key: str, raw: str, record: Record, text: str) -> bool:
        return self._swap("progress", Actor.JOB, key, raw, record, record.but(partial=text))

    def show_partial(self, key: str, raw: str, record: Record, seen: str) -> bool:
        return self._swap("show_partial", Actor.TRY, key, raw, record, record.but(late=True, seen=seen))

    def last_try_passed(self, key: str, raw: str, record: Record) -> bool:
        return self._swap("last_try_passed", Actor.TRY, key, raw, record, record.but(late=True))

    def finish(self, key: str, raw: str, record: Record, answer: Answer) -> bool:
        """``record`` (running) with the job's answer and trace set: ready for a try."""
        done = record.but(state=DONE, answer=answer, push=None, owner=None, since=None, partial=None)
        return self._swap("finish", Actor.JOB, key, raw, record, done)

    def answer(self, key: str, raw: str, record: Record, shown: Answer, via: str, total: int | None = None) -> bool:
        """A try carries ``shown`` passively (``via`` passive or retry); a retry of it finds it here."""
        new = record.but(state=DELIVERED, via=via, answer=shown, trace=None, push=None, owner=None, since=None,
                         partial=None, total=total)
        return self._swap("answer", Actor.TRY, key, raw, record, new, _closed(key))

    def finish_shown(self, key: str, raw: str, record: Record) -> bool:
        new = record.but(state=DELIVERED, via="passive", answer=None, push=None, owner=None, since=None, partial=None)
        return self._swap("finish_shown", Actor.JOB, key, raw, record, new, _closed(key))

    def send_late(self, actor: Actor, key: str, raw: str, record: Record, answer: Answer, parts: Answer,
                  sender: str, first: int = 0) -> Record | None:
        """``sender`` sends ``parts`` (from ``first``: the ones before went passively) by customer service; the
        record as written, or None when it moved meanwhile. It is looked at again a lease later: a sender
        that died is replaced, and what it had not sent goes out."""
        new = record.but(state=SENDING, answer=answer, kept=parts, sent=first, total=len(parts.parts), owner=sender,
                         since=self.clock.time(), push=None, partial=None, late=False)
        if not self._swap("send_late", actor, key, raw, record, new, _open_at(key, self.clock.time() + self.config.lease_s)):
            return None
        return new

    def part_sent(self, key: str, raw: str, record: Record) -> Record | None:
        """One more part went; the record as written (delivered after the last), or None when it moved."""
        sent = (record.sent or 0) + 1
        if sent < len(record.kept.parts if record.kept else ()):
            new = record.but(sent=sent)
            return new if self._swap("part_sent", Actor.SENDER, key, raw, record, new) else None
        new = record.but(state=DELIVERED, via="customer_service", sent=None, kept=None, owner=None, since=None)
        return new if self._swap("part_sent", Actor.SENDER, key, raw, record, new, _closed(key)) else None

    def keep(self, actor: Actor, key: str, raw: str, record: Record, parts: Answer) -> bool:
        """Keep ``parts`` (in order) for the user's next message; ``record.openid`` must be set."""
        new = self._kept(record, parts)
        return self._swap("keep", actor, key, raw, record, new, *self._keep_index(key, new))

    def keep_refused(self, key: str, raw: str, record: Record, parts: Answer) -> bool:
        new = self._kept(record.but(sent=None), parts)
        return self._swap("keep_refused", Actor.SENDER, key, raw, record, new, *self._keep_index(key, new))

    def pick_up(self, key: str, raw: str, record: Record) -> Record | None:
        """Take the first kept part off the record; the record as written, or None when it moved meanwhile."""
        kept = record.kept.parts if record.kept else ()
        if len(kept) > 1:
            new = record.but(kept=Answer(kept[1:]))
            changes: tuple[IndexOp, ...] = ()
        else:
            new = record.but(state=DELIVERED, via="pickup", kept=None)
            changes = (_closed(key), _unlisted(record.openid or "", key))
        return new if self._swap("pick_up", Actor.PICKUP, key, raw, record, new, *changes) else None

    def put_back(self, key: str, now_raw: str, now: Record, before: Record) -> bool:
        return self._swap("put_back", Actor.PICKUP, key, now_raw, now, before, *self._keep_index(key, before))

    def expire(self, key: str, raw: str, record: Record, reason: str) -> bool:
        new = record.but(state=EXPIRED, kept=None, reason=reason)
        return self._swap("expire", Actor.SWEEPER, key, raw, record, new, _closed(key),
                          _unlisted(record.openid or "", key))

    def undeliverable(self, actor: Actor, key: str, raw: str, record: Record, reason: str) -> bool:
        new = record.but(state=UNDELIVERABLE, reason=reason, push=None, owner=None, since=None, partial=None)
        return self._swap("undeliverable", actor, key, raw, record, new, _closed(key))

    def unreachable(self, key: str, raw: str, record: Record, reason: str) -> bool:
        new = record.but(state=UNDELIVERABLE, reason=reason, kept=None, sent=None, owner=None, since=None)
        return self._swap("unreachable", Actor.SENDER, key, raw, record, new, _closed(key))

    def look_later(self, key: str, raw: str, record: Record, when: float) -> bool:
        return self._swap("look_later", Actor.SWEEPER, key, raw, record, record, _open_at(key, when))

    # -- how every move is made ---------------------------------------------------------------------------
    def _swap(self, name: str, actor: Actor, key: str, raw: str, old: Record, new: Record, *index: IndexOp) -> bool:
        self._check(name, actor, old, new)
        return self.store.compare_and_set(self.rkey(key), raw, new.dump(), ttl=self.ttl(new), index=index)

    @staticmethod
    def _check(name: str, actor: Actor, old: Record | None, new: Record | None) -> None:
        move = MOVES[name]
        source, target = (old.state if old is not None else None), (new.state if new is not None else None)
        if actor not in move.actors or (source, target) not in move.edges():
            raise IllegalMove(f"{name} by {actor.value}: {source} -> {target} is not in the table")

    def _kept(self, record: Record, parts: Answer) -> Record:
        # the whole answer stays with its kept parts: its permanent voice material is released once all went
        return record.but(state=PENDING, kept=parts, kept_at=self.clock.time(), push=None, owner=None, since=None,
                          late=False, partial=None, total=record.total or len(parts.parts))

    def _keep_index(self, key: str, kept: Record) -> tuple[IndexOp, IndexOp]:
        return _open_at(key, self.expires(kept)), (pickup_index(kept.openid or ""), key, kept.created)


def _open_at(key: str, when: float) -> IndexOp:
    """Look at ``key`` again at ``when`` (wall clock), without a request."""
    return (OPEN, key, when)


def _closed(key: str) -> IndexOp:
    return (OPEN, key, None)


def _unlisted(openid: str, key: str) -> IndexOp:
    return (pickup_index(openid), key, None)


def is_final(record: Record | None) -> bool:
    return record is not None and record.state in FINAL
