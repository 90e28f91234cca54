"""Admin for imported face datasets: browse identities and aligned crops; data is read-only."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from reconstruction.forms import JobLaunchForm
from reconstruction.models import Embedding, FaceDataset, FaceImage, Identity, TopKRun


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows are written by `import_faces` and `embed`; the admin only shows (and deletes)."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def thumbnail(field_file: object, size: int = 56) -> str:
    """An <img> preview of an image field, or a dash. Crops and reconstructions are never public:
    their URL is the staff-only media view's (config.media.MediaStorage)."""
    if not field_file:
        return "—"
    return format_html('<img src="{}" width="{}" height="{}" alt="">', field_file.url, size, size)


@admin.register(FaceDataset)
class FaceDatasetAdmin(ReadOnlyAdmin):
    list_display = ["name", "root", "identity_count", "ok_count", "no_face_count", "imported_at"]
    search_fields = ["name", "root"]
    readonly_fields = ["fingerprint", "import_settings", "created_at", "imported_at"]
    change_list_template = "reconstruction/admin/facedataset_change_list.html"

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "jobs/",
                self.admin_site.admin_view(self.jobs_view),
                name="reconstruction_jobs",
            ),
            *super().get_urls(),
        ]

    def has_launch_jobs_permission(self, request: HttpRequest) -> bool:
        """Jobs spend GPU hours and write models: a permission of its own (FaceDataset.Meta)."""
        return request.user.has_perm("reconstruction.launch_jobs")

    def jobs_view(self, request: HttpRequest) -> HttpResponse:
        """Enqueue a long job (embedding, fitting, training, reconstruction, Metric 1).

        Staff who may view datasets see the queue; only those who may launch jobs get the form,
        and a POST from anyone else is refused before the form is read.
        """
        from django_tasks_db.models import DBTaskResult

        from reconstruction.services import JobError, job_enqueue
        from reconstruction.tasks import JOBS, QUEUE

        if not request.user.has_perm("reconstruction.view_facedataset"):
            return redirect("admin:index")
        can_launch = self.has_launch_jobs_permission(request)
        if request.method == "POST" and not can_launch:
            raise PermissionDenied
        form = JobLaunchForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = dict(form.cleaned_data)
            job, dataset = data.pop("job"), data.pop("dataset").name
            options = {name: data[name] for name in JOBS[job][1]}
            try:
                task_id = job_enqueue(job=job, dataset=dataset, **options)
            except JobError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(
                    request, f"Job {job} on {dataset} enqueued ({task_id}); a worker runs it."
                )
                return redirect("admin:reconstruction_jobs")
        recent = DBTaskResult.objects.filter(queue_name=QUEUE).order_by("-enqueued_at")[:20]
        context = {
            **self.admin_site.each_context(request),
            "title": "Reconstruction jobs",
            "form": form if can_launch else None,
            "recent": recent,
            "queue": QUEUE,
            "results_url": reverse("admin:django_tasks_database_dbtaskresult_changelist"),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "reconstruction/admin/jobs.html", context)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_identities=Count("identities", distinct=True),
                n_ok=Count("images", filter=Q(images__status=FaceImage.Status.OK), distinct=True),
                n_no_face=Count(
                    "images", filter=Q(images__status=FaceImage.Status.NO_FACE), distinct=True
                ),
            )
        )

    @admin.display(description="identities", ordering="n_identities")
    def identity_count(self, obj: FaceDataset) -> int:
        return obj.n_identities

    @admin.display(description="aligned", ordering="n_ok")
    def ok_count(self, obj: FaceDataset) -> int:
        return obj.n_ok

    @admin.display(description="no face", ordering="n_no_face")
    def no_face_count(self, obj: FaceDataset) -> int:
        return obj.n_no_face


class FaceImageInline(admin.TabularInline):
    model = FaceImage
    fields = ["preview", "relative_path", "status", "detection_score"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="aligned")
    def preview(self, obj: FaceImage) -> str:
        return thumbnail(obj.aligned)


@admin.register(Identity)
class IdentityAdmin(ReadOnlyAdmin):
    list_display = ["name", "dataset", "split", "image_count"]
    list_filter = ["dataset", "split"]
    search_fields = ["name"]
    list_select_related = ["dataset"]
    inlines = [FaceImageInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(n_images=Count("images"))

    @admin.display(description="images", ordering="n_images")
    def image_count(self, obj: Identity) -> int:
        return obj.n_images


@admin.register(FaceImage)
class FaceImageAdmin(ReadOnlyAdmin):
    list_display = ["preview", "relative_path", "identity", "status", "detection_score"]
    list_display_links = ["preview", "relative_path"]
    list_filter = ["dataset", "status", "identity__split"]
    search_fields = ["relative_path", "identity__name", "sha256"]
    list_select_related = ["identity", "dataset"]
    readonly_fields = ["preview_large", "crop_preview"]

    @admin.display(description="aligned")
    def preview(self, obj: FaceImage) -> str:
        return thumbnail(obj.aligned)

    @admin.display(description="aligned 112×112")
    def preview_large(self, obj: FaceImage) -> str:
        return thumbnail(obj.aligned, 112)

    @admin.display(description="crop 160×160")
    def crop_preview(self, obj: FaceImage) -> str:
        return thumbnail(obj.crop160, 160)


@admin.register(Embedding)
class EmbeddingAdmin(ReadOnlyAdmin):
    list_display = [
        "image",
        "recognizer",
        "dim",
        "weights_sha256",
        "dataset_fingerprint",
        "created_at",
    ]
    list_filter = ["recognizer"]
    search_fields = ["image__relative_path", "image__identity__name"]
    list_select_related = ["image"]
    exclude = ["vector"]


@admin.register(TopKRun)
class TopKRunAdmin(ReadOnlyAdmin):
    """Metric 1 runs written by `evaluate_topk`; files are in ``output_dir``."""

    list_display = [
        "id", "dataset", "recognizer", "gallery_n", "k", "trials", "ranking",
        "include_source", "threshold", "queries", "seconds", "created_at",
    ]  # fmt: skip
    list_filter = ["recognizer", "dataset", "ranking", "include_source"]
    search_fields = ["recognizer", "output_dir", "reconstructions_of"]
    list_select_related = ["dataset"]
