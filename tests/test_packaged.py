"""The package as a user's own project gets it (issue 22, items 6 and 9): built into a wheel from this checkout,
installed apart from it, and deployed with the README's gunicorn command from a directory that holds nothing but
a config — no ``gunicorn.conf.py``, no checkout on the path.

The wheel is built offline (``--no-build-isolation``, this environment's setuptools) and installed without its
dependencies into a directory of its own, which comes first on ``PYTHONPATH``: the dependencies are this
environment's, the bot is the wheel's.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import REPO, free_port, write_config_file
from run_support import stop

from bot.config import ENV_OVERRIDES
from bot.testing import BotClient
from bot.testing.net import wait_until_up


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("bot", "handlers"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                            str(work / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    [wheel] = (work / "dist").glob("wechat_voicebot-*.whl")
    site = work / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                              str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    return SimpleNamespace(wheel=wheel, site=site, build_output=build.stdout + build.stderr)


def test_the_wheel_ships_the_gunicorn_settings_and_an_spdx_license(installed: SimpleNamespace) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert "bot/web/gunicorn_conf.py" in names and "bot/py.typed" in names
    metadata = zipfile.ZipFile(installed.wheel).read(next(n for n in names if n.endswith("/METADATA"))).decode()
    assert "License-Expression: MIT" in metadata.splitlines()
    assert "project.license" not in installed.build_output and "BuildBackendWarning" not in installed.build_output


def readme_deploy_command() -> list[str]:
    """The first command of the README's "Deploying" section."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Deploying"):]
    return shlex.split(re.search(r"```sh\n(.*?)\n```", section, re.S).group(1).strip())


@pytest.fixture
def deployed(installed: SimpleNamespace, tmp_path: Path) -> Iterator[SimpleNamespace]:
    """The README's command, run in a directory of one's own with only config.toml in it."""
    project = tmp_path / "project"
    write_config_file(project, "config.toml")
    words = readme_deploy_command()
    env_words = [w for w in words if re.match(r"^[A-Z_]+=", w)]
    program, *args = words[len(env_words):]
    assert program == ".venv/bin/gunicorn" and args == ["-c", "python:bot.web.gunicorn_conf"], words
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ENV_OVERRIDES and k != "PYTHONPATH"}
    env.update(dict(w.split("=", 1) for w in env_words))
    env.update(WVB_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="1", WVB_THREADS="4", PYTHONPATH=str(installed.site),
               PYTHONUNBUFFERED="1")
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", *args], cwd=str(project), env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            wait_until_up(f"http://127.0.0.1:{port}/healthz", proc, ok=lambda status: status == 200)
        except RuntimeError as exc:
            raise AssertionError(f"{exc}:\n{log.read_text(errors='replace')}") from None
        yield SimpleNamespace(url=f"http://127.0.0.1:{port}/wechat", log=log, project=project, env=env)
    finally:
        stop(proc, signal.SIGTERM)


def test_the_readmes_gunicorn_command_deploys_from_a_project_of_ones_own(deployed: SimpleNamespace) -> None:
    from bot.config import load_config
    config = load_config(deployed.project / "config.toml", env={})
    assert BotClient(config, url=deployed.url).text("打开客厅的灯").content == "已打开客厅的灯"
    log = deployed.log.read_text(errors="replace")
    assert "Using worker: gthread" in log and "wechat-voicebot: config config.toml" in log, log
    where = subprocess.run([sys.executable, "-c", "import bot; print(bot.__file__)"], cwd=str(deployed.project),
                           env=deployed.env, capture_output=True, text=True, timeout=30).stdout.strip()
    assert Path(where).is_relative_to(deployed.env["PYTHONPATH"])  # the wheel's bot served, not this checkout's


# -- a project of one's own with files named like the framework's packages (issue 22, item 7) ---------------
def own_project(tmp_path: Path, installed: SimpleNamespace, **files: str) -> tuple[Path, dict[str, str]]:
    project = tmp_path / "project"
    write_config_file(project, "config.toml", handlers={"routers": ["handlers.echo:router"], "search_paths": ["."]})
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text, encoding="utf-8")
    # ``python -S``: no .pth files, so this checkout's editable install (whose finder would resolve any
    # ``handlers.*`` to the checkout) is out of the way; the dependencies come from this environment's packages.
    env = {k: v for k, v in os.environ.items() if k not in ENV_OVERRIDES} | {
        "PYTHONPATH": os.pathsep.join([str(installed.site), sysconfig.get_paths()["purelib"]]),
        "PYTHONIOENCODING": "utf-8"}
    return project, env


def as_installed(*args: str) -> list[str]:
    return [sys.executable, "-S", "-m", "bot", *args]


def test_a_handlers_package_of_ones_own_is_named_with_the_fix(installed: SimpleNamespace, tmp_path: Path) -> None:
    """Run in the project, Python finds the user's handlers/ before the framework's (which declares the [forward]
    and [llm] sections): the config cannot even be read, and the one line says why and what to do."""
    project, env = own_project(tmp_path, installed, **{"handlers/__init__.py": "", "handlers/mine.py": MINE})
    hint = (f"; {project / 'handlers' / '__init__.py'} shadows the wechat-voicebot package 'handlers': rename yours "
            "(e.g. myhandlers) and update [handlers] routers")
    for command in (["check"], ["serve", "--port", str(free_port())]):
        result = subprocess.run(as_installed(*command), cwd=str(project), env=env, capture_output=True, text=True,
                                timeout=60)
        assert (result.returncode, result.stdout) == (2, ""), result.stderr
        assert result.stderr == ("config error: [forward]: the section's declaration 'handlers.forward.config:SECTION' "
                                 "cannot be loaded (ModuleNotFoundError: No module named 'handlers.forward')"
                                 f"{hint} (in config.toml)\n")


def test_a_handlers_package_next_to_the_config_is_named_with_the_fix(installed: SimpleNamespace,
                                                                    tmp_path: Path) -> None:
    """Run from elsewhere, the framework's handlers package is imported first (it declares [forward] and [llm]) and
    the user's own, on the path for the routers ([handlers] search_paths), is the one that cannot be imported."""
    project, env = own_project(tmp_path, installed, **{"handlers/__init__.py": "", "handlers/mine.py": MINE})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    mine = project / "handlers" / "__init__.py"
    shadow = (f"{mine} shadows the wechat-voicebot package 'handlers': Python finds one of the two first, and the "
              "modules of the other cannot be imported (your own, or the built-in routers handlers.echo, "
              "handlers.lights, ...); rename your package (e.g. myhandlers) and update [handlers] routers")
    error = ("[handlers] routers[0]: cannot import module 'handlers.mine' (No module named 'handlers.mine'); "
             f"{mine} is named like the wechat-voicebot package 'handlers', which was imported first: rename yours "
             "(e.g. myhandlers) and update [handlers] routers")
    config = write_config_file(project, "config.toml", handlers={"routers": ["handlers.mine:router"],
                                                                 "search_paths": ["."]})
    check = subprocess.run(as_installed("check", "--config", str(config)), cwd=str(elsewhere), env=env,
                           capture_output=True, text=True, timeout=60)
    assert f"✗ package names: {shadow}" in check.stdout.splitlines(), check.stdout
    assert f"✗ router handlers.mine:router: {error}" in check.stdout.splitlines(), check.stdout
    serve = subprocess.run(as_installed("serve", "--config", str(config), "--port", str(free_port())),
                           cwd=str(elsewhere), env=env, capture_output=True, text=True, timeout=60)
    assert serve.returncode == 2 and serve.stderr.splitlines()[-1] == f"config error: {error}", serve.stderr
    assert f"WARNING bot.loading: {shadow}" in serve.stderr  # at start-up, before the error it explains


def test_a_bot_py_next_to_the_config_is_named_with_the_fix(installed: SimpleNamespace, tmp_path: Path) -> None:
    """``python -m bot`` in that directory fails inside Python before any of the framework runs (README, "Using
    the framework in your own project"); wherever the framework does run, it says which file and what to do."""
    project, env = own_project(tmp_path, installed, **{"bot.py": MINE})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    check = subprocess.run(as_installed("check", "--config", str(project / "config.toml")), cwd=str(elsewhere),
                           env=env, capture_output=True, text=True, timeout=60)
    assert (f"✗ package names: {project / 'bot.py'} shadows the wechat-voicebot package 'bot': `python -m bot` and "
            f"gunicorn started in {project} would import it instead of the framework; rename it (e.g. mybot) and "
            "update [handlers] routers") in check.stdout.splitlines(), check.stdout


MINE = "from bot import Router\nrouter = Router('mine')\n"
