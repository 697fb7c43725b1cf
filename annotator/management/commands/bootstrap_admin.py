"""Create the first admin account with a random password, printed once.

Run by ``make run``. Does nothing when a superuser already exists, so a password is never
reset behind anyone's back and never fixed in code.
"""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from annotator.models import Membership, Project, Role


class Command(BaseCommand):
    help = "Create an 'admin' superuser with a random password on first run and print how to log in."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options):
        user_model = get_user_model()
        if user_model.objects.filter(is_superuser=True).exists():
            self.stdout.write("An admin account exists already; log in with its password "
                              "(forgotten? `python manage.py changepassword admin`).")
            return
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser(username=username, email="", password=password)
        self._grant_existing_projects(username)
        self.stdout.write(self.style.SUCCESS(
            f"\nCreated the admin account. Log in at /login/ with\n"
            f"    username: {username}\n    password: {password}\n"
            f"This password is shown only once.\n"
        ))

    def _grant_existing_projects(self, username: str) -> None:
        """Make the new admin an admin member of every project (the demo seeded before it)."""
        user = get_user_model().objects.get(username=username)
        for project in Project.objects.all():
            Membership.objects.get_or_create(project=project, user=user, defaults={"role": Role.ADMIN})
