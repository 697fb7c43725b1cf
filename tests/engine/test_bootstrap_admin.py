"""The first admin gets a random password printed once; later runs never reset it."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from annotator.models import Membership, Project, Role

pytestmark = pytest.mark.django_db


def run_bootstrap() -> str:
    out = io.StringIO()
    call_command("bootstrap_admin", stdout=out)
    return out.getvalue()


def test_first_run_creates_admin_with_a_printed_random_password_and_demo_membership():
    project = Project.objects.create(name="Demo", slug="demo")
    output = run_bootstrap()
    password = re.search(r"password: (\S+)", output).group(1)
    assert len(password) >= 12
    user = authenticate(username="admin", password=password)
    assert user is not None and user.is_superuser
    assert Membership.objects.get(project=project, user=user).role == Role.ADMIN

    second = run_bootstrap()
    assert "password:" not in second and "exists already" in second
    assert authenticate(username="admin", password=password) is not None
    assert get_user_model().objects.count() == 1


def test_passwords_differ_between_installations():
    first = re.search(r"password: (\S+)", run_bootstrap()).group(1)
    get_user_model().objects.all().delete()
    second = re.search(r"password: (\S+)", run_bootstrap()).group(1)
    assert first != second
