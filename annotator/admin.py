from django.contrib import admin

from annotator import models


class MembershipInline(admin.TabularInline):
    model = models.Membership
    extra = 0


@admin.register(models.Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "annotation_fps", "created_at"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(models.Video)
class VideoAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "status", "split", "frame_count", "fps", "width", "height"]
    list_filter = ["status", "split", "project"]
    readonly_fields = ["status", "failure_reason", "progress", "fps", "frame_count", "width", "height",
                       "duration", "stride", "annotated_frame_count"]


@admin.register(models.Masklet)
class MaskletAdmin(admin.ModelAdmin):
    list_display = ["video", "object_id", "label", "type", "status", "assignee", "lock_holder"]
    list_filter = ["status", "type"]


@admin.register(models.MaskFrame)
class MaskFrameAdmin(admin.ModelAdmin):
    list_display = ["masklet", "frame_index", "area", "source", "revision", "updated_at"]
    list_filter = ["source"]


@admin.register(models.MaskFrameRevision)
class MaskFrameRevisionAdmin(admin.ModelAdmin):
    """Read-only: the history is append-only."""

    list_display = ["masklet", "frame_index", "revision", "source", "author", "created_at"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(models.Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["masklet", "frame_index", "kind", "author", "created_at"]
    list_filter = ["kind"]


@admin.register(models.Review)
class ReviewAdmin(admin.ModelAdmin):
    list_display = ["masklet", "reviewer", "verdict", "reason", "created_at"]
    list_filter = ["verdict"]


admin.site.register(models.Membership)


@admin.register(models.DatasetJob)
class DatasetJobAdmin(admin.ModelAdmin):
    """Jobs are made by the datasets page; the admin only inspects them."""

    list_display = ["project", "kind", "format", "status", "progress", "created_by", "created_at"]
    list_filter = ["kind", "status", "format"]
    readonly_fields = ["progress", "message", "error", "file"]


@admin.register(models.MaskletOrigin)
class MaskletOriginAdmin(admin.ModelAdmin):
    list_display = ["masklet", "format", "source_file", "source_id", "imported_at"]
    list_filter = ["format"]
