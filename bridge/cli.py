"""`voicebridge` command line: serve, call, persona check (docs/reference.md, "Commands")."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bridge.logs import configure_logging, get_logger
from bridge.settings import Settings, SettingsError, load_settings
from bridge.softphone import softphone_enabled

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

    call = sub.add_parser("call", help="place a simulated phone call against a running bridge")
    call.add_argument("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}", help="bridge base URL")
    call.add_argument(
        "--say", action="append", default=[], metavar="TEXT", help="a caller line (repeatable)"
    )
    call.add_argument("--wav", metavar="FILE", help="a WAV file the caller plays after the lines")
    call.add_argument("--dtmf", default="", metavar="DIGITS", help="keys pressed at the end")
    call.add_argument("--record", metavar="FILE", help="save what the caller heard (WAV)")

    persona = sub.add_parser("persona", help="persona files")
    persona_sub = persona.add_subparsers(dest="persona_command", required=True)
    check = persona_sub.add_parser("check", help="validate a persona file or folder")
    check.add_argument(
        "file",
        metavar="FILE|DIR",
        help="a persona file, or a folder checked as one set, as PERSONA_FILE is loaded",
    )
    return parser


def default_host(settings: Settings) -> str:
    """Unsigned (local) mode listens on loopback only: nobody else can open paid sessions."""
    return "0.0.0.0" if settings.signed else "127.0.0.1"


def _serve(args: argparse.Namespace) -> int:

    from bridge.app import create_app
    from bridge.persona import PersonaBook, PersonaError, load_personas
    from bridge.server import DrainingServer, uvicorn_config

    try:
        settings = load_settings(**({"PERSONA_FILE": args.persona} if args.persona else {}))
    except SettingsError as exc:
        print(f"voicebridge: {exc}", file=sys.stderr)
        return 2
    try:
        book = (
            load_personas(settings.PERSONA_FILE, settings.dialect)
            if settings.PERSONA_FILE
            else PersonaBook.builtin()
        )
    except PersonaError as exc:
        print(f"voicebridge: invalid persona:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.LOG_FORMAT, settings.LOG_LEVEL, settings.secrets())
    log = get_logger("voicebridge")
    for warning in book.warnings():
        log.warning("persona_warning", message=warning)
    host = args.host or default_host(settings)
    app = create_app(settings, book)
    log.info(
        "serving",
        url=f"http://{host}:{args.port}",
        provider=settings.provider,
        audio=settings.REALTIME_AUDIO,
        persona=book.default.name,
        personas=list(book.names),
        webhook=settings.public_http_url("/incoming-call")
        or f"http://{host}:{args.port}/incoming-call",
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
        _print_how_to_call(host, args.port, softphone=softphone_enabled(settings))
    config = uvicorn_config(app, host, args.port)
    server = DrainingServer(config, app.state.calls, settings.DRAIN_TIMEOUT_SECONDS)
    server.run()
    return 0


def _print_how_to_call(host: str, port: int, *, softphone: bool) -> None:
    """For a person at the terminal (stderr: stdout carries the JSON log)."""
    where = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{where}:{port}"
    lines = [
        "",
        f"  voicebridge is answering calls with the local engine on {base}",
        f"  place a test call:  voicebridge call --url {base} "
        "--say 'what is the weather in Paris' --record call.wav",
    ]
    if softphone:
        lines.append(f"  or talk to it:      open {base}/softphone in a browser")
    print("\n".join([*lines, ""]), file=sys.stderr, flush=True)


def _call(args: argparse.Namespace) -> int:
    from bridge.sim.cli import call_command

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"voicebridge: {exc}", file=sys.stderr)
        return 2
    token = settings.TWILIO_AUTH_TOKEN.get_secret_value() if settings.TWILIO_AUTH_TOKEN else None
    return call_command(args.url, args.say, args.wav, args.dtmf, args.record, token)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "call":
        return _call(args)
    if args.command == "persona":
        from bridge.persona import check_command

        return check_command(args.file)
    return 2
