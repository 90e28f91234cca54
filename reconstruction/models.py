"""Face datasets, recognizers, FVR methods and Metric 1 (Django models only; no torch).

Invariants live in the database (unique and check constraints); writes that touch several
rows are service functions in `reconstruction/services.py`.
"""

from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Length
from django.db.models.lookups import Exact


class FaceDataset(models.Model):
    """An identity-per-folder photo collection imported by `import_faces`."""

    name = models.SlugField(max_length=64, unique=True)
    root = models.CharField(max_length=1000, help_text="Folder the photos were read from.")
    fingerprint = models.CharField(
        max_length=64,
        blank=True,
        help_text="SHA-256 over (path, checksum, status) of every image: the dataset version.",
    )
    import_settings = models.JSONField(
        default=dict, blank=True, help_text="Splits, seed, detector and template of the import."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    imported_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        # Enqueuing jobs spends GPU hours and writes models: more than viewing the datasets.
        permissions = [
            ("launch_jobs", "Can launch reconstruction jobs (embedding, training, Metric 1)")
        ]

    def __str__(self) -> str:
        return self.name


class Split(models.TextChoices):
    """Identity-disjoint roles: reconstructor training, attack targets, gallery distractors."""

    TRAIN = "train", "Train (reconstructor / extractor)"
    TARGET = "target", "Target (attacked identities)"
    GALLERY = "gallery", "Gallery (distractors)"


class Identity(models.Model):
    """One person (one folder) of a dataset; every identity belongs to exactly one split."""

    dataset = models.ForeignKey(FaceDataset, on_delete=models.CASCADE, related_name="identities")
    name = models.CharField(max_length=255)
    split = models.CharField(max_length=8, choices=Split)

    class Meta:
        verbose_name_plural = "identities"
        ordering = ["dataset", "name"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "name"], name="identity_unique_name"),
            models.CheckConstraint(
                condition=Q(split__in=Split.values), name="identity_split_known"
            ),
        ]

    def __str__(self) -> str:
        return self.name


def aligned_upload_to(instance: "FaceImage", filename: str) -> str:
    """Aligned files sit beside their source path, tagged with the source checksum."""
    return f"faces/{instance.dataset.name}/{filename}"


class FaceImageQuerySet(models.QuerySet):
    def ok(self) -> "FaceImageQuerySet":
        return self.filter(status=FaceImage.Status.OK)


class FaceImage(models.Model):
    """One source photo: its checksum, the face found in it and its aligned crops."""

    class Status(models.TextChoices):
        OK = "ok", "Aligned"
        NO_FACE = "no_face", "No face found"
        UNREADABLE = "unreadable", "Unreadable file"

    dataset = models.ForeignKey(FaceDataset, on_delete=models.CASCADE, related_name="images")
    identity = models.ForeignKey(Identity, on_delete=models.CASCADE, related_name="images")
    relative_path = models.CharField(max_length=1000, help_text="POSIX path below the root.")
    sha256 = models.CharField("source SHA-256", max_length=64)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status)
    message = models.CharField(max_length=500, blank=True)
    detector = models.CharField(max_length=64, blank=True)
    faces_found = models.PositiveSmallIntegerField(default=0)
    detection_score = models.FloatField(null=True, blank=True)
    box = models.JSONField(
        null=True, blank=True, help_text="Chosen face box [left, top, right, bottom], source px."
    )
    landmarks = models.JSONField(
        null=True,
        blank=True,
        help_text="ArcFace 5 points (eye centres, nose tip, mouth corners), source px.",
    )
    dlib_landmarks = models.JSONField(
        null=True,
        blank=True,
        help_text="dlib's 5-point shape (eye corners, nose base), source px: for get_face_chip.",
    )
    aligned = models.ImageField("aligned 112×112", upload_to=aligned_upload_to, blank=True)
    crop160 = models.ImageField("crop 160×160", upload_to=aligned_upload_to, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = FaceImageQuerySet.as_manager()

    class Meta:
        ordering = ["dataset", "relative_path"]
        constraints = [
            models.UniqueConstraint(
                fields=["dataset", "relative_path"], name="faceimage_unique_path"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["ok", "no_face", "unreadable"]),
                name="faceimage_status_known",
            ),
            models.CheckConstraint(
                condition=~Q(status="ok")
                | (Q(landmarks__isnull=False) & ~Q(aligned="") & ~Q(crop160="")),
                name="faceimage_ok_has_alignment",
            ),
        ]
        indexes = [models.Index(fields=["identity", "status"])]

    def __str__(self) -> str:
        return self.relative_path


class Embedding(models.Model):
    """A recognizer's float32 feature vector of one aligned face, with its provenance."""

    image = models.ForeignKey(FaceImage, on_delete=models.CASCADE, related_name="embeddings")
    recognizer = models.CharField(max_length=64)
    weights_sha256 = models.CharField(max_length=64)
    preprocessing = models.CharField(max_length=500)
    source_sha256 = models.CharField(
        max_length=64, help_text="The image's source SHA-256 when embedded: stale if it differs."
    )
    dataset_fingerprint = models.CharField(
        max_length=64,
        blank=True,
        help_text="The dataset's fingerprint (its imported version) when this was embedded.",
    )
    dim = models.PositiveIntegerField()
    vector = models.BinaryField(help_text="dim little-endian float32 values.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["image", "recognizer"]
        constraints = [
            models.UniqueConstraint(
                fields=["image", "recognizer", "weights_sha256"], name="embedding_unique"
            ),
            models.CheckConstraint(condition=Q(dim__gte=1), name="embedding_dim_positive"),
            models.CheckConstraint(
                condition=Exact(Length("vector"), F("dim") * 4), name="embedding_vector_is_dim_f32"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.recognizer}:{self.image_id}"

    @property
    def is_stale(self) -> bool:
        """The source photo changed since this vector was computed."""
        return self.source_sha256 != self.image.sha256


def artifact_upload_to(instance: "ReconstructorArtifact", filename: str) -> str:
    """Artifacts are named by method, kind and the file's own SHA-256."""
    return f"artifacts/{instance.method}/{instance.kind}-{instance.sha256[:16]}-{filename}"


class ReconstructorArtifact(models.Model):
    """A fitted file an FVR method needs: an Eigenfaces basis (Dec + mean face) or the
    trained weights of a parametric reconstructor, with where it came from."""

    class Kind(models.TextChoices):
        EIGENBASIS = "eigenbasis", "Eigenfaces basis (Dec and mean face)"
        WEIGHTS = "weights", "Trained reconstructor weights"

    method = models.CharField(max_length=32, help_text="FVR method that uses it, e.g. eigenfaces.")
    kind = models.CharField(max_length=16, choices=Kind)
    dataset = models.ForeignKey(
        FaceDataset, on_delete=models.PROTECT, related_name="reconstructor_artifacts"
    )
    split = models.CharField(max_length=8, choices=Split, default=Split.TRAIN)
    n_images = models.PositiveIntegerField(help_text="Aligned faces it was fitted on.")
    fitting = models.CharField(max_length=32, help_text="e.g. pca, autoencoder, adam.")
    recognizer = models.CharField(max_length=64, blank=True, help_text="F, when it used one.")
    recognizer_sha256 = models.CharField(max_length=64, blank=True)
    config = models.JSONField(default=dict, blank=True)
    seed = models.BigIntegerField(default=0)
    device = models.CharField(max_length=32, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="Losses, components, timings.")
    file = models.FileField(upload_to=artifact_upload_to, max_length=500)
    sha256 = models.CharField("file SHA-256", max_length=64)
    seconds = models.FloatField(default=0.0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["method", "kind", "sha256"], name="artifact_unique"),
            models.CheckConstraint(
                condition=Q(kind__in=["eigenbasis", "weights"]), name="artifact_kind_known"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.kind} #{self.pk} ({self.dataset_id}/{self.split})"


def reconstruction_upload_to(instance: "Reconstruction", filename: str) -> str:
    return f"reconstructions/{instance.method}/{instance.recognizer}/{filename}"


class Reconstruction(models.Model):
    """One reconstructed face x̃ from F's vector of a target image, with its provenance.

    ``config_hash`` covers the method config, the artifact's and F's weights SHA-256, so
    the unique constraint makes re-running a reconstruction idempotent."""

    target = models.ForeignKey(FaceImage, on_delete=models.CASCADE, related_name="reconstructions")
    method = models.CharField(max_length=32)
    recognizer = models.CharField(max_length=64, help_text="F, whose vector was inverted.")
    recognizer_sha256 = models.CharField(max_length=64)
    artifact = models.ForeignKey(
        ReconstructorArtifact,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="reconstructions",
    )
    config = models.JSONField(default=dict)
    config_hash = models.CharField(max_length=64)
    seed = models.BigIntegerField()
    device = models.CharField(max_length=32)
    cosine = models.FloatField(help_text="cos(F(stored image), target vector).")
    queries = models.PositiveBigIntegerField(help_text="Images sent through F.")
    seconds = models.FloatField(help_text="Wall time of the run.")
    forward_seconds = models.FloatField(help_text="Of which in F's forward pass.")
    details = models.JSONField(default=dict, blank=True)
    image = models.ImageField("aligned 112×112", upload_to=reconstruction_upload_to)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["target", "method", "recognizer", "config_hash", "seed"],
                name="reconstruction_unique_run",
            ),
            models.CheckConstraint(
                condition=Q(cosine__gte=-1.001) & Q(cosine__lte=1.001),
                name="reconstruction_cosine_range",
            ),
            models.CheckConstraint(
                condition=Q(seconds__gte=0) & Q(forward_seconds__gte=0),
                name="reconstruction_times_nonnegative",
            ),
        ]
        indexes = [models.Index(fields=["method", "recognizer"])]

    def __str__(self) -> str:
        return f"{self.method}/{self.recognizer}:{self.target_id}"

    @property
    def forward_share(self) -> float:
        """Share of the wall time spent in F's forward pass."""
        return self.forward_seconds / self.seconds if self.seconds > 0 else 0.0


class TopKRun(models.Model):
    """One Metric 1 evaluation (`evaluate_topk`): which queries, which F', which galleries,
    and the rates it measured; the CSV, Markdown and figures sit in ``output_dir``."""

    class Ranking(models.TextChoices):
        IMAGE = "image", "Image-level top-K"
        IDENTITY = "identity", "Identity-level top-K"

    dataset = models.ForeignKey(FaceDataset, on_delete=models.PROTECT, related_name="topk_runs")
    recognizer = models.CharField("F'", max_length=64, help_text="The engine that matches.")
    recognizer_sha256 = models.CharField(max_length=64, blank=True)
    methods = models.JSONField(default=list, help_text="FVR methods whose reconstructions ran.")
    reconstructions_of = models.CharField(
        "F", max_length=64, blank=True, help_text="Only reconstructions of this F's vectors."
    )
    gallery_n = models.PositiveIntegerField("gallery N", help_text="N of the K sweep.")
    k = models.PositiveIntegerField("K", help_text="K of the N sweep.")
    ks = models.JSONField(default=list)
    ns = models.JSONField(default=list)
    sweep = models.CharField(max_length=8, help_text="k, n or both.")
    trials = models.PositiveIntegerField(help_text="Random gallery draws per N.")
    seed = models.BigIntegerField(default=0)
    include_source = models.BooleanField(
        default=False, help_text="The source-included variant was run beside the excluded one."
    )
    threshold = models.FloatField(null=True, blank=True)
    ranking = models.CharField(max_length=8, choices=Ranking, default=Ranking.IMAGE)
    config = models.JSONField(default=dict, blank=True, help_text="Every option of the run.")
    results = models.JSONField(default=dict, blank=True, help_text="Rows, counts, Table II.")
    output_dir = models.CharField(max_length=1000)
    queries = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0.0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(trials__gte=1), name="topkrun_trials_positive"),
            models.CheckConstraint(
                condition=Q(ranking__in=["image", "identity"]), name="topkrun_ranking_known"
            ),
        ]

    def __str__(self) -> str:
        return f"top-K #{self.pk} {self.recognizer} on {self.dataset_id}"

    def reference_rate(self, group: str, field: str = "tpr") -> float | None:
        """A group's rate at (gallery N, K) with the source excluded, from the stored rows."""
        for row in self.results.get("rows", []):
            if (
                row.get("group") == group
                and row.get("variant") == "excluded"
                and row.get("n") == self.gallery_n
                and row.get("k") == self.k
            ):
                return row.get(field)
        return None
