"""build_study on a few imported LFW identities: tiny Eigenfaces reconstructions, F' top-5
(Metric 1's image-level top-5 by default, identity-level with --match-sets identity)."""

import io
from pathlib import Path

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from PIL import Image

from reconstruction.metric1.gallery import stored_vectors
from reconstruction.models import FaceImage, Reconstruction, Split
from reconstruction.recognizers.registry import get_recognizer, reconstruction_embed
from reconstruction.storage import aligned_pixels_of
from survey.models import MatchSet, Study
from tests.reconstruction.helpers import DATASET, tiny_reconstructed_dataset

pytestmark = [pytest.mark.django_db, pytest.mark.facedata, pytest.mark.slow]


@pytest.fixture
def reconstructions(face_data: Path, tmp_path: Path) -> list[Reconstruction]:
    return tiny_reconstructed_dataset(face_data, tmp_path)


def build(*args: str) -> str:
    out = io.StringIO()
    call_command(
        "build_study",
        "--dataset", DATASET, "--recognizer", "mobileface", "--no-progress", *args,
        stdout=out,
    )  # fmt: skip
    return out.getvalue()


def test_match_sets_hold_the_top5_of_f_prime_with_provenance(reconstructions):
    out = build(
        "--slug", "s1", "--title", "Built", "--second", "mobileface",
        "--methods", "eigenfaces", "--per-method", "8", "--seed", "3",
    )  # fmt: skip
    study = Study.objects.get(slug="s1")
    assert (study.status, study.k, study.is_demo) == (Study.Status.DRAFT, 5, False)
    codes = [study.completion_code, study.failed_attention_code, study.no_consent_code]
    assert all(codes)
    assert len(set(codes)) == 3
    match_sets = list(MatchSet.objects.filter(study=study).prefetch_related("candidates"))
    # Every target identity has two more photos in the gallery, so all three are usable.
    assert len(match_sets) == 3
    assert study.questions_per_method == 3
    assert "Built draft study 's1': 3 match sets (eigenfaces 3)" in out
    assert "with 200 participants and 3 faces per method the study detects" in out
    assert "WARNING: faces are the bottleneck with 3 faces per method" in out
    by_id = {r.pk: r for r in reconstructions}
    for match_set in match_sets:
        p = match_set.provenance
        row = by_id[p["reconstruction"]["id"]]
        assert match_set.method == "eigenfaces"
        assert match_set.target_identity == row.target.identity.name == p["target"]["identity"]
        assert p["dataset"]["name"] == DATASET
        assert len(p["dataset"]["fingerprint"]) == 64
        assert p["target"]["path"] == row.target.relative_path
        assert p["target"]["sha256"] == row.target.sha256
        assert p["reconstruction"]["config"] == row.config
        assert p["reconstruction"]["seed"] == 1
        assert p["reconstruction"]["artifact"]["sha256"] == row.artifact.sha256
        assert p["F"] == {"name": "mobileface", "weights_sha256": row.recognizer_sha256}
        assert p["F_prime"]["name"] == "mobileface"
        assert len(p["F_prime"]["weights_sha256"]) == 64
        assert p["final_cosine"] == pytest.approx(row.cosine, abs=1e-6)
        gallery = p["gallery"]
        assert "excluded" in gallery["exclusion"]
        assert gallery["identities"] == 7  # 3 targets + 4 distractors; train never enrolled
        assert 10 <= gallery["images"] <= 13  # 3 targets × 3 photos + 4 distractors
        candidates = list(match_set.candidates.all())
        assert [c.rank for c in candidates] == [1, 2, 3, 4, 5]
        # The default is Metric 1's image-level top-5: the 5 best gallery images in F'.
        assert p["match_sets"] == "image"
        assert gallery["ranking"].startswith("image level")
        assert [c["image_id"] for c in p["candidates"]] == image_level_top5(row)
        paths = [c["path"] for c in p["candidates"]]
        assert row.target.relative_path not in paths  # the source photo is excluded
        scores = [c.score for c in candidates]
        assert scores == sorted(scores, reverse=True)
        for c, listed in zip(candidates, p["candidates"], strict=True):
            assert c.is_true == (c.identity == match_set.target_identity) == listed["is_true"]
            assert listed["identity"] == c.identity
        assert p["target_present"] == any(c.is_true for c in candidates)
        with match_set.query_image.open("rb") as handle, Image.open(handle) as image:
            assert (image.format, image.size) == ("JPEG", (224, 224))


def image_level_top5(row: Reconstruction) -> list[int]:
    """Ids of the 5 gallery images (gallery and target splits, source photo left out) nearest
    to the reconstruction in mobileface, computed here from the stored vectors."""
    query = reconstruction_embed("mobileface", aligned_pixels_of([row]))[0]
    ids = list(
        FaceImage.objects.ok()
        .filter(identity__split__in=[Split.GALLERY, Split.TARGET])
        .exclude(pk=row.target_id)
        .order_by("identity_id", "relative_path")
        .values_list("id", flat=True)
    )
    weights = get_recognizer("mobileface").weights_sha256
    scores = stored_vectors(ids, recognizer="mobileface", weights_sha256=weights) @ query
    return [ids[i] for i in np.argsort(-scores, kind="stable")[:5]]


def test_identity_level_match_sets_on_request(reconstructions):
    out = build(
        "--slug", "ids", "--title", "Identities", "--second", "mobileface",
        "--methods", "eigenfaces", "--match-sets", "identity",
    )  # fmt: skip
    assert "identity-level match sets" in out
    match_sets = list(Study.objects.get(slug="ids").match_sets.prefetch_related("candidates"))
    assert len(match_sets) == 3
    for match_set in match_sets:
        assert match_set.provenance["match_sets"] == "identity"
        assert match_set.provenance["gallery"]["ranking"].startswith("identity level")
        assert len({c.identity for c in match_set.candidates.all()}) == 5


def test_image_level_match_sets_show_several_photos_of_the_target(reconstructions):
    # Stand-in reconstructions that F' knows well: each target's own aligned photo. Its two
    # other photos are in the gallery (the source itself is excluded), so an image-level
    # top-5 holds them both where an identity-level one could show only one.
    for row in reconstructions:
        with row.target.aligned.open("rb") as handle:
            row.image.save(f"stand-in-{row.pk}.png", ContentFile(handle.read()))
    out = build(
        "--slug", "several", "--title", "Several", "--second", "mobileface",
        "--methods", "eigenfaces",
    )  # fmt: skip
    assert "image-level match sets" in out
    study = Study.objects.get(slug="several")
    true_counts = []
    for match_set in study.match_sets.prefetch_related("candidates"):
        candidates = list(match_set.candidates.all())
        listed = match_set.provenance["candidates"]
        assert [c.is_true for c in candidates] == [c["is_true"] for c in listed]
        true_counts.append(sum(c.is_true for c in candidates))
        # The survey holds every true candidate; each is a different photo of the target.
        true_paths = {c["path"] for c in listed if c["is_true"]}
        assert len(true_paths) == true_counts[-1]
        assert all(c.identity == match_set.target_identity for c in candidates if c.is_true)
    assert len(true_counts) == 3
    assert max(true_counts) == 2  # both remaining photos of a target among the 5


def test_include_source_and_gallery_draw_are_recorded(reconstructions):
    build(
        "--slug", "s2", "--title", "Included", "--second", "mobileface",
        "--methods", "eigenfaces", "--per-method", "2", "--include-source",
        "--gallery-identities", "6", "--seed", "4",
    )  # fmt: skip
    study = Study.objects.get(slug="s2")
    assert study.match_sets.count() == 2
    assert study.questions_per_method == 2
    for match_set in study.match_sets.all():
        gallery = match_set.provenance["gallery"]
        assert gallery["exclusion"].startswith("included")
        assert (gallery["identities"], gallery["requested_identities"]) == (6, 6)


def test_the_same_target_identities_serve_every_method(reconstructions):
    # Stand-in NBNet rows (the tiny Eigenfaces images) so that two methods can be compared.
    for row in reconstructions:
        row.pk, row.method, row.config_hash = None, "nbnet", "n" * 64
        row.save()
    build(
        "--slug", "s3", "--title", "Two methods", "--second", "mobileface",
        "--methods", "eigenfaces,nbnet", "--per-method", "2", "--seed", "9",
    )  # fmt: skip
    study = Study.objects.get(slug="s3")
    by_method = {
        m: set(study.match_sets.filter(method=m).values_list("target_identity", flat=True))
        for m in ("eigenfaces", "nbnet")
    }
    assert len(by_method["eigenfaces"]) == 2
    assert by_method["eigenfaces"] == by_method["nbnet"]


def test_bad_requests_are_clear_errors_and_create_nothing(reconstructions):
    common = ["--slug", "bad", "--title", "Bad", "--methods", "eigenfaces"]
    with pytest.raises(CommandError, match="unknown recognizer 'nope'"):
        build(*common, "--second", "nope")
    with pytest.raises(CommandError, match="no nbnet reconstructions with mobileface"):
        build("--slug", "bad", "--title", "Bad", "--methods", "nbnet", "--second", "mobileface")
    with pytest.raises(CommandError, match="--gallery-identities 2 is too small"):
        build(*common, "--second", "mobileface", "--gallery-identities", "2")
    with pytest.raises(CommandError, match="lack a current dlib-resnet embedding"):
        build(*common, "--second", "dlib-resnet")
    with pytest.raises(CommandError, match="unknown dataset"):
        call_command(
            "build_study", *common, "--dataset", "none", "--recognizer", "mobileface",
            "--second", "mobileface",
        )  # fmt: skip
    assert not Study.objects.exists()
    build(*common, "--second", "mobileface", "--per-method", "1")
    with pytest.raises(CommandError, match="already exists"):
        build(*common, "--second", "mobileface")
