"""Command line: ``python -m bot run``, ``python -m bot db upgrade``, ..."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

from bot.settings import Settings, SettingsError, get_settings

log = logging.getLogger("bot")


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level_number,
        format="%(asctime)s %(levelname)-8s %(name)s: %(message)s",
    )
    # discord.py's gateway chatter is noise at INFO.
    quiet = max(settings.log_level_number, logging.WARNING)
    for name in ("discord.gateway", "alembic.runtime.plugins"):
        logging.getLogger(name).setLevel(quiet)


def _cmd_run(settings: Settings, _args: argparse.Namespace) -> int:
    if settings.discord_token is None or not settings.discord_token.get_secret_value().strip():
        print(
            "error: DISCORD_TOKEN is not set; put the bot token from the Discord developer "
            "portal in the environment or in .env",
            file=sys.stderr,
        )
        return 2
    from bot.app import run_bot

    return asyncio.run(run_bot(settings))


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
    from bot.inference.loading import download_models

    return 0 if download_models(settings) else 1


Handler = Callable[[Settings, argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(
        prog="discord-hf-bot",
        description="A Discord bot that runs Hugging Face models in-process. "
        "Configuration comes from the environment and .env (see README).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="apply pending migrations and start the bot")
    run.set_defaults(handler=_cmd_run)

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
