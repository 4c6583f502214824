"""Servers for ``benchmarks/webhook.py`` (and the configs ``webhook_instructions.py`` shares): gunicorn subprocesses.

Ours is started the way the README's "Deploying" section does it: ``gunicorn -c gunicorn.conf.py`` with the bind in
``WVB_BIND`` and the config in ``WECHAT_VOICEBOT_CONFIG``. The bare handler cannot use that file as it is (it
runs the bot's preflight, which loads and checks a bot config in the master), so :func:`gunicorn_settings` reads
the settings the file produces (in a subprocess, preflight included) and :func:`write_gunicorn_conf` writes them
as a plain gunicorn config for the bare handler: both servers get the same workers, worker class and threads.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bot.testing.net import wait_until_up

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
GUNICORN_CONF = REPO / "gunicorn.conf.py"
PATH = "/wechat"
# Inherited variables that would change what a server runs: the bot's config, gunicorn.conf.py's overrides.
SCRUBBED_ENV = ("WECHAT_", "WVB_", "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS", "PROMETHEUS_MULTIPROC_DIR")
SECRET_ENV = {"BARE_TOKEN", "BARE_APPID", "BARE_AES_KEY"}  # fresh per run; shown as … in the header


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_ENV)}
    env.update(extra)
    return env


# -- configs ---------------------------------------------------------------------------------------------------

def bench_secrets() -> dict[str, str]:
    """A fresh Token, AppID and EncodingAESKey for one benchmark run (every server gets the same)."""
    return {"token": "bench-" + secrets.token_hex(8), "appid": "wxbench" + secrets.token_hex(5),
            "aes_key": base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")}


VARIANTS = {
    # name: (extra TOML, description)
    "default": ("", "defaults: [storage] default (SQLite, .voicebot/state.db next to the config), "
                    "[logging] level default (INFO)"),
    "memory": ('\n[storage]\nurl = "memory://"\n\n[logging]\nlevel = "WARNING"\n',
               'memory:// + [logging] level = "WARNING" (not a deployable configuration with 2 workers: a memory '
               "store does not deduplicate across workers; for comparison with earlier numbers)"),
    # --breakdown: each of the two defaults alone, to see what each costs
    "sqlwarn": ('\n[logging]\nlevel = "WARNING"\n',
                'diagnostic (--breakdown): the default SQLite store, [logging] level = "WARNING" (no per-message line)'),
    "meminfo": ('\n[storage]\nurl = "memory://"\n',
                "diagnostic (--breakdown): memory:// (not deployable with 2 workers), [logging] level default (INFO)"),
    # --claim-first: the defaults with the fast path off (every message claimed before its handler: two writes)
    "claimfirst": ('\n[reply]\nfast_path_s = 0\n',
                   "diagnostic (--claim-first): the defaults with [reply] fast_path_s = 0 (claim before the handler, "
                   "two writes a message)"),
}
QUIET_VARIANTS = {"memory", "sqlwarn"}  # no per-message INFO line to count


def our_config_toml(secrets_: dict[str, str], dead_port: int, variant: str = "default") -> str:
    """Our config: the defaults plus what the benchmark needs (secrets, the echo router, a dead API port, the
    path), and for ``variant="memory"`` the old memory:// + WARNING set-up."""
    return f"""# written by benchmarks/_servers.py ({variant})
[wechat]
appid = "{secrets_['appid']}"
appsecret = "benchmark-secret"
token = "{secrets_['token']}"
encoding_aes_key = "{secrets_['aes_key']}"
# Nothing listens here: a text message must not need any outbound call.
api_base_url = "http://127.0.0.1:{dead_port}"

[server]
path = "{PATH}"
# replay_window_s stays at its default (300): requests are signed afresh before every run.

[handlers]
routers = ["handlers.echo:router"]
search_paths = [{json.dumps(str(REPO))}]
{VARIANTS[variant][0]}"""


def write_our_config(directory: Path, secrets_: dict[str, str], dead_port: int, variant: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.toml"
    path.write_text(our_config_toml(secrets_, dead_port, variant), encoding="utf-8")
    return path


# -- gunicorn.conf.py's settings, for the bare handler ---------------------------------------------------------

_READ_SETTINGS = """
import json, runpy, sys
from gunicorn.config import KNOWN_SETTINGS
names = {s.name for s in KNOWN_SETTINGS} - {"wsgi_app", "bind", "config"}
ns = runpy.run_path(sys.argv[1])
out, skipped = {}, []
for k, v in ns.items():
    if k in names:
        try:
            json.dumps(v)
            out[k] = v
        except TypeError:
            skipped.append(k)
print(json.dumps({"settings": out, "skipped": skipped}))
"""


def gunicorn_settings(config_path: Path) -> tuple[dict[str, object], list[str]]:
    """The gunicorn settings ``gunicorn.conf.py`` sets (bind and wsgi_app aside) under a clean environment, read
    by running it in a subprocess with ``config_path`` as the bot config (its preflight runs and must pass).
    Returns the settings and the names of any it sets that are not plain data (hooks: not copied)."""
    done = subprocess.run([sys.executable, "-c", _READ_SETTINGS, str(GUNICORN_CONF)], cwd=config_path.parent,
                          env=clean_env({"WECHAT_VOICEBOT_CONFIG": str(config_path)}),
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"reading {GUNICORN_CONF.name} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return data["settings"], data["skipped"]


def write_gunicorn_conf(path: Path, settings: dict[str, object]) -> Path:
    lines = [f"# written by benchmarks/_servers.py: the settings {GUNICORN_CONF.name} sets, without its preflight"]
    lines += [f"{k} = {v!r}" for k, v in sorted(settings.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


# -- a server --------------------------------------------------------------------------------------------------

@dataclass
class Server:
    """One gunicorn: ``gunicorn -c CONF [overrides] [extra] [APP]``, cwd ``workdir``, output in ``NAME.log``."""

    name: str
    label: str  # what it is, for the header
    conf: Path  # gunicorn config file
    port: int
    workdir: Path
    env: dict[str, str]
    app: str | None = None  # APP_MODULE; None: the conf's wsgi_app
    args: list[str] = field(default_factory=list)  # flags after -c (overrides, --bind, --pythonpath)
    bot_config: Path | None = None
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "gunicorn", "-c", str(self.conf), *self.args, *([self.app] if self.app else [])]

    def shown(self) -> str:
        """The command line with the environment it adds, as one could paste it."""
        env = " ".join(f"{k}={'…' if k in SECRET_ENV else shlex.quote(v)}" for k, v in self.env.items())
        return f"{env} {shlex.join(self.command())}".strip()

    def start(self) -> Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(self.command(), cwd=self.workdir, env=clean_env(self.env), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_until_up(f"http://127.0.0.1:{self.port}/healthz", self.proc, timeout=30,
                          ok=lambda status: status == 200, interval=0.1)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{self.name}: {exc}:\n{self.log_tail()}") from None
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # the master stops its own workers
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def cpu_seconds(self) -> float:
        """User + system CPU of the master and its workers so far (all their threads), from /proc."""
        if self.proc is None:
            return 0.0
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
            pid, ppid = int(entry.name), int(fields[1])
            if pid == self.proc.pid or ppid == self.proc.pid:
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / tick

    def count_in_log(self, needle: str) -> int:
        try:
            return self.log_path.read_text(errors="replace").count(needle)
        except OSError:
            return 0

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""
