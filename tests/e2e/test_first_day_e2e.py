"""A team's first day in Chromium, without the Django admin (issue 14): one server for the module.

- accounts: the lead creates people on the People page and sends each a one-time link; a weak
  password is refused on the link's page; the person signs in with their own; the lead adds them to
  the project by username or e-mail, resets a password, deactivates an account.

Screenshots go to the artifacts folder (``MASKLET_E2E_ARTIFACTS``).
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.e2e

SLUG = "demo"
PASSWORD = "e2e-first-day-password"
NEW_PASSWORD = "marmalade-comet-2718"
SEED = f"""
from django.contrib.auth import get_user_model
from annotator.models import Membership, Project, Role
User = get_user_model()
lead = User.objects.create_user("lead", password={PASSWORD!r}, is_staff=True)
project = Project.objects.create(name="Demo", slug={SLUG!r}, labels=["dog", "person"])
Membership.objects.create(project=project, user=lead, role=Role.ADMIN)
"""


@pytest.fixture(scope="module")
def server(masklet_server_factory):
    server = masklet_server_factory("first-day")
    server.shell(SEED)
    return server


def _people(server) -> dict:
    return json.loads(server.shell(
        "import json\nfrom django.contrib.auth import get_user_model\n"
        "from annotator.models import Membership\n"
        "print(json.dumps({u.username: [u.is_active, u.has_usable_password(), "
        "dict(Membership.objects.filter(user=u).values_list('project__slug', 'role'))] "
        "for u in get_user_model().objects.all()}))").strip().splitlines()[-1])


def _invite(lead, username: str, email: str = "") -> str:
    lead.goto("/")
    lead.click("nav >> text=People")
    lead.fill("#create-account input[name=username]", username)
    lead.fill("#create-account input[name=email]", email)
    lead.click("#create-account button[type=submit]")
    assert f"Account {username} created" in lead.inner_text(".messages")
    return lead.input_value(".messages input.invite-link")


def test_the_lead_makes_accounts_and_a_team_without_the_admin(server, browser, sign_in, artifacts_dir):
    lead_context, lead = sign_in(server, "lead", PASSWORD)
    contexts = [lead_context]
    try:
        alice_link = _invite(lead, "alice", "alice@example.org")
        bob_link = _invite(lead, "bob")
        assert alice_link.startswith(server.url + "/invite/")
        lead.screenshot(path=str(artifacts_dir / "first-day-people.png"), full_page=True)

        context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 800})
        contexts.append(context)
        alice = context.new_page()
        alice.goto(alice_link)
        alice.fill("#id_new_password1", "password")
        alice.fill("#id_new_password2", "password")
        alice.click("#set-password-form button[type=submit]")
        assert "too common" in alice.inner_text("#set-password-form")
        alice.fill("#id_new_password1", NEW_PASSWORD)
        alice.fill("#id_new_password2", NEW_PASSWORD)
        alice.click("#set-password-form button[type=submit]")
        alice.wait_for_url(server.url + "/")
        assert "Your password is set" in alice.inner_text(".messages")
        assert "not a member of any project" in alice.inner_text("main")
        alice.goto(alice_link)
        assert alice.locator("#invalid-link").is_visible()  # the link worked once

        lead.goto(f"/projects/{SLUG}/team/")
        assert lead.locator("#account-hint a[href='/people/']").is_visible()
        for who, role in (("alice@example.org", "annotator"), ("bob", "reviewer")):
            lead.fill("#add-member input[name=user]", who)
            lead.select_option("#add-member select[name=role]", role)
            lead.click("#add-member button[type=submit]")
            assert "joined as" in lead.inner_text(".messages")
        assert _people(server)["alice"] == [True, True, {SLUG: "annotator"}]

        lead.goto("/people/")
        lead.locator("#account-table tr[data-user=alice] button", has_text="Reset password").click()
        reset_link = lead.input_value(".messages input.invite-link")
        assert reset_link != alice_link
        lead.locator("#account-table tr[data-user=bob] button", has_text="Deactivate").click()
        assert lead.inner_text("#account-table tr[data-user=bob] [data-role=state]") == "deactivated"
        assert lead.inner_text("#account-table tr[data-user=alice] [data-role=state]") == "invited"
        people = _people(server)
        assert people["alice"][:2] == [True, False] and people["bob"][0] is False

        bob = browser.new_context(base_url=server.url).new_page()
        contexts.append(bob.context)
        bob.goto(bob_link)
        assert bob.locator("#invalid-link").is_visible()  # a deactivated account's link is void
        alice.goto(reset_link)  # still signed in with the old password's session
        alice.fill("#id_new_password1", NEW_PASSWORD + "!")
        alice.fill("#id_new_password2", NEW_PASSWORD + "!")
        alice.click("#set-password-form button[type=submit]")
        alice.wait_for_url(server.url + "/")
        assert alice.locator("a[href='/projects/demo/']").is_visible()  # now a member
    finally:
        for context in contexts:
            context.close()
