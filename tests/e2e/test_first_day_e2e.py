"""A team's first day in Chromium, without the Django admin (issue 14): one server for the module.

- accounts: the lead creates people on the People page and sends each a one-time link; a weak
  password is refused on the link's page; the person signs in with their own; the lead adds them to
  the project by username or e-mail, resets a password, deactivates an account;
- videos: the lead uploads two files at once and drops a third (a copy: asked, skipped), retries
  and deletes a failed one, and reads each video's progress and thumbnail on the project page;
- labels: the lead renames the project and edits its label set (add, rename, recolour, retire); on
  the annotation page a new object starts unlabelled, Shift + a number labels it, and the next
  new object starts with the label used last;
- polish: every page links a favicon that loads, dates read the same way in the reader's time
  zone, the project page's buttons line up, and chart points stay inside their axes.

Screenshots go to the artifacts folder (``MASKLET_E2E_ARTIFACTS``).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
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


LABEL_VIDEO = """
from annotator.models import Project
from annotator.services.videos import create_video_from_path, ingest_video
video = create_video_from_path(Project.objects.get(slug="demo"), {path!r}, name="labels-clip", schedule_ingest=False)
print(ingest_video(video.id).id)
"""
OBJECTS = """
import json
from annotator.models import Masklet, Project
project = Project.objects.get(slug="demo")
print(json.dumps({{"objects": list(Masklet.objects.filter(video_id={video}).order_by("object_id")
                                  .values_list("object_id", "label")),
                  "project": [project.name, project.annotation_fps, project.labels, project.retired_labels,
                              project.label_colours]}}))
"""


def test_the_lead_edits_the_labels_and_annotators_pick_them_with_number_keys(server, sign_in, tmp_path,
                                                                             artifacts_dir):
    video_id = int(server.shell(LABEL_VIDEO.format(path=str(_mp4(tmp_path / "labels.mp4", 2)))).split()[-1])
    context, lead = sign_in(server, "lead", PASSWORD)
    try:
        lead.goto(f"/projects/{SLUG}/")
        lead.click("#edit-project")
        lead.fill("#id_name", "Demo team")
        lead.fill("#id_annotation_fps", "8")
        lead.click("#project-details button[type=submit]")
        assert "Project saved." in lead.inner_text(".messages")
        lead.fill("#add-label input[name=new_label]", "ball")
        lead.click("#add-label button[type=submit]")
        lead.locator("#label-table tr[data-label=dog] input[name=new_name]").fill("puppy")
        lead.locator("#label-table tr[data-label=dog] button", has_text="Rename").click()
        assert "“dog” is now “puppy”" in lead.inner_text(".messages")
        lead.locator("#label-table tr[data-label=person] input[type=color]").fill("#ff8800")
        lead.locator("#label-table tr[data-label=person] button", has_text="Set").click()
        lead.locator("#label-table tr[data-label=ball] button", has_text="Retire").click()
        assert lead.locator("#retired-table tr[data-label=ball]").is_visible()
        lead.fill("#add-label input[name=new_label]", "puppy")
        lead.click("#add-label button[type=submit]")
        assert "“puppy” is a label of this project already." in lead.inner_text(".messages")

        lead.goto(f"/projects/{SLUG}/videos/{video_id}/annotate/")
        lead.wait_for_function("document.getElementById('frame-canvas').dataset.connection === 'connected'")
        assert lead.input_value("#new-object-label") == ""  # unlabelled, not the first label
        assert lead.locator("#new-object-label option").all_inner_texts() == ["(no label)", "1 puppy", "2 person"]
        lead.keyboard.press("n")
        lead.wait_for_selector("li.object.selected")
        lead.keyboard.press("Shift+Digit2")  # label 2 for the selected object
        lead.wait_for_function("document.querySelector('li.object.selected select.object-label').value === 'person'")
        lead.keyboard.press("n")  # the next object starts with the label used last
        lead.wait_for_function("document.querySelectorAll('li.object').length === 2")
        lead.set_viewport_size({"width": 1280, "height": 720})
        lead.screenshot(path=str(artifacts_dir / "annotate-1280x720.png"))
        state = json.loads(server.shell(OBJECTS.format(video=video_id)).strip().splitlines()[-1])
        assert state["objects"] == [[1, "person"], [2, "person"]]
        assert state["project"] == ["Demo team", 8, ["puppy", "person"], ["ball"],
                                    {"ball": "#4363d8", "person": "#ff8800"}]
    finally:
        context.close()


RUN_SEED = """
from django.utils import timezone
from annotator.models import Project
from engine.models import TrainingRun
TrainingRun.objects.create(project=Project.objects.get(slug="demo"), status="done", finished_at=timezone.now(),
                           loss_curve=[[1, 0.93], [2, 0.71], [3, 0.52], [4, 0.47]])
"""


def test_pages_have_a_favicon_one_date_format_tidy_buttons_and_charts_inside_their_axes(server, browser):
    server.shell(RUN_SEED)
    context = browser.new_context(base_url=server.url, viewport={"width": 1440, "height": 900},
                                  timezone_id="Asia/Tokyo")
    failures: list[str] = []
    try:
        page = context.new_page()
        page.on("response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.goto("/login/")
        page.fill("#id_username", "lead")
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(server.url + "/")
        for path in (f"/projects/{SLUG}/", "/people/", f"/projects/{SLUG}/edit/", f"/projects/{SLUG}/models/"):
            page.goto(path)
            assert page.locator("link[rel=icon]").count() == 1, (path, page.title())
            icon = page.evaluate("fetch(document.querySelector('link[rel=icon]').href)"
                                 ".then((r) => [r.status, r.headers.get('content-type')])")
            assert icon == [200, "image/svg+xml"], (path, icon)
        assert page.evaluate("fetch('/favicon.ico').then((r) => [r.status, r.url.endsWith('.svg')])") == [200, True]
        assert failures == []  # no 404 for a favicon (or anything else) on any page

        # One date format, in the reader's time zone (Tokyo: UTC+9).
        page.goto("/people/")
        moment = page.locator("#account-table tr[data-user=lead] time")
        utc = datetime.fromisoformat(moment.get_attribute("datetime"))
        assert moment.inner_text() == (utc + timedelta(hours=9)).strftime("%Y-%m-%d %H:%M")

        # The project page's actions sit side by side, one row each.
        page.goto(f"/projects/{SLUG}/")
        for group in ("#project-actions", ".project-links"):
            tops = {round(box["y"]) for box in (e.bounding_box() for e in page.locator(f"{group} > *").all())}
            assert len(tops) == 1, (group, tops)

        # Loss chart: the highest point (0.93) is not drawn above the top gridline.
        page.goto(f"/projects/{SLUG}/models/")
        page.wait_for_selector("#chart-loss circle.point")
        points = page.locator("#chart-loss circle.point").evaluate_all("cs => cs.map((c) => +c.getAttribute('cy'))")
        grid = page.locator("#chart-loss line").evaluate_all("ls => ls.map((l) => +l.getAttribute('y1'))")
        assert len(points) == 4 and min(points) >= min(grid) - 0.5, (points, grid)
    finally:
        context.close()

