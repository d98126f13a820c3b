"""`voicebridge serve` as a new user starts it: misspelt variables, the case of values, a
missing persona file, a busy port, and a clean exit (no worker tracebacks, no leaked
semaphores) when stopped with SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bridge import cli
from bridge.settings import Settings, names_in_force, unknown_settings
from bridge.sim.cli import run_call
from tests.conftest import free_port, make_settings

ROOT = Path(__file__).resolve().parents[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any of the product's variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not unknown_settings([k]) and k not in FIELDS}
    env.update({"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **extra})
    return env


FIELDS = set(Settings.model_fields)


def test_misspelt_names_are_found_with_the_closest_known_one() -> None:
    found = unknown_settings(
        [
            *("OPENAI_KEY", "REALTIME_AUDO", "openai_api_key", "PUBLIC_ULR", "TWILIO_REGION"),
            *("PATH", "HOME", "HOSTNAME", "LOGNAME", "OPENAI_API_KEY", "LANG", "TERM"),
        ]
    )
    assert found == [
        ("OPENAI_KEY", "OPENAI_API_KEY"),
        ("PUBLIC_ULR", "PUBLIC_URL"),
        ("REALTIME_AUDO", "REALTIME_AUDIO"),
        ("TWILIO_REGION", None),  # ours by its prefix, but like none of our names
        ("openai_api_key", "OPENAI_API_KEY"),  # names are case-sensitive
    ]


def test_the_names_come_from_the_environment_and_the_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("TAVILY_KEY=tvly-secret-value\nLOG_LEVEL=debug\n", encoding="utf-8")
    names = names_in_force(["PATH", "LOG_LEVEL"], str(env_file))
    assert names == {"PATH": "environment", "LOG_LEVEL": "environment", "TAVILY_KEY": str(env_file)}
    assert unknown_settings(names) == [("TAVILY_KEY", "TAVILY_API_KEY")]


@pytest.mark.parametrize("value", ["OpenAI", "OPENAI", " openai "])
def test_the_provider_takes_any_case_as_the_audio_mode_does(value: str) -> None:
    settings = make_settings(
        REALTIME_PROVIDER=value, OPENAI_API_KEY="sk-test-0123456789", REALTIME_AUDIO="PCMU"
    )
    assert (settings.provider, settings.REALTIME_AUDIO) == ("openai", "pcmu")


def test_a_missing_persona_file_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PERSONA_FILE", "personas/mine.yaml")
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "voicebridge: invalid persona (PERSONA_FILE=personas/mine.yaml):\n"
        "personas/mine.yaml: no such file or directory\n"
    )


def test_a_setting_that_fails_names_the_misspelling_that_caused_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REALTIME_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_KEY", "sk-misspelt-0123456789")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "REALTIME_PROVIDER=openai needs OPENAI_API_KEY" in err[1]
    assert err[-1] == (
        "voicebridge: OPENAI_KEY (environment) is not a setting; did you mean OPENAI_API_KEY?"
    )
    assert "sk-misspelt" not in "\n".join(err)


def test_a_busy_port_is_the_only_news_and_misspellings_are_logged(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("REALTIME_AUDO=pcmu\n", encoding="utf-8")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "bridge", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env=clean_env(OPENAI_KEY="sk-misspelt-0123456789"),
        )
    assert done.returncode == 1
    assert (
        done.stderr == f"voicebridge: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )
    events = [json.loads(line) for line in done.stdout.splitlines()]
    unknown = [
        (e["name"], e["did_you_mean"], e["source"])
        for e in events
        if e["event"] == "setting_unknown"
    ]
    assert unknown == [
        ("OPENAI_KEY", "OPENAI_API_KEY", "environment"),
        ("REALTIME_AUDO", "REALTIME_AUDIO", ".env"),
    ]
    assert "serving" not in [e["event"] for e in events]
    assert "sk-misspelt" not in done.stdout


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_serve_stops_without_tracebacks_or_leaked_semaphores(tmp_path: Path, how: str) -> None:
    """The local engine's recogniser runs in spawned worker processes; stopping the bridge
    (SIGTERM from an orchestrator, or Ctrl-C, which signals the whole process group) after a
    call they decoded must end them quietly."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=clean_env(),
        start_new_session=True,  # its own process group, as a terminal's job
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "serve did not start"
            time.sleep(0.1)
        report = asyncio.run(run_call(base, says=["hello"], out=lambda _line: None))
        assert report.turns == 1 and len(report.reply_latencies_s) == 1
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    assert "leaked" not in err and "Traceback" not in err and "KeyboardInterrupt" not in err, err


def test_the_banner_suggests_calls_that_parse_and_work_offline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli._print_how_to_call("127.0.0.1", 8181, softphone=True)
    err = capsys.readouterr().err
    lines = [line.split("   #")[0] for line in err.splitlines() if "voicebridge call" in line]
    calls = [shlex.split(line) for line in lines]
    assert len(calls) == 3
    parser = cli.build_parser()
    parsed = [parser.parse_args(words[1:]) for words in calls]
    assert all(args.url == "http://127.0.0.1:8181" for args in parsed)
    # A chat that hangs up, the keypad, a transfer request: nothing that needs a network.
    assert [args.say for args in parsed] == [["hello", "goodbye"], [], ["operator"]]
    assert parsed[1].dtmf == "12#"
    assert "weather" not in err and "http://127.0.0.1:8181/softphone" in err
