"""The fast path: a text or event message whose handler answers within ``[reply] fast_path_s`` costs one write.

WeChat sends a message again only after 5 s without an answer, and deduplicates by MsgId itself: two copies
of one message are in flight together only when the first is still being handled seconds later. So a handler
that answers within a short ``T`` may run before anything is written, and its answer is recorded by one
add-if-absent, the record created already delivered with its reply (move ``answer_at_once``). The answer is
still decided by one atomic operation, so it is still given exactly once: when the add loses, a copy got there
first and this try answers from the winner's record as any later copy would.

Whether the try reads first. A retry comes 5 s or more after the message was made (its ``CreateTime``, which
every try of a message carries); a first try comes within a second or so. A try whose ``CreateTime`` is that
fresh (younger than half of WeChat's timeout, on a clock not found behind WeChat's) is a first try: it reads
nothing, and its add is made conditional on the user having no answers kept for pickup as well (one
statement); refused, one read says why — a copy's record (answer from it) or kept answers (the usual path,
which shows them first). Any other try reads the record and the pickup index first (one read round), and runs
the handler only when there is no record and nothing kept. A retry of a message still running therefore never
runs its handler again, as long as the server clock is within about 2 s of WeChat's: a message made more than
``[reply] clock_skew_s`` in this server's future says this clock is behind, and for the next 10 minutes every
try reads first (one WARNING line says so).

A handler still running at ``T`` is claimed by a watchdog (the runtime's timers, on the delivery clock): the
record is created running, owned by this process, exactly as a claim-first message's (move ``claim``), and
from that moment the message takes the usual path — hold, retries, customer service, pickup, sweeper,
take-over. When that claim loses to a copy, the copy owns the answer: this handler's result is dropped.
An answer that needs more than one plain reply (too long: split; a stream) is claimed when the handler
returns, then goes the usual way too.

What a handler gives up (README "Fast handlers"): it may run twice when a copy of a fresh message comes to
another process, or to the same one within ``T`` (each process remembers the fresh messages it began: a copy it
gets later reads first); WeChat does not send such copies, a request replayed within the replay window can. Or
when its process dies within ``T`` (nothing was written: WeChat's retry runs it again, as a take-over would).
"""
from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

from bot.config import ReplyConfig
from bot.core.answer import Text
from bot.core.envelope import Inbound
from bot.core.pipeline import Answered, Processed
from bot.core.text import utf8_len
from bot.delivery.answer import Say
from bot.delivery.executors import Timers
from bot.delivery.jobs import Claim, Jobs
from bot.delivery.outcome import Outcomes
from bot.delivery.record import Record, State
from bot.delivery.states import States
from bot.ops.clock import Clock
from bot.store import StoreError

log = logging.getLogger("bot.delivery")

BEHIND_S = 600.0  # after a message made in this server's future, every try reads first for this long

WriteClaim = Callable[[str, Inbound, float, float], "Claim | None"]  # key, inbound, created, waited


@dataclass
class FastRun:
    """One fast handler's run: the race between its request (the handler returned) and its watchdog (``T``
    passed), settled under ``lock``, each side at most once."""

    key: str
    inbound: Inbound
    created: float  # when WeChat sent it (wall clock)
    waited: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    settled: bool = False  # the handler returned: the watchdog does nothing any more
    claim: Claim | None = None  # the watchdog wrote the claim: the usual path goes on from it
    lost: bool = False  # the watchdog's claim found a copy's record: that copy owns the answer
    unread: str | None = None  # the user whose record and kept answers were not read first (a fresh first try)
    cancel: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class RunFast:
    """Run the fast handler of ``run`` in this request (nothing written) and send back what it gave."""

    run: FastRun


@dataclass(frozen=True)
class Joined:
    """The fast path ended without answering: go on as a claimed try (``claim``, with what the handler gave in
    ``processed``), or as a later copy (``claim`` None, the try number ``attempt``)."""

    attempt: int
    claim: Claim | None = None
    processed: Processed | None = None


class FastPath:
    def __init__(self, states: States, jobs: Jobs, outcomes: Outcomes, timers: Timers, clock: Clock,
                 write_claim: WriteClaim) -> None:
        self.states, self.jobs, self.outcomes, self.timers, self.clock = states, jobs, outcomes, timers, clock
        self.config: ReplyConfig = states.config
        self.write_claim = write_claim
        # A retry's CreateTime is at least wechat_timeout_s old on WeChat's clock. Ours may be behind it by up to
        # clock_skew_s unnoticed, and by a second more before every first try shows it: what is left, at most
        # half the timeout (2.5 s by default; nothing when WeChat's timeout is scaled down in tests).
        self.fresh_s = min(self.config.wechat_timeout_s / 2,
                           self.config.wechat_timeout_s - self.config.clock_skew_s - 1.0)
        self.behind_until = -math.inf  # clock.time() until which every try reads first (this clock is behind)
        self.behind_lock = threading.Lock()
        # keys this process began while fresh, until they no longer are: a copy of one here reads first
        self.begun: OrderedDict[str, float] = OrderedDict()

    def takes(self, inbound: Inbound) -> bool:
        """Text and events (no voice: its recognition is slow by nature), when the setting is on — and not with
        ``mode = "customer_service"``, whose try must answer success at its budget: a handler run in the request
        could hold it past that."""
        return (self.config.fast_path_s > 0 and inbound.message.type != "voice"
                and self.config.mode != "customer_service")

    def play(self, key: str, inbound: Inbound, created: float, waited: float, budget: float
             ) -> Generator[RunFast, Processed | None, Say | Joined | None]:
        """The fast part of a first try (``budget``: its end, on ``clock.monotonic()``): its answer, or how the
        try goes on (None: the record exists or answers are kept for the user; claim first)."""
        run = self.begin(key, inbound, created, waited, budget)
        if run is None:
            return None
        try:
            processed = yield RunFast(run)
        except BaseException:  # the handler raised, or the request died: stop the watchdog, end its claim
            self.abandon(run)
            raise
        return self.finish(run, processed, budget)

    def begin(self, key: str, inbound: Inbound, created: float, waited: float, budget: float) -> FastRun | None:
        """Look (one read round): the run to start, its watchdog armed, or None when the record exists or the
        user has answers kept (the claim-first path shows them first)."""
        openid = None if inbound.key.startswith("e:") else inbound.message.source  # events pick nothing up
        if self.fresh(inbound) and self.first_here(key):
            run = FastRun(key, inbound, created, waited, unread=openid)
        else:
            raw, kept = self.states.peek(key, openid)
            if raw is not None or kept:
                return None
            run = FastRun(key, inbound, created, waited)
        t = min(self.config.fast_path_s, max(0.0, budget - self.clock.monotonic()) / 2)
        run.cancel = self.timers.after(t, lambda: self.watchdog(run))
        return run

    def fresh(self, inbound: Inbound) -> bool:
        """Whether the message was made so recently (``CreateTime``, whole seconds on WeChat's clock) that this
        can only be its first try: younger than half of WeChat's timeout, on a clock not found behind WeChat's."""
        try:
            made = int(inbound.data.get("CreateTime") or "")
        except ValueError:
            return False
        now = self.clock.time()
        age = now - made
        if age < -self.config.clock_skew_s:  # made in this server's future: this clock is behind WeChat's
            with self.behind_lock:
                warn, self.behind_until = now >= self.behind_until, now + BEHIND_S
            if warn:
                log.warning("delivery msg_id=%s: the message was made %.0f s ahead of this server's clock: the clock "
                            "is behind WeChat's (sync it: NTP); fast handlers read their record first for the next "
                            "%.0f minutes", inbound.msg_id, -age, BEHIND_S / 60)
            return False
        return age < self.fresh_s and now >= self.behind_until

    def first_here(self, key: str) -> bool:
        """Whether this process has not begun ``key`` while it was fresh: a copy that comes to the same process
        (a client posting a message twice, a single worker) reads first, and joins or answers from the record."""
        now = self.clock.monotonic()
        with self.behind_lock:
            begun = self.begun
            while begun and next(iter(begun.values())) <= now:  # in order of expiry: all the same length
                begun.popitem(last=False)
            if key in begun:
                return False
            begun[key] = now + self.fresh_s + 1.0  # after that the message is not fresh any more
            return True

    def watchdog(self, run: FastRun) -> None:
        """``T`` passed and the handler still runs: write the claim (the usual path from now on)."""
        with run.lock:
            if run.settled:
                return
            try:
                run.claim = self.write_claim(run.key, run.inbound, run.created, run.waited)
            except StoreError as exc:  # the request writes when the handler returns
                log.warning("delivery msg_id=%s: the fast handler's claim failed: %s", run.inbound.msg_id, exc)
                return
            run.lost = run.claim is None
            if run.claim is not None:
                self.jobs.wakeups.running_here(run.key)  # its job runs here: a copy here is woken, not polling
            else:
                log.info("delivery msg_id=%s: a copy claimed the message while its fast handler ran: that copy "
                         "answers", run.inbound.msg_id)
            run.settled = True

    def finish(self, run: FastRun, processed: Processed | None, budget: float) -> Say | Joined:
        """The handler returned: answer at once with one write, or hand over to the usual path."""
        with run.lock:
            run.cancel()
            watched = run.settled
            run.settled = True
        if watched:
            if run.claim is not None:
                return Joined(1, run.claim, processed and self.jobs.read_later(run.claim, processed))
            self.jobs.ended(run.key, None)  # lost: the copy that claimed it owns the answer
            return Joined(self.states.count_retry(run.key))
        answer = processed.answer if isinstance(processed, Answered) else None
        first = answer.parts[0] if answer is not None and len(answer.parts) == 1 else None
        too_long = isinstance(first, Text) and utf8_len(first.content) > self.config.max_text_bytes
        single = answer is not None and (not answer.parts or first is not None and not too_long)
        if not single or self.clock.monotonic() >= budget:
            # a stream, an answer in several parts, or one too late for this try: the usual path, claimed now
            return self.claim_now(run, processed)
        assert answer is not None and isinstance(processed, Answered)
        record = Record(State.DELIVERED, run.created, via="passive", answer=answer, openid=run.inbound.message.source)
        try:
            won = self.states.answer_at_once(run.key, record, unless_kept=run.unread)
            if not won and run.unread is not None and self.states.peek(run.key, run.unread)[0] is None:
                # refused for the user's kept answers (no copy's record): the usual path shows them first
                return self.claim_now(run, processed)
        except BaseException:
            self.jobs.ended(run.key, None)
            raise
        self.jobs.ended(run.key, None)
        if not won:  # a copy's record is there: answer from it, as any later copy would
            return Joined(self.states.count_retry(run.key))
        self.outcomes.done(processed.trace, "passive", tries=1, answer=answer)
        return Say(first)

    def claim_now(self, run: FastRun, processed: Processed | None) -> Joined:
        """The handler returned and its answer takes the usual path: claim the message now (a copy's record:
        that copy owns the answer)."""
        claim = self.write_claim(run.key, run.inbound, run.created, run.waited)
        if claim is None:
            self.jobs.ended(run.key, None)
            return Joined(self.states.count_retry(run.key))
        self.jobs.wakeups.running_here(run.key)
        return Joined(1, claim, processed and self.jobs.read_later(claim, processed))

    def abandon(self, run: FastRun) -> None:
        """The handler raised: stop the watchdog, and end the claim it may have written (its tries wake)."""
        with run.lock:
            run.cancel()
            run.settled = True
        self.jobs.ended(run.key, run.claim.token if run.claim is not None else None)
