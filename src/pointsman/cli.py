"""The ``pointsman`` command: init, api-key create, serve, demo."""

from __future__ import annotations

import gc
import logging
import sys
from pathlib import Path

import click
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from pointsman.config import Settings
from pointsman.crypto import SecretBox, load_keys
from pointsman.errors import PointsmanError
from pointsman.services.container import Services
from pointsman.services.setup import initialize
from pointsman.services.tokens import create_token
from pointsman.store import models
from pointsman.store.db import Store, normalise_url
from pointsman.store.migrate import check_current

database_url_option = click.option(
    "--database-url",
    envvar="POINTSMAN_DATABASE_URL",
    default=None,
    help="SQLAlchemy URL of the metadata store "
    "(default: sqlite file under ./.pointsman/).",
)


def open_services(database_url: str | None) -> Services:
    return Services.open(Settings.from_env(database_url))


@click.group()
@click.option("--log-level", default="INFO", show_default=True)
def main(log_level: str) -> None:
    """pointsman: one front end, many databases, every query on the right one."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Each HTTP call of the demo's client is printed by the demo itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The pool's own messages are raw libpq text; ours say the same, scrubbed.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


@main.command()
@database_url_option
@click.option("--admin-email", required=True)
@click.option("--admin-name", default=None)
def init(database_url: str | None, admin_email: str, admin_name: str | None) -> None:
    """Create or migrate the store, make sure the admin exists, print a new
    organization API key (alone on the last line)."""
    services = open_services(database_url)
    try:
        token = initialize(services.store, admin_email, admin_name)
    finally:
        services.close()
    click.echo(f"Store ready: {services.store.describe()}")
    click.echo(f"Organization API key for {admin_email} (shown once):")
    click.echo(token)


@main.group("api-key")
def api_key() -> None:
    """Manage API keys."""


@api_key.command("create")
@database_url_option
@click.option("--name", required=True)
@click.option("--user", "user_email", default=None, help="Make a PAT for this user.")
def api_key_create(database_url: str | None, name: str, user_email: str | None) -> None:
    """A new organization key, or a personal access token for --user."""
    services = open_services(database_url)
    try:
        check_current(services.store)
        if user_email is None:
            owner = _first_admin(services)
            kind = "organization"
        else:
            owner = _user_id(services, user_email)
            kind = "personal"
        created = create_token(services.store, name=name, kind=kind, user_id=owner)
    except PointsmanError as exc:
        raise click.ClickException(exc.detail) from None
    finally:
        services.close()
    click.echo(f"{kind} token {created['name']} ({created['id']}), shown once:")
    click.echo(created["token"])


def _user_id(services: Services, email: str) -> str:
    with services.store.read() as session:
        user_id = session.scalar(
            select(models.User.id).where(models.User.email_key == email.lower())
        )
    if user_id is None:
        raise click.ClickException(f"No user with email {email}")
    return user_id


def _first_admin(services: Services) -> str:
    with services.store.read() as session:
        user_id = session.scalar(
            select(models.User.id)
            .where(models.User.is_org_admin.is_(True), models.User.active.is_(True))
            .order_by(models.User.created_at)
        )
    if user_id is None:
        raise click.ClickException("No org admin yet: run 'pointsman init' first")
    return user_id


@main.command()
@database_url_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
def serve(database_url: str | None, host: str, port: int) -> None:
    """Run the HTTP server."""
    import uvicorn

    from pointsman.api.app import create_app

    settings = Settings.from_env(database_url)
    store = open_checked_store(settings)
    box = SecretBox(load_keys(settings.secret_keys, settings.data_dir))
    services = Services(settings=settings, store=store, secrets=box)
    app = create_app(services)
    settle_garbage_collector()
    uvicorn.run(app, host=host, port=port, log_level="info")


# Every query allocates a few hundred objects that die young; Python's
# default (a collection every 700 allocations) spends more time scanning than
# they cost, and its full collections pause the event loop for milliseconds:
# at 32 clients that tripled p99. Collecting less often, with what was loaded
# at start-up left out of every scan, halved it (bench/run.py).
GC_THRESHOLDS = (20_000, 50, 100)


def settle_garbage_collector() -> None:
    """Leave what start-up loaded out of collections, and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def open_checked_store(settings: Settings) -> Store:
    """The store, refusing (without creating anything) one that is missing,
    unreachable or not at the newest migration."""
    url = make_url(normalise_url(settings.database_url))
    is_file = url.get_backend_name() == "sqlite" and url.database
    if is_file and not Path(str(url.database)).exists():
        raise click.ClickException(
            f"No metadata store at {url.database}: run 'pointsman init' first"
        )
    store = Store(settings.database_url)
    try:
        check_current(store)
    except PointsmanError as exc:
        store.dispose()
        raise click.ClickException(exc.detail) from None
    except SQLAlchemyError as exc:
        store.dispose()
        raise click.ClickException(
            f"Cannot reach the metadata store {store.describe()} ({type(exc).__name__})"
        ) from None
    return store


@main.command()
@click.option("--keep", is_flag=True, help="Keep the throwaway directory.")
def demo(keep: bool) -> None:
    """Run the connection-environments walkthrough end to end on embedded
    databases and show where each user's query went."""
    from pointsman.demo import run_demo

    logging.getLogger().setLevel(logging.WARNING)
    sys.exit(run_demo(keep=keep))


if __name__ == "__main__":
    main()
