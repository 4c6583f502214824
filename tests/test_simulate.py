"""``python -m bot simulate`` plays WeChat and prints everything the user sees, in order, with its second
(issue 11 item 8; issue 12 item 6: the sandbox is blamed for its own failures, ``--insecure`` for TLS).

The bot runs in this process on a real socket against the real sandbox, with WeChat's clock scaled by 0.1
(a try is dropped after 0.5 s); ``simulate`` is a subprocess, as a user runs it, reading the same config.
"""
from __future__ import annotations

import datetime
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, merge, run_cli, write_config_file
from delivery_support import ANSWER, SENTENCE, local_bot, openid, sections, start_sandbox
from werkzeug.serving import make_server

from bot.config import Config, load_config
from bot.sandbox import Sandbox
from bot.web.app import create_app

LINE = re.compile(r"^\[ *(\d+\.\d\d)s\] (passive|customer service|WeChat shows): (.*)$")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    sb = start_sandbox(0.05)
    yield sb
    sb.stop()


def config_file(tmp_path: Path, sandbox: Sandbox, mode: str = "auto", **more: Any) -> tuple[Path, Config]:
    path = write_config_file(tmp_path, **sections(sandbox.url, mode=mode), **more)
    return path, load_config(path, env={})


def simulate(path: Path, url: str, *args: str) -> Any:
    return run_cli("simulate", *args, "--config", str(path), "--url", url, "--settle", "0.3", timeout=60)


def seen(stdout: str) -> list[tuple[float, str, str]]:
    """The lines of what the user saw: ``(second, how, what)``; every stdout line must be one."""
    out: list[tuple[float, str, str]] = []
    for line in stdout.splitlines():
        if out and (line.startswith("        ") or not line):  # the next line of a text of several lines
            at, how, what = out[-1]
            out[-1] = (at, how, f"{what}\n{line.strip()}")
            continue
        match = LINE.match(line)
        assert match, f"not a line of what the user sees: {line!r}"
        out.append((float(match.group(1)), match.group(2), match.group(3)))
    return out


def test_a_text_answered_at_once_is_one_passive_line(tmp_path: Path, sandbox: Sandbox) -> None:
    path, config = config_file(tmp_path, sandbox)
    with local_bot(config) as bot:
        result = simulate(path, bot.url, "text", SENTENCE)
    assert result.returncode == 0, result.stderr
    [(at, how, what)] = seen(result.stdout)
    assert (how, what) == ("passive", ANSWER) and at < 0.5
    assert "(safe mode, 1 try: reply;" in result.stderr


def test_a_slow_voice_is_answered_on_wechats_retry(tmp_path: Path, sandbox: Sandbox) -> None:
    """Recognition takes 0.7 s: the first try (0.5 s) is held, WeChat's second try gets the answer."""
    sandbox.configure(recognition_latency_s=0.7)
    path, config = config_file(tmp_path, sandbox)
    try:
        with local_bot(config) as bot:
            result = simulate(path, bot.url, "voice", SENTENCE, "--openid", openid("retry"))
    finally:
        sandbox.configure(recognition_latency_s=0.05)
    assert result.returncode == 0, result.stderr
    [(at, how, what)] = seen(result.stdout)
    assert (how, what) == ("passive", ANSWER) and at >= 0.5
    assert re.search(r"\(safe mode, [23] tries: timeout, (timeout, )?reply;", result.stderr), result.stderr


def test_a_late_answer_through_customer_service_shows_with_its_second(tmp_path: Path, sandbox: Sandbox) -> None:
    sandbox.configure(recognition_latency_s=0.8)
    user = openid("cs")
    path, config = config_file(tmp_path, sandbox, mode="customer_service")
    try:
        with local_bot(config) as bot:
            first = simulate(path, bot.url, "voice", SENTENCE, "--openid", user)
            again = simulate(path, bot.url, "voice", SENTENCE, "--openid", user)
    finally:
        sandbox.configure(recognition_latency_s=0.05)
    for result in (first, again):  # the second run does not show the first one's message again
        assert result.returncode == 0, result.stderr
        [(at, how, what)] = seen(result.stdout)
        assert (how, what) == ("customer service", ANSWER) and at >= 0.4
        assert "1 try: success;" in result.stderr


def test_an_answer_that_missed_every_try_shows_the_notice_then_comes_with_the_next_message(
        tmp_path: Path, sandbox: Sandbox) -> None:
    """No customer-service API (``mode = "passive"``): the last try shows the pickup notice; the next message's
    reply starts with the kept answer, then its own."""
    sandbox.configure(recognition_latency_s=3.0)
    path, config = config_file(tmp_path, sandbox, mode="passive")
    user = openid("none")
    try:
        with local_bot(config) as bot:
            result = simulate(path, bot.url, "voice", SENTENCE, "--openid", user)
            time.sleep(1.0)  # the answer is ready 3 s after the push
            later = simulate(path, bot.url, "text", "你好", "--openid", user)
    finally:
        sandbox.configure(recognition_latency_s=0.05)
    assert result.returncode == 0, result.stderr
    [(_, how, what)] = seen(result.stdout)
    assert (how, what) == ("passive", "回答还在准备中，稍后发任意消息即可收到。")
    assert "3 tries: timeout, timeout, reply;" in result.stderr
    [(_, how, what)] = seen(later.stdout)
    assert (how, what) == ("passive", f"{ANSWER}\n\n你好"), later.stdout


def test_a_bot_that_never_answers_shows_wechats_error(tmp_path: Path, sandbox: Sandbox) -> None:
    path, _ = config_file(tmp_path, sandbox)
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        result = simulate(path, f"http://127.0.0.1:{silent.getsockname()[1]}/wechat", "text", SENTENCE)
    assert result.returncode == 1
    [(at, how, what)] = seen(result.stdout)
    assert (how, what) == ("WeChat shows", "该公众号暂时无法提供服务，请稍后再试") and at >= 1.5
    assert "3 tries: timeout, timeout, timeout;" in result.stderr


def test_once_posts_one_try_and_prints_its_answer(tmp_path: Path, sandbox: Sandbox) -> None:
    path, config = config_file(tmp_path, sandbox)
    with local_bot(config) as bot:
        result = simulate(path, bot.url, "text", SENTENCE, "--once")
    assert (result.returncode, result.stdout) == (0, ANSWER + "\n")


def test_a_refusal_is_reported_at_once(tmp_path: Path, sandbox: Sandbox) -> None:
    path, config = config_file(tmp_path, sandbox)
    other = write_config_file(tmp_path, "other.toml", **merge(sections(sandbox.url),
                                                              {"wechat": {"token": "not-the-token"}}))
    with local_bot(config) as bot:
        result = simulate(other, bot.url, "text", SENTENCE)
    assert (result.returncode, result.stdout) == (1, "HTTP 403: bad signature\n")
    assert "1 try: HTTP 403;" in result.stderr


def test_voice_blames_the_sandbox_when_the_sandbox_failed(tmp_path: Path, sandbox: Sandbox) -> None:
    gone = f"http://127.0.0.1:{free_port()}"
    path = write_config_file(tmp_path, **sections(gone))
    with local_bot(load_config(path, env={})) as bot:
        result = simulate(path, bot.url, "voice", SENTENCE)
    assert result.returncode == 2 and result.stdout == ""
    error = result.stderr.splitlines()[-1]
    assert error.startswith(f"error: cannot reach the WeChat API sandbox at {gone} ([wechat] api_base_url)")
    assert "the bot" not in error and "Traceback" not in result.stderr


# -- a TLS proxy with a self-signed certificate ----------------------------------------------------------
def self_signed(tmp_path: Path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_insecure_reaches_a_bot_behind_a_self_signed_certificate(tmp_path: Path, sandbox: Sandbox) -> None:
    path, config = config_file(tmp_path, sandbox)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed(tmp_path))
    server = make_server("127.0.0.1", 0, create_app(config), threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"https://127.0.0.1:{server.server_port}/wechat"
    try:
        refused = simulate(path, url, "text", SENTENCE)
        insecure = simulate(path, url, "text", SENTENCE, "--insecure")
    finally:
        server.shutdown()
        server.server_close()
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == (f"error: cannot reach the bot at {url}: SSLError. Is it running? "
                                               "(make run) (a self-signed certificate? pass --insecure)")
    assert insecure.returncode == 0, insecure.stderr
    assert [(how, what) for _, how, what in seen(insecure.stdout)] == [("passive", ANSWER)]
    assert "Warning" not in insecure.stderr
