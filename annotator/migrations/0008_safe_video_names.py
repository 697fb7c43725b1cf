"""Video names become file names in exports: validate them, and rename any stored name that is unsafe.

An unsafe name (``../x``, ``/abs``, a NUL, a newline, over 200 characters, ...) could make an
export write outside its folder. Each one is renamed to its cleaned form (``x``, made unique in
the project) and flagged: the old name is kept in ``failure_reason`` and printed.
"""

from django.db import migrations, models

import engine.safe_paths


def rename_unsafe_names(apps, schema_editor):
    from engine.safe_paths import MAX_NAME_LENGTH, clean_name, is_safe_name

    Video = apps.get_model("annotator", "Video")
    for video in Video.objects.order_by("pk").iterator():
        if is_safe_name(video.name):
            continue
        base = clean_name(video.name)[: MAX_NAME_LENGTH - 8]
        candidate, counter = base, 1
        while Video.objects.filter(project_id=video.project_id, name=candidate).exists():
            counter += 1
            candidate = f"{base}-{counter}"
        note = f"renamed from {video.name!r}: the old name was not a safe file name"
        print(f"\n  video {video.pk} of project {video.project_id}: {note} -> {candidate!r}", end="")
        Video.objects.filter(pk=video.pk).update(
            name=candidate, failure_reason=(f"{video.failure_reason}\n{note}" if video.failure_reason else note))


class Migration(migrations.Migration):
    dependencies = [
        ("annotator", "0007_auto_run_heartbeat"),
    ]

    operations = [
        migrations.RunPython(rename_unsafe_names, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="video",
            name="name",
            field=models.CharField(help_text="Video id used in exports (e.g. sav_000001): a safe file name.",
                                   max_length=255, validators=[engine.safe_paths.validate_video_name]),
        ),
    ]
