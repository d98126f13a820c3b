"""`voicebridge` command line: serve, call, dial, persona check (docs/reference.md, "Commands")."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bridge.logs import configure_logging, get_logger
from bridge.settings import (
    Settings,
    SettingsError,
    load_settings,
    names_in_force,
    unknown_settings,
)
from bridge.softphone import softphone_enabled

if TYPE_CHECKING:
    from bridge.persona import PersonaBook

DEFAULT_PORT = 8080


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, subcommands and options; `main` parses with it, and the
    reference test reads it, so docs/reference.md cannot drift from what the command takes."""
    parser = argparse.ArgumentParser(prog="voicebridge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the bridge server")
    serve.add_argument(
        "--host", help="bind address (default 127.0.0.1 without TWILIO_AUTH_TOKEN, else 0.0.0.0)"
    )
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})"
    )
    serve.add_argument(
        "--persona", metavar="FILE", help="persona file or folder (overrides PERSONA_FILE)"
    )
    serve.add_argument(
        "--workers",
        type=worker_count,
        default=1,
        metavar="N|auto",
        help="worker processes sharing the port (auto: one per core; default 1, no supervisor)",
    )

    call = sub.add_parser("call", help="place a simulated phone call against a running bridge")
    call.add_argument("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}", help="bridge base URL")
    call.add_argument(
        "--say", action="append", default=[], metavar="TEXT", help="a caller line (repeatable)"
    )
    call.add_argument("--wav", metavar="FILE", help="a WAV file the caller plays after the lines")
    call.add_argument("--dtmf", default="", metavar="DIGITS", help="keys pressed at the end")
    call.add_argument(
        "--record", metavar="FILE", help="save the call as a stereo WAV (caller left, agent right)"
    )
    call.add_argument(
        "--public-url",
        metavar="URL",
        help="the bridge's PUBLIC_URL, which signatures cover (default: PUBLIC_URL, else --url)",
    )

    dial = sub.add_parser("dial", help="place an outbound call through a running bridge")
    dial.add_argument("to", metavar="TO", help="the number to call, E.164 (+12125550100)")
    dial.add_argument("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}", help="bridge base URL")
    dial.add_argument("--persona", metavar="NAME", help="the persona that calls (default: default)")
    dial.add_argument(
        "--from",
        dest="from_",
        metavar="NUMBER",
        help="the caller ID, E.164 (default: the persona's first number)",
    )
    dial.add_argument(
        "--context", metavar="JSON", help="a JSON object the agent is told about the call"
    )
    dial.add_argument(
        "--answer",
        choices=("human", "machine"),
        default="human",
        help="offline (a bridge without Twilio): who answers the simulated call (default human)",
    )

    persona = sub.add_parser("persona", help="persona files")
    persona_sub = persona.add_subparsers(dest="persona_command", required=True)
    check = persona_sub.add_parser("check", help="validate a persona file or folder")
    check.add_argument(
        "file",
        metavar="FILE|DIR",
        help="a persona file, or a folder checked as one set, as PERSONA_FILE is loaded",
    )
    return parser


def worker_count(text: str) -> int:
    """`--workers`: a whole number ≥ 1, or `auto` (one per core)."""
    if text == "auto":
        return max(1, os.cpu_count() or 1)
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or auto") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"{count} is fewer than 1")
    return count


def default_host(settings: Settings) -> str:
    """Unsigned (local) mode listens on loopback only: nobody else can open paid sessions."""
    return "0.0.0.0" if settings.signed else "127.0.0.1"


def load_for_serve(persona: str | None) -> tuple[Settings, PersonaBook] | int:
    """The settings and personas `serve` runs with, or the exit status after saying on stderr
    what is wrong (2). A worker of `serve --workers N` loads them again the same way."""
    from bridge.persona import PersonaBook, PersonaError, load_personas

    try:
        settings = load_settings(**({"PERSONA_FILE": persona} if persona else {}))
    except SettingsError as exc:
        print(f"voicebridge: {exc}", file=sys.stderr)
        # A misspelt name is the usual cause of a missing one: say so here too.
        set_names = names_in_force(os.environ)
        for name, guess in unknown_settings(set_names):
            hint = f"; did you mean {guess}?" if guess else ""
            where = set_names[name]
            print(f"voicebridge: {name} ({where}) is not a setting{hint}", file=sys.stderr)
        return 2
    try:
        book = (
            load_personas(settings.PERSONA_FILE, settings.dialect)
            if settings.PERSONA_FILE
            else PersonaBook.builtin()
        )
    except PersonaError as exc:
        # From the environment, name the variable too: the user may not know it is set.
        given = "" if persona else f" (PERSONA_FILE={settings.PERSONA_FILE})"
        print(f"voicebridge: invalid persona{given}:\n{exc}", file=sys.stderr)
        return 2
    return settings, book


def _serve(args: argparse.Namespace) -> int:

    from bridge.app import create_app
    from bridge.server import DrainingServer, listen_socket, uvicorn_config

    loaded = load_for_serve(args.persona)
    if isinstance(loaded, int):
        return loaded
    settings, book = loaded
    configure_logging(settings.LOG_FORMAT, settings.LOG_LEVEL, settings.secrets())
    log = get_logger("voicebridge")
    set_names = names_in_force(os.environ)
    for name, guess in unknown_settings(set_names):
        log.warning("setting_unknown", name=name, did_you_mean=guess, source=set_names[name])
    for warning in book.warnings():
        log.warning("persona_warning", message=warning)
    host = args.host or default_host(settings)
    if args.workers > 1:
        return _serve_workers(args, settings, book, host)
    app = create_app(settings, book)
    try:
        # Bound before anything says the bridge is answering: a busy port is the only news.
        listener = listen_socket(host, args.port)
    except OSError as exc:
        return _cannot_listen(host, args.port, exc)
    _say_serving(settings, book, host, args.port)
    config = uvicorn_config(app, host, args.port)
    server = DrainingServer(config, app.state.calls, settings.DRAIN_TIMEOUT_SECONDS)
    server.run(sockets=[listener])
    return 0


def _serve_workers(
    args: argparse.Namespace, settings: Settings, book: PersonaBook, host: str
) -> int:
    """`serve --workers N`, N > 1: this process supervises N workers (`bridge.workers`)."""
    from bridge.shared.host import StateHostHook
    from bridge.workers import Supervisor, listen_sockets, worker_command

    try:
        sockets = listen_sockets(host, args.port, args.workers)
    except OSError as exc:
        return _cannot_listen(host, args.port, exc)
    _say_serving(settings, book, host, args.port)

    def command(index: int, fd: int) -> list[str]:
        return worker_command(index, fd, host, args.port, args.persona)

    hooks = [] if settings.REDIS_URL is not None else [StateHostHook()]
    worker_env: dict[str, str] = {}
    if softphone_enabled(settings):
        # Its page, its call and its live transcript are three connections, which the
        # kernel spreads over the workers, and each worker knows its own calls only.
        get_logger("voicebridge").warning(
            "softphone_off",
            reason="the softphone needs one worker: run `voicebridge serve` without --workers",
        )
        worker_env["SOFTPHONE_ENABLED"] = "false"
    return Supervisor(
        sockets, command, settings.DRAIN_TIMEOUT_SECONDS, worker_env=worker_env, hooks=hooks
    ).run()


def _cannot_listen(host: str, port: int, exc: OSError) -> int:
    print(f"voicebridge: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
    return 1


def _say_serving(settings: Settings, book: PersonaBook, host: str, port: int) -> None:
    """The start-up lines: where the bridge answers, and what a person should know."""
    log = get_logger("voicebridge")
    log.info(
        "serving",
        url=f"http://{host}:{port}",
        provider=settings.provider,
        audio=settings.REALTIME_AUDIO,
        persona=book.default.name,
        personas=list(book.names),
        webhook=settings.public_http_url("/incoming-call") or f"http://{host}:{port}/incoming-call",
    )
    if not settings.signed:
        log.warning(
            "unauthenticated_mode",
            message="TWILIO_AUTH_TOKEN is not set: webhooks and streams are not authenticated; "
            "listening on loopback only unless --host says otherwise",
        )
    if settings.provider == "local":
        log.warning(
            "no_provider_key",
            message="no Realtime provider configured: calls are answered by the built-in local "
            "engine; set OPENAI_API_KEY (OpenAI) or AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_API_KEY "
            "and AZURE_OPENAI_DEPLOYMENT (Azure) for a real model",
        )
        _print_how_to_call(host, port, softphone=softphone_enabled(settings))


def _print_how_to_call(host: str, port: int, *, softphone: bool) -> None:
    """For a person at the terminal (stderr: stdout carries the JSON log): calls that work
    with no key and no network, with the default persona."""
    where = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{where}:{port}"
    url = "" if port == DEFAULT_PORT and where == "127.0.0.1" else f" --url {base}"
    lines = [
        "",
        f"  voicebridge is answering calls with the local engine on {base} (no network needed)",
        "  try it from another terminal:",
        f"    voicebridge call{url} --say 'hello' --say 'goodbye' --record call.wav"
        "   # a chat; goodbye hangs up",
        f"    voicebridge call{url} --dtmf 12#   # the keypad",
        f"    voicebridge call{url} --say 'operator'   # a transfer: offline the "
        "agent says it cannot; TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN connect it",
    ]
    if softphone:
        lines.append(f"  or talk to it: open {base}/softphone in a browser")
    print("\n".join([*lines, ""]), file=sys.stderr, flush=True)


def _call(args: argparse.Namespace) -> int:
    from bridge.settings import CallerSettings
    from bridge.sim.cli import call_command

    settings = CallerSettings()
    token = settings.TWILIO_AUTH_TOKEN.get_secret_value() if settings.TWILIO_AUTH_TOKEN else None
    public_url = args.public_url or settings.PUBLIC_URL
    return call_command(args.url, args.say, args.wav, args.dtmf, args.record, token, public_url)


def _dial(args: argparse.Namespace) -> int:
    from bridge.dial_cli import dial_command
    from bridge.settings import DialerSettings

    key = DialerSettings().VOICEBRIDGE_API_KEY
    secret = key.get_secret_value() if key is not None else None
    return dial_command(
        args.url, args.to, args.persona, args.from_, args.context, secret, args.answer
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "call":
        return _call(args)
    if args.command == "dial":
        return _dial(args)
    if args.command == "persona":
        from bridge.persona import check_command

        return check_command(args.file)
    return 2
