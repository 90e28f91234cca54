"""factory_boy factories and builders for survey objects (synthetic images, never photos)."""

import hashlib
import io
import random
from collections.abc import Callable
from pathlib import Path

import factory
from django.core.files.base import ContentFile
from PIL import Image

from survey.models import Candidate, FvrMethod, MatchSet, Study
from survey.services import MADE_UP_ID_RE, PROLIFIC_ID_RE


def prolific_id(label: object) -> str:
    """A Prolific-format ID (24 lowercase hex characters) named by ``label``: the same label
    gives the same ID, so tests can say "PID000001" and still pass the real ID check."""
    return hashlib.sha256(f"prolific-id:{label}".encode()).hexdigest()[:24]


def id_for(study: Study, label: str) -> str:
    """``label`` itself when the study takes it (a Prolific-format ID, or a made-up one where
    the study accepts any IDs), else the Prolific-format ID it names."""
    if PROLIFIC_ID_RE.fullmatch(label) or (study.accept_any_ids and MADE_UP_ID_RE.fullmatch(label)):
        return label
    return prolific_id(label)


# The STUDY_ID that tests' links carry when a study has no prolific_study_id of its own.
STUDY_ID = prolific_id("STUDY0001")


def synthetic_jpeg(seed: int, size: int = 32) -> ContentFile:
    """A small generated JPEG (coloured noise): test images are never real photos."""
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    image.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(size * size)])
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=70)
    return ContentFile(buffer.getvalue(), name=f"synthetic-{seed}.jpg")


class StudyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Study

    slug = factory.Sequence(lambda n: f"study-{n}")
    title = factory.Sequence(lambda n: f"Study {n}")
    status = Study.Status.OPEN
    completion_code = "C1OK2345"
    failed_attention_code = "C9FAIL99"
    no_consent_code = "C0NOCON0"


class MatchSetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MatchSet
        skip_postgeneration_save = True

    study = factory.SubFactory(StudyFactory)
    key = factory.Sequence(lambda n: f"ms-{n}")
    method = FvrMethod.EIGENFACES
    target_identity = factory.Sequence(lambda n: f"Person {n}")
    query_image = factory.Sequence(lambda n: synthetic_jpeg(10_000 + n))
    provenance = factory.LazyFunction(lambda: {"source": "tests"})

    @factory.post_generation
    def candidates(self, create: bool, extracted: object, **kwargs: object) -> None:
        """K candidates; the true one at rank `true_rank` (default 2; 0 = target absent)."""
        if not create:
            return
        true_rank = kwargs.get("true_rank", 2)
        for rank in range(1, self.study.k + 1):
            Candidate.objects.create(
                match_set=self,
                rank=rank,
                identity=self.target_identity if rank == true_rank else f"Other {self.pk}-{rank}",
                image=synthetic_jpeg(self.pk * 10 + rank),
                is_true=rank == true_rank,
            )


def study_with_match_sets(per_method: int = 5, **study_fields: object) -> Study:
    """An open study with `per_method` match sets for each of the four FVR methods."""
    study = StudyFactory(**study_fields)
    for method in FvrMethod.values:
        for _ in range(per_method):
            MatchSetFactory(study=study, method=method)
    return study


def synthetic_face_tree(root: Path, identities: int, photos: Callable[[int], int]) -> Path:
    """An identity-per-folder tree of synthetic JPEGs: ``photos(i)`` photos for identity i."""
    for i in range(identities):
        folder = root / f"Person_{i:02d}"
        folder.mkdir(parents=True)
        for j in range(photos(i)):
            (folder / f"Person_{i:02d}_{j + 1:04d}.jpg").write_bytes(
                synthetic_jpeg(100 * i + j, size=24).read()
            )
    return root
