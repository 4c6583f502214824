"""What the bot learns about an account's customer-service API does not outlive its evidence (issue 22, item 2).

The issue's sequence, as a user meets it: ``make run UNVERIFIED=1`` (the bot learns 48001 and remembers it in
its SQLite file), then ``make run`` on the verified sandbox: that start-up asks WeChat again, says so, and the
story arrives by customer service again. Below it, the rules: another API base URL forgets what was learned,
a later success clears a refusal, ``check`` says what is remembered and since when.
"""
from __future__ import annotations

import re
from pathlib import Path

from conftest import free_port, merge, run_cli, write_config_file
from delivery_support import bot_config, openid, sections, start_sandbox
from run_support import bot_run

from bot.delivery.customer_service import CustomerService
from bot.runtime import build_services
from bot.store.memory import MemoryStore
from bot.wechat import WeChatAPI

STORY_MODULE = '''
import time
from bot import Router
router = Router("story")
STORY = [f"第{i}句。" for i in range(1, 13)]
def tell():
    for sentence in STORY:
        time.sleep(0.2)
        yield sentence
@router.keyword("讲个故事")
def story(ctx):
    return ctx.stream(tell())
'''
FORGOTTEN = re.compile(r"wechat-voicebot: customer-service API: available now; unavailable \(errcode 48001\), "
                       r"remembered since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d, is forgotten")


def test_a_refusal_learned_on_an_unverified_run_is_forgotten_at_the_next_verified_start(tmp_path: Path) -> None:
    (tmp_path / "fast_story.py").write_text(STORY_MODULE, encoding="utf-8")
    bot_port, sandbox = free_port(), f"http://127.0.0.1:{free_port()}"
    path = write_config_file(tmp_path, **merge(sections(sandbox, store="sqlite:///state.db"), {
        "server": {"port": bot_port}, "handlers": {"routers": ["fast_story:router"], "search_paths": ["."]}}))
    url = f"http://127.0.0.1:{bot_port}"

    def story(user: str) -> str:
        result = run_cli("simulate", "text", "讲个故事", "--config", str(path), "--openid", user, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    with bot_run(path, url, "--unverified") as unverified:
        assert "customer service:" not in story(openid("first"))  # kept for pickup: no customer-service API
    assert "customer-service API unavailable for this account (errcode 48001" in unverified.output()
    with bot_run(path, url) as verified:
        shown = story(openid("second"))
        start = verified.output()
        check = run_cli("check", "--config", str(path), env={"PYTHONIOENCODING": "utf-8"})
    assert FORGOTTEN.search(start), start
    assert start.index("customer-service API: available now") < start.index("serving http")
    assert "customer service: " in shown.splitlines()[-1], shown  # the rest of the story by customer service
    line = next(line for line in check.stdout.splitlines() if "customer-service API" in line)
    assert re.search(r"\(the bot's memory: available, remembered since .+ and confirmed now\)$", line), line


def test_another_api_base_url_forgets_what_was_learned() -> None:
    store = MemoryStore()
    with start_sandbox(customer_service=False) as unverified, start_sandbox() as verified:
        def service(sandbox_url: str) -> CustomerService:
            config = bot_config(sandbox_url)
            return CustomerService(store, WeChatAPI(config.wechat, store), config.reply, config.wechat.appid)
        assert service(unverified.url).available(probe=True) is False
        assert service(unverified.url).remembered().answer == "48001"
        elsewhere = service(verified.url)
        assert elsewhere.remembered() is None  # learned from another API: it says nothing about this one
        assert elsewhere.available(probe=True) is True


def test_a_later_success_clears_a_refusal_and_check_says_since_when(tmp_path: Path) -> None:
    with start_sandbox(customer_service=False) as sandbox:
        path = write_config_file(tmp_path, **sections(sandbox.url, store="sqlite:///state.db"))
        config = bot_config(sandbox.url, store=f"sqlite:///{tmp_path / 'state.db'}")
        services = build_services(config)
        cs = CustomerService(services.store, services.client, config.reply, config.wechat.appid)
        assert cs.available(probe=True) is False
        before = run_cli("check", "--config", str(path), env={"PYTHONIOENCODING": "utf-8"})
        sandbox.configure(customer_service=True)  # the account was verified meanwhile
        after = run_cli("check", "--config", str(path), env={"PYTHONIOENCODING": "utf-8"})
        assert cs.available() is True and cs.remembered().answer == "available"
        services.store.close()
    said = next(line for line in before.stdout.splitlines() if "customer-service API" in line)
    assert re.search(r"unavailable \(errcode 48001\).*\(the bot's memory: unavailable \(errcode 48001\), remembered "
                     r"since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d and confirmed now\)$", said), said
    said = next(line for line in after.stdout.splitlines() if "customer-service API" in line)
    assert said.startswith("✓ customer-service API: available") and said.endswith(", is forgotten)"), said
