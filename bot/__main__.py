"""Command line: ``python -m bot run``, ``python -m bot db upgrade``, ..."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

from bot.settings import Settings, SettingsError, get_settings

log = logging.getLogger("bot")

TOKEN_HELP = (
    "error: DISCORD_TOKEN is not set. Get one at https://discord.com/developers/applications "
    "(your application > Bot > Reset Token) and put it in the environment "
    "(DISCORD_TOKEN=... make run) or in a .env file."
)
EPILOG = """\
quick start, from a clone of the repository:
  make run     set up .venv (torch for this machine, the project, the bundled chat model),
               then start the bot with the embedded defaults
  make test    set up .venv, then run the whole test suite
  make lint    ruff and mypy, as CI (.ci/run) runs them with make lint test
  make web     set up .venv with the web extra, then serve the web app (127.0.0.1:7860)

the token: https://discord.com/developers/applications > your application > Bot >
Reset Token; then DISCORD_TOKEN in the environment or in .env. Every other setting has a
default (README, Configuration). Hub models not downloaded yet are named, with their
sizes, when `run` starts; WARMUP=true loads them at start instead of on first use.
"""


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level_number,
        format="%(asctime)s %(levelname)-8s %(name)s: %(message)s",
    )
    # discord.py's gateway chatter is noise at INFO.
    quiet = max(settings.log_level_number, logging.WARNING)
    for name in ("discord.gateway", "alembic.runtime.plugins"):
        logging.getLogger(name).setLevel(quiet)


def _cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    if settings.discord_token is None or not settings.discord_token.get_secret_value().strip():
        print(TOKEN_HELP, file=sys.stderr)
        return 2
    _log_models_to_download(settings)
    import aiohttp

    from bot.app import run_bot

    if args.web and not _web_ready(settings):
        return 2
    try:
        return asyncio.run(run_bot(settings, web=args.web))
    except aiohttp.ClientConnectionError as error:
        print(
            f"error: cannot reach Discord at {settings.discord_api_base}: {error}", file=sys.stderr
        )
        return 1


WEB_EXTRA_HELP = (
    "error: the web app needs the `web` extra (gradio): pip install 'discord-hf-bot[web]' "
    "(from a clone: .venv/bin/pip install -e '.[web]')"
)


def _web_ready(settings: Settings) -> bool:
    """Whether the web app can start: gradio is installed and the address is safe to serve."""
    from importlib import util as importlib_util

    from bot.web.access import WebSetupError, check_exposure

    if importlib_util.find_spec("gradio") is None:
        print(WEB_EXTRA_HELP, file=sys.stderr)
        return False
    try:
        check_exposure(settings)
    except WebSetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return False
    return True


def _cmd_web(settings: Settings, _args: argparse.Namespace) -> int:
    if not _web_ready(settings):
        return 2
    _log_models_to_download(settings)
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from bot.redaction import mask_url_passwords, safe_database_url
    from bot.web.access import WebSetupError
    from bot.web.server import run_web

    try:
        return asyncio.run(run_web(settings))
    except WebSetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (SQLAlchemyError, OSError, CommandError) as error:
        # One line, and never the password of DATABASE_URL (as `run` reports it).
        reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        print(
            f"error: cannot use the database {safe_database_url(settings.database_url)}: "
            f"{mask_url_passwords(reason)}",
            file=sys.stderr,
        )
        return 1


def _log_models_to_download(settings: Settings) -> None:
    from bot.inference.engine import EngineConfig
    from bot.inference.footprint import first_start_message

    models = EngineConfig.from_settings(settings).models
    message = first_start_message(models.items(), warmup=settings.warmup)
    if message:
        log.info("%s", message)


def _cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from bot.storage import migrate

    migrate.upgrade(settings.database_url, args.revision)
    print(f"database is at {args.revision}")
    return 0


def _cmd_db_downgrade(settings: Settings, args: argparse.Namespace) -> int:
    from bot.storage import migrate

    migrate.downgrade(settings.database_url, args.revision)
    print(f"database is at {args.revision}")
    return 0


def _cmd_models_download(settings: Settings, _args: argparse.Namespace) -> int:
    from bot.progress import show_hub_progress

    # Before torch or the hub import tqdm, which reads TQDM_DISABLE once.
    show_hub_progress(sys.stderr)  # the hub's own bars on a terminal; one line per model
    from bot.inference.loading import download_models

    return 0 if download_models(settings) else 1


Handler = Callable[[Settings, argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(
        prog="discord-hf-bot",
        description="A Discord bot that runs Hugging Face models in-process. "
        "Configuration comes from the environment and .env (see README).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="apply pending migrations and start the bot")
    run.add_argument(
        "--web",
        action="store_true",
        help="also serve the web app (WEB_HOST, WEB_PORT) with the bot's models",
    )
    run.set_defaults(handler=_cmd_run)

    web = commands.add_parser(
        "web",
        help="serve the web app alone (chat, analysis, dashboard) on WEB_HOST:WEB_PORT",
    )
    web.set_defaults(handler=_cmd_web)

    db = commands.add_parser("db", help="database schema migrations")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_commands.add_parser("upgrade", help="apply migrations (default: all)")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(handler=_cmd_db_upgrade)
    downgrade = db_commands.add_parser("downgrade", help="revert to a revision (e.g. -1, base)")
    downgrade.add_argument("revision")
    downgrade.set_defaults(handler=_cmd_db_downgrade)

    models = commands.add_parser("models", help="model files")
    models_commands = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    download = models_commands.add_parser(
        "download", help="fetch every configured hub model into the cache (HF_HOME)"
    )
    download.set_defaults(handler=_cmd_models_download)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bot`` and ``discord-hf-bot``."""
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    _configure_logging(settings)
    handler: Handler = args.handler
    try:
        return handler(settings, args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
