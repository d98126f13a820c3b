"""`voicebridge` command line: serve, call, persona check (interface.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bridge.logs import configure_logging, get_logger
from bridge.settings import Settings, SettingsError, load_settings

DEFAULT_PORT = 8080


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicebridge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the bridge server")
    serve.add_argument(
        "--host", help="bind address (default 127.0.0.1 without TWILIO_AUTH_TOKEN, else 0.0.0.0)"
    )
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--persona", metavar="FILE", help="persona file (overrides PERSONA_FILE)")

    persona = sub.add_parser("persona", help="persona files")
    persona_sub = persona.add_subparsers(dest="persona_command", required=True)
    check = persona_sub.add_parser("check", help="validate a persona file or folder")
    check.add_argument("file", metavar="FILE")
    return parser


def default_host(settings: Settings) -> str:
    """Unsigned (local) mode listens on loopback only: nobody else can open paid sessions."""
    return "0.0.0.0" if settings.signed else "127.0.0.1"


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from bridge.app import create_app
    from bridge.persona import PersonaBook, PersonaError, load_personas
    from bridge.server import DrainingServer

    try:
        settings = load_settings(**({"PERSONA_FILE": args.persona} if args.persona else {}))
    except SettingsError as exc:
        print(f"voicebridge: {exc}", file=sys.stderr)
        return 2
    try:
        book = (
            load_personas(settings.PERSONA_FILE) if settings.PERSONA_FILE else PersonaBook.builtin()
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
            message="no Realtime provider configured: set OPENAI_API_KEY (OpenAI) or "
            "AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_API_KEY and AZURE_OPENAI_DEPLOYMENT (Azure); "
            "until then calls hear an apology",
        )
    config = uvicorn.Config(
        app,
        host=host,
        port=args.port,
        ws="websockets-sansio",
        ws_max_size=64 * 1024,
        ws_per_message_deflate=False,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    server = DrainingServer(config, app.state.bridge, settings.DRAIN_TIMEOUT_SECONDS)
    server.run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "persona":
        from bridge.persona import check_command

        return check_command(args.file)
    return 2
