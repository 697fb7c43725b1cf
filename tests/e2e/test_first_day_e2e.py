"""A team's first day in Chromium, without the Django admin (issue 14): one server for the module.

- accounts: the lead creates people on the People page and sends each a one-time link; a weak
  password is refused on the link's page; the person signs in with their own; the lead adds them to
  the project by username or e-mail, resets a password, deactivates an account;
- videos: the lead uploads two files at once and drops a third (a copy: asked, skipped), retries
  and deletes a failed one, and reads each video's progress and thumbnail on the project page.

Screenshots go to the artifacts folder (``MASKLET_E2E_ARTIFACTS``).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import numpy as np
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


def _mp4(path: Path, shift: int) -> Path:
    """A short real video (mp4v, 24 fps, 12 annotated frames); ``shift`` makes the content differ."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24.0, (160, 120))
    for index in range(48):
        frame = np.full((120, 160, 3), 60 + shift * 40, np.uint8)
        cv2.rectangle(frame, (index * 2, 30 + shift * 10), (index * 2 + 30, 60 + shift * 10), (0, 220, 255), -1)
        writer.write(frame)
    writer.release()
    return path


DROP = """([panelSelector, name, base64]) => {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, { type: "video/mp4" }));
  document.querySelector(panelSelector).dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true }));
}"""
PROGRESS_SEED = """
import numpy as np
from django.contrib.auth import get_user_model
from django.utils import timezone
from annotator.models import Masklet, Video, VideoAssignment
from annotator.services.masks import MaskWrite, save_mask_frames
from segmentation.masks import encode_rle
alice = get_user_model().objects.create_user("carol")
video = Video.objects.get(project__slug="demo", name="{name}")
full = np.zeros((video.height, video.width), bool)
full[30:60, 10:40] = True
for object_id, status in ((1, "draft"), (2, "submitted"), (3, "approved")):
    m = Masklet.objects.create(video=video, object_id=object_id, status=status, assignee=alice)
    save_mask_frames(m, [MaskWrite(f, encode_rle(full)) for f in (0, 4, 8)], source="human", author=alice)
VideoAssignment.objects.create(video=video, holder=alice, expires_at=timezone.now() + timezone.timedelta(hours=1))
"""


def test_the_lead_uploads_a_batch_and_follows_each_video(server, sign_in, artifacts_dir, tmp_path):
    context, lead = sign_in(server, "lead", PASSWORD)
    try:
        lead.goto(f"/projects/{SLUG}/")
        first, second = _mp4(tmp_path / "street.mp4", 0), _mp4(tmp_path / "park.mp4", 1)
        lead.set_input_files("#id_file", [str(first), str(second)])
        lead.click("#upload-form button[type=submit]")
        lead.wait_for_function("[...document.querySelectorAll('#upload-queue li')]"
                               ".filter((li) => li.dataset.state === 'uploaded').length === 2")
        # The same street video again, dropped on the card: the page asks, the lead says no.
        questions = []
        lead.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
        lead.evaluate(DROP, ["#upload", "street-again.mp4", base64.b64encode(first.read_bytes()).decode()])
        lead.wait_for_selector("#upload-queue li[data-state=skipped]")
        assert "same file as “street”" in questions[0]
        # A file that is no video fails; the lead retries it, then deletes it (with a confirmation page).
        (tmp_path / "notes.mp4").write_bytes(b"not a video at all" * 20)
        lead.set_input_files("#id_file", str(tmp_path / "notes.mp4"))
        lead.click("#upload-form button[type=submit]")
        lead.wait_for_function("document.getElementById('ingest-progress').dataset.status === 'failed'")
        lead.wait_for_function("document.querySelectorAll('tr[data-video-id] [data-role=status]').length === 3 && "
                               "[...document.querySelectorAll('tr[data-video-id] [data-role=status]')]"
                               ".filter((b) => b.textContent === 'Ready').length === 2")
        lead.reload()
        notes = lead.locator("tr[data-video-id]", has_text="notes")
        notes.locator("[data-action=retry]").click()
        assert "Ingest of notes started again" in lead.inner_text(".messages")
        lead.wait_for_function("[...document.querySelectorAll('tr[data-video-id]')].some((row) => "
                               "row.textContent.includes('notes') && "
                               "row.querySelector('[data-role=status]').textContent === 'Failed')")
        lead.reload()
        lead.locator("tr[data-video-id]", has_text="notes").locator("[data-action=delete]").click()
        assert "0 masklets, 0 stored masks and 0 reviews" in lead.inner_text("#delete-counts")
        lead.click("#delete-form button.danger")
        assert "notes is deleted" in lead.inner_text(".messages")
        assert lead.locator("tr[data-video-id]", has_text="notes").count() == 0

        server.shell(PROGRESS_SEED.replace("{name}", "street"))
        lead.reload()
        street = lead.locator("tr[data-video-id]", has_text="street")
        progress = street.locator("[data-role=progress]").inner_text()
        assert "1 draft" in progress and "1 submitted" in progress and "1 approved" in progress
        assert "masks on 3 of 12 frames" in progress and "carol is annotating" in progress
        thumb = street.locator("img.video-thumb")
        lead.wait_for_function("document.querySelector('img.video-thumb').naturalWidth === 160")
        assert thumb.bounding_box()["width"] == 96
        lead.screenshot(path=str(artifacts_dir / "first-day-project.png"), full_page=True)
    finally:
        context.close()
