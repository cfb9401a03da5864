"""Creating or migrating a store and its first administrator."""

from __future__ import annotations

from sqlalchemy import func, select

from pointsman.services.tokens import create_token
from pointsman.store import models
from pointsman.store.db import Store
from pointsman.store.migrate import upgrade


def ensure_admin(store: Store, email: str, name: str | None = None) -> str:
    """The id of the org admin with this email, created if missing."""
    key = email.strip().lower()
    with store.write() as session:
        user = session.scalar(select(models.User).where(models.User.email_key == key))
        if user is None:
            user = models.User(
                email=email.strip(),
                email_key=key,
                display_name=(name or email.split("@")[0]).strip(),
                is_org_admin=True,
            )
            session.add(user)
        else:
            user.is_org_admin = True
            user.active = True
        session.flush()
        return user.id


def initialize(store: Store, admin_email: str, admin_name: str | None = None) -> str:
    """Migrate the store, make sure the admin exists, and return a new
    organization key's token."""
    upgrade(store)
    admin_id = ensure_admin(store, admin_email, admin_name)
    with store.read() as session:
        count = session.scalar(select(func.count()).select_from(models.ApiToken)) or 0
    created = create_token(
        store, name=f"init key {count + 1}", kind="organization", user_id=admin_id
    )
    return str(created["token"])
