"""What the API's writes accept: DRF serializers check shapes and types; the services check the rules."""

from __future__ import annotations

from rest_framework import serializers

from annotator.models import Masklet, Role
from annotator.verdicts import FINAL_REASONS, REASONS


class Text(serializers.CharField):
    """A string, never a number or a boolean turned into one (DRF's CharField would)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class Credentials(serializers.Serializer):
    username = Text(max_length=150, trim_whitespace=False)
    password = Text(max_length=4096, trim_whitespace=False)


class TokenCreate(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    expires_days = serializers.FloatField(required=False, allow_null=True, min_value=1, max_value=3650)


class UserCreate(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    password = serializers.CharField(required=False, allow_blank=True, default="", max_length=4096,
                                     trim_whitespace=False, write_only=True,
                                     help_text="Set it now (the password validators apply); without it the "
                                               "response's invite link lets the person choose one.")
    staff = serializers.BooleanField(required=False, default=False)


class ProjectCreate(serializers.Serializer):
    slug = serializers.SlugField(max_length=80)
    name = serializers.CharField(max_length=200)
    labels = serializers.ListField(child=serializers.CharField(max_length=100), required=False, default=list,
                                   max_length=200)
    annotation_fps = serializers.IntegerField(required=False, default=6, min_value=1, max_value=60)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


class ProjectEdit(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    labels = serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=200)
    annotation_fps = serializers.IntegerField(required=False, min_value=1, max_value=60)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)


class MemberAdd(serializers.Serializer):
    username = serializers.CharField(max_length=254)
    role = serializers.ChoiceField(choices=Role.choices)


class MemberEdit(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class VideoUpload(serializers.Serializer):
    file = serializers.FileField(help_text="The video file (multipart/form-data).")
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    allow_duplicate = serializers.BooleanField(required=False, default=False,
                                               help_text="Keep a file whose SHA-256 another video has.")


class MaskletCreate(serializers.Serializer):
    label = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)


class SeenFrames(serializers.Serializer):
    object_id = serializers.IntegerField(min_value=1, help_text="The object's number in the video.")
    frames = serializers.ListField(child=serializers.IntegerField(min_value=0), min_length=1, max_length=1000,
                                   help_text="Native frame numbers the person looked at.")


class Rle(serializers.Serializer):
    size = serializers.ListField(child=serializers.IntegerField(min_value=0), min_length=2, max_length=2,
                                 help_text="[height, width] of the video.")
    counts = serializers.CharField(trim_whitespace=False, allow_blank=True, help_text="COCO compressed RLE counts.")


class MaskFrameIn(serializers.Serializer):
    frame_index = serializers.IntegerField(min_value=0)
    rle = Rle()


class MasksPut(serializers.Serializer):
    frames = MaskFrameIn(many=True, allow_empty=False, max_length=10000)


#: The API's verdicts, in the app's vocabulary: approved, sent back, rejected for good.
VERDICTS = {"approve": "approved", "send_back": "sent back (rejected)", "reject": "rejected for good (discarded)"}


class ReviewIn(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=list(VERDICTS.items()))
    reason = serializers.ChoiceField(choices=[*REASONS.items(), *FINAL_REASONS.items()], required=False,
                                     allow_blank=True, default="",
                                     help_text="send_back: required, one of the pick list; reject: no_clear_boundary.")
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


class MaskletStatusFilter(serializers.Serializer):
    status = serializers.ChoiceField(choices=Masklet.Status.choices, required=False)
