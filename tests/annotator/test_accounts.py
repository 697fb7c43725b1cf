"""Accounts made in the app: create with a one-time invite link, set the password (validators apply),
reset, deactivate; the rules on who may change whom."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotator.models import Masklet, Role, Video
from annotator.services import accounts

NEW_PASSWORD = "tangerine-orbit-4711"


def _create(client: Client, **data) -> tuple[object, str]:
    response = client.post(reverse("people"), {"action": "create", **data}, follow=True)
    assert response.status_code == 200
    return response, response.content.decode()


def _link(html: str) -> str:
    match = re.search(r'class="invite-link" readonly value="https?://[^/]+(/invite/[^"]+)"', html)
    assert match, "no invite link on the page"
    return match.group(1)


def _set_password(link: str, password: str, confirm: str | None = None) -> tuple[Client, object]:
    client = Client()
    form_url = client.get(link)["Location"]  # Django moves the token into the session first
    response = client.post(form_url, {"new_password1": password, "new_password2": confirm or password})
    return client, response


def test_site_admin_creates_an_account_and_the_link_sets_the_password_once(make_user):
    admin = make_user("lead", staff=True)
    client = Client()
    client.force_login(admin)
    _, html = _create(client, username="alice", email="alice@example.org")
    alice = get_user_model().objects.get(username="alice")
    assert alice.is_active and not alice.has_usable_password() and alice.email == "alice@example.org"
    link = _link(html)

    invited, response = _set_password(link, NEW_PASSWORD)
    assert response.status_code == 302 and response["Location"] == reverse("project-list")
    assert invited.get(reverse("project-list")).status_code == 200  # signed in as alice
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)
    again = Client().get(link, follow=True)
    assert b'id="invalid-link"' in again.content  # one-time


def test_password_validators_apply_on_the_invite_page(make_user):
    client = Client()
    client.force_login(make_user("lead", staff=True))
    _, html = _create(client, username="bob")
    _, response = _set_password(_link(html), "12345678")
    assert response.status_code == 200
    assert "This password is too common" in response.content.decode()
    assert not get_user_model().objects.get(username="bob").has_usable_password()


def test_reset_voids_the_old_password_and_earlier_links(make_user, password):
    admin, carol = make_user("lead", staff=True), make_user("carol")
    client = Client()
    client.force_login(admin)
    first = _link(client.post(reverse("people"), {"action": "reset", "user_id": carol.id}, follow=True)
                  .content.decode())
    carol.refresh_from_db()
    assert not carol.check_password(password)
    second = _link(client.post(reverse("people"), {"action": "reset", "user_id": carol.id}, follow=True)
                   .content.decode())
    assert first != second
    assert b'id="invalid-link"' in Client().get(first, follow=True).content
    _, response = _set_password(second, NEW_PASSWORD)
    assert response.status_code == 302


def test_deactivated_people_cannot_sign_in_and_lose_their_locks(make_user, make_project, password):
    admin, dan = make_user("lead", staff=True), make_user("dan")
    project = make_project(members={dan: Role.ANNOTATOR})
    video = Video.objects.create(project=project, name="v", status=Video.Status.READY)
    masklet = Masklet.objects.create(video=video, object_id=1, lock_holder=dan,
                                     lock_expires_at=timezone.now() + timezone.timedelta(minutes=5))
    dans_browser = Client()
    dans_browser.force_login(dan)
    client = Client()
    client.force_login(admin)
    response = client.post(reverse("people"), {"action": "deactivate", "user_id": dan.id}, follow=True)
    assert "dan is deactivated" in response.content.decode()
    masklet.refresh_from_db()
    assert masklet.lock_holder_id is None
    assert dans_browser.get(reverse("project-list"))["Location"].startswith(reverse("login"))  # signed out
    assert not Client().login(username="dan", password=password)
    client.post(reverse("people"), {"action": "activate", "user_id": dan.id})
    assert Client().login(username="dan", password=password)


@pytest.mark.parametrize(("username", "email", "message"), [
    ("alice", "", "exists already"),
    ("ALICE", "", "exists already"),
    ("new", "alice@example.com", "exists already"),
    ("has space", "", "Username"),
    ("", "", "Username"),
    ("ok", "not-an-address", "E-mail"),
])
def test_bad_accounts_are_refused_with_the_reason(make_user, username, email, message):
    admin = make_user("lead", staff=True)
    make_user("alice")
    with pytest.raises(accounts.AccountError, match=message):
        accounts.create_account(admin, username, email)


def test_who_may_change_whom(make_user):
    staff, root = make_user("lead", staff=True), make_user("root", superuser=True)
    with pytest.raises(accounts.AccountError, match="superuser"):
        accounts.reset_password(staff, root.id)
    with pytest.raises(accounts.AccountError, match="site admins"):
        accounts.create_account(staff, "boss2", staff=True)
    with pytest.raises(accounts.AccountError, match="your own"):
        accounts.set_active(staff, staff.id, False)
    assert accounts.create_account(root, "boss2", staff=True).is_staff


def test_a_deactivated_persons_link_is_void(make_user):
    admin = make_user("lead", staff=True)
    erin = accounts.create_account(admin, "erin")
    link = accounts.invite_path(erin)
    accounts.set_active(admin, erin.id, False)
    assert b'id="invalid-link"' in Client().get(link, follow=True).content
