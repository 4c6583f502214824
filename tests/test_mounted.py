"""A bot mounted into an existing Flask app (issue 22, item 8): its ``[logging]`` applies to its own loggers — one
``bot.message`` line per message, in its format — without taking over the host's logging, and the host's request
log shows the hashed openid, never the raw one WeChat puts in the callback URL.

Real servers: the host app on werkzeug's development server in this process (the one ``app.run()`` starts), and
a host app module under gunicorn with an access log.
"""
from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from conftest import free_port, write_config_file
from delivery_support import LogRecorder
from flask import Flask
from run_support import stop
from werkzeug.serving import make_server

from bot import VoiceBot
from bot.config import ENV_OVERRIDES, load_config
from bot.ops.trace import hash_openid
from bot.testing import BotClient
from bot.testing.net import wait_until_up

OPENID = "oMOUNTEDUSER0000000000000001"


def test_logging_applies_to_the_bots_loggers_and_the_request_log_hides_the_openid(tmp_path: Path) -> None:
    path = write_config_file(tmp_path, logging={"level": "INFO", "format": "json"})
    config = load_config(path, env={})
    root, host_handler = logging.getLogger(), LogRecorder()
    root_level, root_handlers = root.level, list(root.handlers)
    root.setLevel(logging.WARNING)  # the host's logging: warnings and up, its own handler
    root.addHandler(host_handler)
    stream = io.StringIO()
    try:
        app = Flask("host")
        app.add_url_rule("/", "home", lambda: "host")
        VoiceBot(app, path)
        handler = next(h for h in logging.getLogger("bot").handlers if getattr(h, "_wvb", False))
        handler.setStream(stream)  # the bot's lines go to stderr; read them here
        server = make_server("127.0.0.1", 0, app, threaded=True)  # werkzeug's default handler, as app.run() uses
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_port}/wechat"
            assert BotClient(config, url=url, openid=OPENID).text("打开客厅的灯", msg_id=31337).content == "已打开客厅的灯"
        finally:
            server.shutdown()
            server.server_close()
        assert root.level == logging.WARNING and host_handler in root.handlers  # the host's logging untouched
    finally:
        root.removeHandler(host_handler)
        root.setLevel(root_level)
        root.handlers[:] = root_handlers
    [line] = [json.loads(x) for x in stream.getvalue().splitlines() if '"bot.message"' in x]
    assert line["msg_id"] == "31337" and line["openid"] == hash_openid(config, OPENID)
    assert not host_handler.lines(" bot.")  # not twice, not by the host's rules
    requests = [line for line in host_handler.lines("INFO werkzeug: ") if "/wechat?" in line]
    assert requests and all(OPENID not in r and f"openid={hash_openid(config, OPENID)}" in r for r in requests), \
        requests  # the host's own handler got werkzeug's request line with the openid hashed


HOST_APP = """
from flask import Flask
from bot import VoiceBot
app = Flask("host")
VoiceBot(app, "config.toml")
"""


def test_gunicorns_access_log_of_a_host_app_hides_the_openid(tmp_path: Path) -> None:
    path = write_config_file(tmp_path)
    (tmp_path / "host_app.py").write_text(HOST_APP, encoding="utf-8")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ENV_OVERRIDES} | {"PYTHONUNBUFFERED": "1"}
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", "1", "-k",
                                 "gthread", "--threads", "4", "--no-control-socket", "--access-logfile", "-",
                                 "host_app:app"],
                                cwd=str(tmp_path), env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", proc, ok=lambda status: status == 200)
        config = load_config(path, env={})
        reply = BotClient(config, url=f"http://127.0.0.1:{port}/wechat", openid=OPENID).text("打开客厅的灯")
        assert reply.content == "已打开客厅的灯"
    finally:
        stop(proc, signal.SIGTERM)
    text = log.read_text(errors="replace")
    assert OPENID not in text, text
    assert [line for line in text.splitlines() if f"openid={hash_openid(config, OPENID)}" in line and "POST" in line]
    assert "INFO bot.message: message msg_id=" in text  # the bot's own line, at the bot's level
