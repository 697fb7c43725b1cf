"""``manage.py api_token USERNAME [--name NAME] [--expires-days N]``: make an API token, printed as the last word."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotator.services.tokens import issue_token


class Command(BaseCommand):
    help = "Make an API token for a person (Authorization: Bearer <token>). The token is the last word printed."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="manage.py api_token", help="What the token is for (shown on /account/).")
        parser.add_argument("--expires-days", type=float, default=None, help="Expire after N days (default: never).")

    def handle(self, *args, username: str, name: str, expires_days: float | None, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None or not user.is_active:
            raise CommandError(f"No active account called {username!r}.")
        try:
            row, token = issue_token(user, name, expires_days=expires_days)
        except ValueError as error:
            raise CommandError(str(error)) from None
        expiry = f", expires {row.expires_at:%Y-%m-%d %H:%M} UTC" if row.expires_at else ""
        self.stdout.write(f"API token “{row.name}” for {username}{expiry} (shown once, keep it secret):")
        self.stdout.write(token)
