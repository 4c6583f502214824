"""A world on one fake clock for tests/test_delivery_schedules.py: WeChat and its tries, users, bot processes
sharing one store, their jobs, pools, heartbeats and sweepers — every actor stepped by the test, so a schedule
(who acts when) is a value Hypothesis can generate and shrink.

What is real: the whole of ``bot.delivery`` (states, tries, jobs, answers, late sends, pickup, sweeper,
heartbeat) on a real store (memory, SQLite or Redis). What is played: WeChat (the 5 s cut-off, three tries,
the customer-service API's answers), the handlers (a job finishes, streams a sentence, or never finishes when
the model says so) and the threads (a pool runs its work when the model says so; the heartbeat's thread
renews when its own ``plan`` says it would wake up).

A process "dies" between steps (every step of every actor is atomic here); the windows inside one step — the
microseconds between a store move and the write of an HTTP reply or a call to WeChat — are not played: no
store can make them atomic with the network (README "Delivery").
"""
from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from conftest import BASE_CONFIG, merge

from bot.config import config_from_dict
from bot.core.answer import Answer, Part, Text, Voice
from bot.core.pipeline import Answered, Pipeline, Streaming
from bot.core.router import Router
from bot.core.services import Services
from bot.delivery.answer import Say
from bot.delivery.engine import Delivery
from bot.delivery.executors import Executor, Job
from bot.delivery.fast import RunFast
from bot.delivery.jobs import Claim
from bot.delivery.leases import Heartbeat
from bot.delivery.record import FINAL, OPEN, Record, State, inbound_from_xml, pickup_index
from bot.delivery.tries import RunInline, Wait
from bot.ops.trace import Trace
from bot.store import Store
from bot.testing import messages
from bot.testing.clock import FakeClock
from bot.wechat.errors import (
    APIUnauthorizedError,
    CustomerServiceQuotaError,
    CustomerServiceWindowError,
    TransportError,
    WeChatAPIError,
)

BUDGET, TIMEOUT, TRIES, LEASE, LIMIT, PICKUP_TTL, SWEEP_EVERY = 4.5, 5.0, 3, 6.0, 80, 60.0, 1.0
FAST = 0.5  # [reply] fast_path_s: a text handler still running then is claimed by its watchdog
GRACE = 0.25  # a try that waited until its budget wakes "at" it within this (bot/delivery/tries.py grace_s)
POOL_DELAY = 1.0  # queued work a pool has not run yet runs at the latest this long after it was queued
TOKEN = re.compile(r"m(\d+)s(\d+)r(\d+)")  # message, sentence (or voice part), and which run of the job wrote it
CS_MODES = ("ok", "48001", "45015", "45047", "flaky")


def reply_config(mode: str) -> dict[str, Any]:
    return {"mode": mode, "budget_s": BUDGET, "wechat_timeout_s": TIMEOUT, "tries": TRIES, "lease_s": LEASE,
            "max_text_bytes": LIMIT, "pickup_ttl_s": PICKUP_TTL, "sweep_every_s": SWEEP_EVERY,
            "more_marker": "（续）", "pickup_notice": "稍后", "typing_after_s": 1000.0, "fast_path_s": FAST}


@dataclass
class Message:
    n: int
    user: str
    xml: str
    sentences: int
    voice: bool  # the answer is voice media (two parts), not text
    stream: bool  # the handler streams its text
    stuck: bool  # the handler never finishes
    tries: list[TryRun] = field(default_factory=list)
    wechat_done: bool = False  # WeChat got a reply (or success): no more tries

    @property
    def key(self) -> str:
        return f"m:{self.n}"

    runs: int = 0  # how many runs of its job started: each writes its own answer (as a language model would)

    def text(self, run: int, upto: int | None = None) -> str:
        return "".join(f"m{self.n}s{i}r{run}。" for i in range(self.sentences if upto is None else upto))

    def answer(self, run: int) -> Answer:
        if self.voice:  # a spoken answer: as many ≤ 60 s parts as it has sentences (three at most here)
            return Answer(tuple(Voice(f"m{self.n}s{i}r{run}") for i in range(self.sentences)))
        return Answer.text(self.text(run))


@dataclass
class TryRun:
    msg: Message
    k: int
    proc: Proc
    arrived: float
    play: Any
    request: Wait | RunInline | RunFast | None = None
    done: bool = False
    dropped: bool = False  # WeChat stopped waiting (5 s passed, or the connection died)
    copy: bool = False  # a copy of a try in flight (a replayed request), not one of WeChat's tries


@dataclass
class JobRun:
    msg: Message
    proc: Proc
    owner: str
    token: int
    inline_try: TryRun | None = None
    published: int = 0
    streaming: bool = False  # an inline job whose stream is now read on the pool
    fast: bool = False  # a fast handler's run: nothing written before it (bot/delivery/fast.py)
    variant: int = 0  # which run of the message's job this is (its answer's words differ)

    def __post_init__(self) -> None:
        if not self.variant:
            self.msg.runs += 1
            self.variant = self.msg.runs


class ManualTasks:
    """The process's pool: work waits until the model runs it."""

    def __init__(self, proc: Proc) -> None:
        self.proc = proc

    def spawn(self, work: Callable[[], None]) -> None:
        self.proc.tasks.append((self.proc.world.clock.monotonic(), work))


class ManualTimers:
    """The process's timers (a fast handler's watchdog): due work runs when the world's clock gets there."""

    def __init__(self, proc: Proc) -> None:
        self.proc = proc

    def after(self, delay_s: float, work: Callable[[], None]) -> Callable[[], None]:
        entry: list[Any] = [self.proc.world.clock.monotonic() + delay_s, work]
        self.proc.timers.append(entry)

        def cancel() -> None:
            entry[1] = None
        return cancel


class ManualExecutor(Executor):
    local = True

    def __init__(self, proc: Proc) -> None:
        self.proc = proc

    def submit(self, job: Job) -> None:
        self.proc.queued.append((self.proc.world.clock.monotonic(), job))


class FakeWeChat:
    """The customer-service API as delivery calls it; what it answers is the world's ``cs_mode``."""

    def __init__(self, world: World) -> None:
        self.world, self.message, self.appid, self.calls = world, self, "wxschedules00001", 0

    def _send(self, openid: str, part: Part) -> dict[str, Any]:
        mode, api = self.world.cs_mode, "message/custom/send"
        if not openid:  # the probe
            if mode == "48001":
                raise APIUnauthorizedError(api, 48001, "api unauthorized")
            raise WeChatAPIError(api, 40003, "invalid openid")
        self.calls += 1
        if mode == "48001":
            raise APIUnauthorizedError(api, 48001, "api unauthorized")
        if mode == "45015":
            raise CustomerServiceWindowError(api, 45015, "response out of time limit")
        if mode == "45047":
            raise CustomerServiceQuotaError(api, 45047, "out of response count limit")
        if mode == "flaky" and self.calls % 2:
            raise TransportError(api, None, "connection reset")
        self.world.saw(openid, "customer_service", part)
        return {"errcode": 0, "errmsg": "ok"}

    def send_text(self, openid: str, content: str) -> dict[str, Any]:
        return self._send(openid, Text(content))

    def send_voice(self, openid: str, media_id: str) -> dict[str, Any]:
        return self._send(openid, Voice(media_id))

    def send_image(self, openid: str, media_id: str) -> dict[str, Any]:
        raise AssertionError("no image answers here")

    def post(self, api: str, data: Any = None) -> dict[str, Any]:
        return {"errcode": 0}


class Proc:
    """One bot process (a gunicorn worker): its delivery, its pool and its queued jobs."""

    @property
    def stalled(self) -> bool:
        return self._stalled

    @stalled.setter
    def stalled(self, value: bool) -> None:
        if self._stalled or value:
            self.last_stalled = self.world.clock.monotonic()
        self._stalled = value

    def beating(self) -> bool:
        """Alive, and its heartbeat renewed as its thread would for a whole lease: its jobs are safe."""
        return self.alive and not self.stalled and self.world.clock.monotonic() - self.last_stalled > LEASE

    def __init__(self, world: World, name: str) -> None:
        self.world, self.name = world, name
        self.alive, self._stalled = True, False
        self.last_stalled = -1e18  # when its heartbeat last stalled: its lease may lapse within LEASE of that
        self.tasks: list[tuple[float, Callable[[], None]]] = []
        self.timers: list[list[Any]] = []  # [due, work or None once cancelled]
        self.queued: list[tuple[float, Job]] = []
        clock = world.clock
        self.heartbeat = Heartbeat(world.store, LEASE, clock)
        self.hb_wake: float | None = None  # when its renewing thread wakes (None: when a hold notifies it)
        self.last_sweep = clock.monotonic()
        config = world.config
        services = Services(store=world.store, client=world.client)  # type: ignore[arg-type]
        pipeline = Pipeline(config, Router("unused"), services=services, clock=clock)
        self.delivery = Delivery(pipeline, services, executor=ManualExecutor(self), clock=clock,
                                 tasks=ManualTasks(self), heartbeat=self.heartbeat, poll_s=0.05, cs_backoff_s=0.05,
                                 timers=ManualTimers(self))


class World:
    def __init__(self, store: Store, mode: str, cs_mode: str, procs: int = 2) -> None:
        self.store, self.mode, self.cs_mode = store, mode, cs_mode
        self.clock = FakeClock()
        self.config = config_from_dict(merge(BASE_CONFIG, {"reply": reply_config(mode)}))
        self.client = FakeWeChat(self)
        self.procs = [Proc(self, f"p{i}") for i in range(procs)]
        self.messages: list[Message] = []
        self.runs: list[JobRun] = []
        self.seen: dict[str, list[tuple[float, str, str]]] = {}  # user -> (when, how, text or media id)
        self.problems: list[str] = []
        self.owners: dict[str, tuple[State, str]] = {}  # message key -> the state and owner last seen
        self._numbers = itertools.count(1)
        self.users = ["oUserA0000000000000000000000", "oUserB0000000000000000000000"]

    # -- what the user sees ------------------------------------------------------------------------------
    def saw(self, openid: str, how: str, part: Part) -> None:
        shown = part.content if isinstance(part, Text) else part.media_id if isinstance(part, Voice) else "?"
        self.seen.setdefault(openid, []).append((self.clock.monotonic(), how, shown))

    def tokens(self) -> dict[int, list[tuple[int, int]]]:
        """Per message, ``(sentence or voice part, run)`` of what every user saw of its answer, in order."""
        found: dict[int, list[tuple[int, int]]] = {}
        for views in self.seen.values():
            for _, _, shown in views:
                for n, i, r in TOKEN.findall(shown):
                    found.setdefault(int(n), []).append((int(i), int(r)))
        return found

    # -- WeChat's side ---------------------------------------------------------------------------------
    def live(self) -> list[Proc]:
        return [p for p in self.procs if p.alive]

    def new_message(self, user: int, proc: int, *, sentences: int, voice: bool, stream: bool, stuck: bool,
                    spoken: bool = False, age: float = 0.0) -> None:
        """A user writes (``spoken``: a voice message, whose job runs in the background, not in its request).
        ``age``: how long before its first try WeChat made it (its CreateTime; negative: in our clock's future)."""
        n = next(self._numbers)
        user_id = self.users[user % len(self.users)]
        made = int(self.clock.time() - age)  # WeChat makes a message just before its first try
        xml = (messages.voice(f"media{n}", msg_id=n, openid=user_id, create_time=made) if spoken
               else messages.text(f"q{n}", openid=user_id, msg_id=n, create_time=made))
        voice = voice and not stream
        msg = Message(n, user_id, xml, min(sentences, 3) if voice else sentences, voice, stream, stuck)
        self.messages.append(msg)
        self.send_try(msg, proc)

    def send_try(self, msg: Message, proc: int, *, copy: bool = False, stamp_late: float = 0.0) -> None:
        """``stamp_late``: how far past the request's timestamp (the first try's) a thread took it."""
        live = self.live()
        if not live:
            return
        p = live[proc % len(live)]
        k, now = len(msg.tries) + 1, self.clock.monotonic()
        waited = max(0.0, stamp_late - TIMEOUT * (k - 1))  # since WeChat sent it, k - 1 tries after the stamp
        t = TryRun(msg, k, p, now - waited, None, copy=copy)  # WeChat's 5 s run from its sending
        msg.tries.append(t)
        inbound = inbound_from_xml(msg.xml)
        inbound.stamp_late_s = stamp_late
        t.play = p.delivery.tries.play(inbound, now)
        self.step_try(t, None, first=True)

    def retry_due(self) -> list[Message]:
        """Messages WeChat would send again now: the last try was dropped, tries remain, no reply came."""
        real = {m.n: [t for t in m.tries if not t.copy] for m in self.messages}
        return [m for m in self.messages if real[m.n] and not m.wechat_done and real[m.n][-1].dropped
                and len(real[m.n]) < TRIES]

    def step_try(self, t: TryRun, value: Any, first: bool = False) -> None:
        try:
            request = next(t.play) if first else t.play.send(value)
        except StopIteration as stop:
            t.done, t.request = True, None
            self.answered(t, stop.value)
            return
        t.request = request
        if isinstance(request, RunInline):
            claim: Claim = request.claim
            run = JobRun(t.msg, t.proc, claim.record.owner or "", claim.token, inline_try=t)
            self.runs.append(run)
        elif isinstance(request, RunFast):
            self.runs.append(JobRun(t.msg, t.proc, "", 0, inline_try=t, fast=True))

    def answered(self, t: TryRun, say: Say) -> None:
        late = self.clock.monotonic() - t.arrived
        shown = say.part.content if isinstance(say.part, Text) else say.part.media_id if isinstance(say.part, Voice) \
            else ""
        if TOKEN.search(shown) and late > BUDGET + GRACE + 1e-6:
            self.problems.append(f"m{t.msg.n} try {t.k}: an answer in a passive reply {late:.2f} s after the try "
                                 f"came (budget {BUDGET} s): {shown!r}")
        if t.dropped:
            return  # WeChat no longer listens: nothing reaches the user
        if t.msg.wechat_done:
            return  # a copy answered first: WeChat deduplicates by MsgId, one reply is shown
        t.msg.wechat_done = True
        if say.part is not None:
            self.saw(t.msg.user, "passive", say.part)

    # -- the processes ---------------------------------------------------------------------------------
    def finish_run(self, run: JobRun) -> None:
        """The handler of ``run`` is done now (a streaming one: the rest of its stream is read at once)."""
        self.runs.remove(run)
        msg, jobs = run.msg, run.proc.delivery.jobs
        trace = Trace(str(msg.n), msg.user, "text")
        if run.inline_try is not None and not run.inline_try.done:
            t = run.inline_try
            if msg.stream:  # the handler returned a stream: the try waits, the stream is read on the pool
                streaming = Streaming(lambda on: Answered(msg.answer(run.variant), trace), trace)
                if not run.fast:  # a fast run's stream is claimed, then read by the pool's work (Jobs.read_later)
                    self.runs.append(JobRun(msg, run.proc, run.owner, run.token, streaming=True, variant=run.variant))
                self.step_try(t, streaming)
            else:
                self.step_try(t, Answered(msg.answer(run.variant), trace))
            return
        jobs.finish(msg.key, Answered(msg.answer(run.variant), trace), run.owner)
        jobs.ended(msg.key, run.token)

    def publish(self, run: JobRun) -> None:
        """A streaming handler wrote one more sentence."""
        if not run.msg.stream or run.inline_try is not None or run.published >= run.msg.sentences - 1:
            return
        run.published += 1
        run.proc.delivery.jobs.progress(run.msg.key, run.owner)(run.msg.text(run.variant, run.published))

    def start_queued(self, proc: Proc) -> None:
        _, job = proc.queued.pop(0)
        begun = proc.delivery.jobs.begin(job)
        if begun is not None:
            msg = next(m for m in self.messages if m.key == job.key)
            self.runs.append(JobRun(msg, proc, begun[0], begun[1], streaming=msg.stream))

    def fire_timers(self, proc: Proc, now: float) -> None:
        while True:
            due = [entry for entry in proc.timers if entry[0] <= now]
            if not due:
                return
            for entry in due:
                proc.timers.remove(entry)
                if entry[1] is not None:
                    entry[1]()

    def run_task(self, proc: Proc) -> None:
        _, work = proc.tasks.pop(0)
        work()

    def sweep(self, proc: Proc) -> None:
        proc.last_sweep = self.clock.monotonic()
        proc.delivery.sweep()

    def kill(self, proc: Proc) -> None:
        """``kill -9``: its requests die (WeChat sees the connection drop), its jobs, pool and heartbeat stop."""
        proc.alive = False
        for m in self.messages:
            for t in m.tries:
                if t.proc is proc and not t.done:
                    t.done = t.dropped = True
        self.runs = [r for r in self.runs if r.proc is not proc]
        proc.tasks.clear()
        proc.queued.clear()
        proc.timers.clear()

    def restart(self, index: int) -> None:
        self.procs[index] = Proc(self, f"p{index}'")

    # -- time ----------------------------------------------------------------------------------------------
    def wake_events(self) -> None:
        """Tries whose event was set (their job here ended) wake at once, as on the real clock."""
        woke = True
        while woke:
            woke = False
            for t in self.pending_tries():
                if isinstance(t.request, Wait) and t.request.event is not None and t.request.event.is_set():
                    self.step_try(t, None)
                    woke = True

    def pending_tries(self) -> list[TryRun]:
        return [t for m in self.messages for t in m.tries if not t.done and t.proc.alive]

    def heartbeats(self) -> None:
        for p in self.live():
            if p.stalled:
                continue
            wanted = p.heartbeat._wanted  # a hold notified the sleeping thread
            if (p.hb_wake is None and not wanted) or (p.hb_wake is not None and self.clock.monotonic() < p.hb_wake
                                                     and not wanted):
                continue
            beat, wake = p.heartbeat.plan()
            if beat:
                p.heartbeat.beat()
                _, wake = p.heartbeat.plan()
            p.hb_wake = wake

    def due_times(self) -> list[float]:
        now, times = self.clock.monotonic(), []
        for t in self.pending_tries():
            if isinstance(t.request, Wait):
                times.append(t.request.until)
            if not t.dropped:
                times.append(t.arrived + TIMEOUT)
        for p in self.live():
            if p.hb_wake is not None and not p.stalled:
                times.append(p.hb_wake)
            times.append(p.last_sweep + SWEEP_EVERY)
            times += [queued + POOL_DELAY for queued, _ in p.tasks + p.queued]  # type: ignore[operator]
            times += [due for due, work in p.timers if work is not None]
        return [x for x in times if x > now]

    def at_now(self) -> None:
        """Everything due at the current moment: WeChat's cut-offs, waking tries, heartbeats, sweeps, pools."""
        now = self.clock.monotonic()
        for t in self.pending_tries():
            if not t.dropped and now >= t.arrived + TIMEOUT:
                t.dropped = True
        for t in self.pending_tries():
            if isinstance(t.request, Wait) and now >= t.request.until:
                self.step_try(t, None)
        self.wake_events()
        for p in self.live():
            self.fire_timers(p, now)
        self.wake_events()
        self.heartbeats()
        for p in self.live():
            while p.queued and p.queued[0][0] + POOL_DELAY <= now:
                self.start_queued(p)
            while p.tasks and p.tasks[0][0] + POOL_DELAY <= now:
                self.run_task(p)
            if now >= p.last_sweep + SWEEP_EVERY:
                self.sweep(p)
        self.wake_events()
        self.heartbeats()

    def advance(self, seconds: float) -> None:
        target = self.clock.monotonic() + seconds
        while True:
            self.at_now()
            self.check()  # take-overs are judged when they happen
            nxt = min([x for x in self.due_times() if x <= target] or [target])
            if nxt <= self.clock.monotonic():
                if self.clock.monotonic() >= target:
                    return
                nxt = target
            self.clock.advance_to(nxt)

    # -- what must always hold -------------------------------------------------------------------------------
    def record(self, msg: Message) -> Record | None:
        return Record.load(self.store.get(f"dl:{msg.key}"))

    def check(self) -> list[str]:
        problems = list(self.problems)
        for n, seen in self.tokens().items():
            runs = by_run(seen)
            if len({r for r, _ in runs}) != len(runs) or any(parts != list(range(len(parts))) for _, parts in runs):
                problems.append(f"m{n}: parts seen (part, run) {seen}: each once and in order — of one run's "
                                "answer, or the beginning another run's stream showed, then a later run's whole")
        open_keys = {k for k, _ in self.store.index_range(OPEN, limit=10_000)}
        processes = {p.heartbeat.process: p for p in self.procs}
        for msg in self.messages:
            record = self.record(msg)
            if record is None:
                continue
            if record.state not in FINAL and msg.key not in open_keys:
                problems.append(f"m{msg.n}: {record.state} but not in the open index (nobody would look at it)")
            if record.state is State.PENDING and msg.key not in {k for k, _ in self.store.index_range(
                    pickup_index(msg.user), limit=10_000)}:
                problems.append(f"m{msg.n}: kept but not listed for its user")
            before = self.owners.get(msg.key)
            if record.owner and before and before[0] is record.state and record.owner != before[1]:
                p = processes.get(before[1].split("@", 1)[1].split("#", 1)[0])
                if p is not None and p.beating():
                    self.problems.append(f"m{msg.n}: taken over from {before[1]}, whose process is alive and "
                                         "beating")
                    problems.append(self.problems[-1])
            if record.owner:
                self.owners[msg.key] = (record.state, record.owner)
        return problems

    # -- the end ---------------------------------------------------------------------------------------------
    def settle(self) -> list[str]:
        """Let every handler that will finish finish, the sweepers and pools run, and each user write until
        nothing is kept for them; then every answer must have reached its user whole — or expired unpicked."""
        for p in self.procs:
            p.stalled = False
        if not self.live():
            self.restart(0)
        for _ in range(6):
            for run in [r for r in self.runs if not r.msg.stuck]:
                while run.msg.stream and run.published < run.msg.sentences - 1 and run.inline_try is None:
                    self.publish(run)
                if run in self.runs:
                    self.finish_run(run)
            self.advance(LEASE * 2)
        for _ in range(40):
            kept = {m.user for m in self.messages if (r := self.record(m)) is not None and r.state is State.PENDING}
            busy = [m for m in self.messages if not m.stuck and (r := self.record(m)) is not None
                    and r.state in (State.RUNNING, State.DONE, State.SENDING)]  # a pickup message's own answer
            if not kept and not busy:
                break
            for user in kept:
                self.new_message(self.users.index(user), 0, sentences=1, voice=False, stream=False, stuck=False)
                for run in [r for r in self.runs if r.inline_try is not None]:
                    self.finish_run(run)
            self.advance(1.0)
            for run in [r for r in self.runs if not r.msg.stuck]:  # jobs on a pool (customer_service mode)
                self.finish_run(run)
            self.advance(BUDGET + 1.0)  # their tries answer (or keep what they cannot)
        problems = self.check()
        seen = self.tokens()
        for msg in self.messages:
            record = self.record(msg)
            if record is None or msg.stuck:
                continue
            runs = by_run(seen.get(msg.n, []))
            got, whole = (runs[-1][1] if runs else []), list(range(msg.sentences))
            if record.state is State.EXPIRED:
                if got != whole[:len(got)]:
                    problems.append(f"m{msg.n} expired after showing {got}: not a beginning of {whole}")
            elif record.state not in FINAL:
                problems.append(f"m{msg.n} still {record.state} at the end ({record.via}, seen {got})")
            elif got != whole:
                problems.append(f"m{msg.n} {record.state} via {record.via}: the user saw {got}, expected {whole}")
        return problems


def by_run(seen: list[tuple[int, int]]) -> list[tuple[int, list[int]]]:
    """What the user saw of one answer, as ``(run, parts)`` groups in the order seen."""
    groups: list[tuple[int, list[int]]] = []
    for part, run in seen:
        if groups and groups[-1][0] == run:
            groups[-1][1].append(part)
        else:
            groups.append((run, [part]))
    return groups
