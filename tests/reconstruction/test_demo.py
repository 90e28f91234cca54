"""`manage.py demo` (reconstruction.studies.demo): the photos-only and the pipeline demo."""

import json
import re
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from PIL import Image

from reconstruction.studies.demo import demo_plan, demo_study_create
from survey.models import Candidate, FvrMethod, MatchSet, Participant, Study
from survey.services import PROLIFIC_ID_RE
from tests.factories import StudyFactory, synthetic_face_tree
from tests.survey.helpers import entered, simulate

pytestmark = pytest.mark.django_db


@pytest.fixture
def faces(tmp_path: Path) -> Path:
    """An identity-per-folder tree of synthetic JPEGs: 12 identities with 1–3 photos each."""
    root = synthetic_face_tree(tmp_path / "faces", 12, lambda i: 1 + i % 3)
    (root / "README.txt").write_text("not an identity")
    return root


@pytest.fixture
def synthetic_faces(tmp_path: Path) -> Path:
    """An identity-per-folder tree of synthetic JPEGs: 14 identities with 2–3 photos each."""
    return synthetic_face_tree(tmp_path / "faces", 14, lambda i: 2 + i % 2)


def demo(*args: str, **options: object) -> str:
    """The photos-only demo (seconds); the pipeline demo has its own slow test below."""
    out = StringIO()
    call_command("demo", "--photos-only", *args, stdout=out, **options)
    return out.getvalue()


def test_demo_builds_an_open_demo_study_from_identity_folders(faces, settings):
    out = demo(faces=str(faces), per_method=5)
    study = Study.objects.get(slug="demo")
    assert study.is_demo
    assert study.status == Study.Status.OPEN
    assert study.prolific_study_id == ""
    assert all([study.completion_code, study.failed_attention_code, study.no_consent_code])
    assert (study.k, study.questions_per_method) == (5, 5)
    assert sorted(study.methods) == sorted(FvrMethod.values)
    assert MatchSet.objects.filter(study=study).count() == 20
    for method in FvrMethod.values:
        assert study.match_sets.filter(method=method).count() == 5
    assert "Built demo study 'demo': 20 match sets (5 per method, 4 without the target)" in out


def test_each_demo_match_set_shows_another_photo_of_the_target_or_none_of_it(faces):
    demo(faces=str(faces), per_method=5)
    absent = 0
    for match_set in MatchSet.objects.prefetch_related("candidates"):
        provenance = match_set.provenance
        assert provenance["demo"] is True
        assert provenance["source"] == "real photos"
        query = provenance["query"]
        assert (faces / query).is_file()
        assert query.split("/")[0] == match_set.target_identity
        paths = {c["rank"]: c["path"] for c in provenance["candidates"]}
        assert query not in paths.values()  # the query photo itself is never a candidate
        candidates = list(match_set.candidates.all())
        assert [c.rank for c in candidates] == [1, 2, 3, 4, 5]
        assert len({c.identity for c in candidates}) == 5
        true = [c for c in candidates if c.is_true]
        if not true:
            absent += 1
            assert match_set.target_identity not in {c.identity for c in candidates}
            continue
        assert len(true) == 1
        assert true[0].identity == match_set.target_identity
        other_photo = paths[true[0].rank]
        assert other_photo.split("/")[0] == match_set.target_identity
        assert other_photo != query
    assert absent == 4  # about one in five: one per method here


def test_demo_images_are_rendered_to_web_size(faces):
    demo(faces=str(faces), per_method=1)
    candidate = Candidate.objects.first()
    with candidate.image.open("rb") as handle, Image.open(handle) as image:
        assert image.size == (224, 224)
    assert "Person" not in candidate.image.name


def test_demo_prints_three_links_with_new_participants_and_an_admin_password(faces):
    out = demo(faces=str(faces), per_method=1, port=8123)
    links = re.findall(r"http://127\.0\.0\.1:8123/s/demo/\?\S+", out)
    assert len(links) == 3
    pids = {re.search(r"PROLIFIC_PID=(DEMO\w+)", link).group(1) for link in links}
    assert len(pids) == 3
    assert all("STUDY_ID=DEMOSTUDY" in link for link in links)
    password = re.search(r"user 'admin'  password (\S+)", out).group(1)
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password(password)
    assert "http://127.0.0.1:8123/admin/" in out


def test_participant_link_parameters_are_accepted_by_the_study(faces):
    demo(faces=str(faces), per_method=1)
    study = Study.objects.get(slug="demo")
    participant = entered(study, pid="DEMO0123456789AB", session="DEMOSESSION01")
    assert participant.status == Participant.Status.ACTIVE


def test_rerunning_reuses_the_study_and_admin_and_reset_rebuilds(faces):
    demo(faces=str(faces), per_method=1)
    first = Study.objects.get(slug="demo")
    entered(first, pid="DEMOVISITOR1")
    again = demo(per_method=3)  # no photos needed to reuse
    assert "Reusing demo study 'demo' (4 match sets)" in again
    assert "password was printed when it was created" in again
    assert Study.objects.get(slug="demo").pk == first.pk
    rebuilt = demo("--reset", faces=str(faces), per_method=2)
    assert "Built demo study 'demo': 8 match sets" in rebuilt
    study = Study.objects.get(slug="demo")
    assert study.pk != first.pk
    assert MatchSet.objects.count() == 8
    assert not Participant.objects.exists()


def test_reset_password_prints_a_new_working_password(faces):
    demo(faces=str(faces), per_method=1)
    out = demo("--reset-password")
    password = re.search(r"password (\S+)  \(shown only now\)", out).group(1)
    assert get_user_model().objects.get(username="admin").check_password(password)


def test_face_folder_comes_from_fvr_face_data_preferring_its_lfw_subfolder(
    faces, settings, tmp_path
):
    settings.FVR_FACE_DATA = str(faces)
    assert f"from the photos in {faces}." in demo(per_method=1)
    (tmp_path / "data").mkdir()
    lfw = faces.rename(tmp_path / "data" / "lfw")
    settings.FVR_FACE_DATA = str(tmp_path / "data")
    assert f"from the photos in {lfw}." in demo("--reset", per_method=1)


def test_missing_photos_are_a_clear_error(settings):
    settings.FVR_FACE_DATA = ""
    with pytest.raises(CommandError, match="No face photos: pass --faces PATH"):
        demo("--no-download")
    with pytest.raises(CommandError, match="is not a folder"):
        demo(faces="/nonexistent/faces")
    assert not Study.objects.exists()


def test_too_few_identities_is_a_clear_error(faces):
    for folder in sorted(faces.iterdir())[5:]:
        if folder.is_dir():
            for photo in folder.iterdir():
                photo.unlink()
            folder.rmdir()
    with pytest.raises(CommandError, match="needs at least 6 identity folders"):
        demo(faces=str(faces))


def test_demo_never_touches_a_study_that_is_not_a_demo(faces):
    StudyFactory(slug="demo", is_demo=False)
    with pytest.raises(CommandError, match="not a demo"):
        demo("--reset", faces=str(faces))
    assert not MatchSet.objects.exists()


def test_serving_with_production_style_settings_says_what_to_set(faces, settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DJANGO_DEBUG=1"):
        demo("--serve", faces=str(faces))
    assert not Study.objects.exists()


def test_demo_plan_is_reproducible_for_a_seed(faces):
    first = demo_plan(faces_root=faces, per_method=4, seed=7)
    assert first == demo_plan(faces_root=faces, per_method=4, seed=7)
    assert first != demo_plan(faces_root=faces, per_method=4, seed=8)


@pytest.mark.django_db(transaction=True)
def test_bots_pass_the_real_id_check_and_demo_studies_accept_any_ids(
    synthetic_faces,
    tmp_path,
):
    study = demo_study_create(faces_root=synthetic_faces, slug="pilot", per_method=5, seed=3)
    assert study.accept_any_ids  # the links `manage.py demo` prints carry made-up IDs
    Study.objects.filter(pk=study.pk).update(accept_any_ids=False)
    out = tmp_path / "run.json"
    text = simulate("pilot", out, n=2, observer="random", careless=0, seed=1, images="new")
    assert "2 completed" in text, text
    run = json.loads(out.read_text())["run"]
    pids = {r["pid"] for r in run["results"]}
    assert all(PROLIFIC_ID_RE.fullmatch(pid) and pid == pid.lower() for pid in pids)
    stored = Participant.objects.filter(study=study)
    assert set(stored.values_list("prolific_pid", flat=True)) == pids
    assert all(PROLIFIC_ID_RE.fullmatch(s) for s in stored.values_list("session_id", flat=True))


@pytest.mark.facedata
def test_demo_builds_from_the_real_lfw_photos(face_data, settings):
    settings.FVR_FACE_DATA = str(face_data)
    out = demo(per_method=2)
    study = Study.objects.get(slug="demo")
    assert study.match_sets.count() == 8
    assert f"from the photos in {face_data / 'lfw'}" in out
    for match_set in study.match_sets.all():
        assert match_set.provenance["dataset"] == "lfw"
        assert (face_data / "lfw" / match_set.provenance["query"]).is_file()
    with match_set.query_image.open("rb") as handle, Image.open(handle) as image:
        assert (image.format, image.size) == ("JPEG", (224, 224))


def test_the_default_demo_runs_the_pipeline_and_says_what_its_photos_lack(faces):
    out = StringIO()
    with pytest.raises(CommandError, match="identities with 3\\+ photos; the demo needs 40"):
        call_command("demo", faces=str(faces), stdout=out)
    assert "with the real pipeline" in out.getvalue()
    assert not Study.objects.exists()


@pytest.mark.slow
@pytest.mark.facedata
def test_pipeline_demo_builds_an_open_study_of_real_reconstructions_and_top5_matches(
    face_data, settings, tmp_path
):
    import numpy as np

    from reconstruction.models import Embedding, FaceImage, Reconstruction
    from reconstruction.recognizers.registry import reconstruction_embed
    from reconstruction.storage import aligned_pixels_of

    settings.FVR_FACE_DATA = str(face_data)
    settings.VAR_DIR = tmp_path / "var"
    out = StringIO()
    call_command("demo", "--tiny", "--targets", "2", stdout=out)
    text = out.getvalue()
    for phase in ("1/5 import", "2/5 Eigenfaces basis", "3/5 reconstruct", "4/5 embed", "5/5"):
        assert phase in text
    study = Study.objects.get(slug="demo")
    assert (study.is_demo, study.status) == (True, Study.Status.OPEN)
    assert "demo preset" in study.description
    match_sets = list(study.match_sets.prefetch_related("candidates"))
    assert len(match_sets) == 2
    for match_set in match_sets:
        provenance = match_set.provenance
        assert provenance["builder"] == "build_study"
        assert provenance["demo_preset"]["eigenfaces_iterations"] == 20
        assert provenance["demo_preset"]["paper_eigenfaces_iterations"] == 2000
        assert provenance["F_prime"]["name"] == "dlib-resnet"
        row = Reconstruction.objects.get(pk=provenance["reconstruction"]["id"])
        assert (row.method, row.recognizer, row.queries > 0) == ("eigenfaces", "mobileface", True)
        assert row.target.identity.name == match_set.target_identity
        # The candidates are dlib's real image-level top 5 (Metric 1's) over the gallery
        # (source excluded), the query seen as every path sees a reconstruction.
        assert provenance["match_sets"] == "image"
        dataset = row.target.dataset
        query = reconstruction_embed("dlib-resnet", aligned_pixels_of([row]))[0]
        vectors = {
            e.image_id: np.frombuffer(bytes(e.vector), dtype="<f4")
            for e in Embedding.objects.filter(image__dataset=dataset, recognizer="dlib-resnet")
        }
        gallery = FaceImage.objects.ok().filter(
            dataset=dataset, identity__split__in=["gallery", "target"]
        )
        scored = [
            (float(vectors[image.pk] @ query), image.identity.name)
            for image in gallery.exclude(pk=row.target_id).select_related("identity")
        ]
        top = sorted(scored, key=lambda pair: -pair[0])[:5]
        expected = [name for _, name in top]
        listed = provenance["candidates"]
        assert [c["identity"] for c in listed] == expected
        for c, (score, _) in zip(listed, top, strict=True):
            assert c["score"] == pytest.approx(score, abs=1e-4)
        candidates = list(match_set.candidates.all())
        assert [c.identity for c in candidates] == expected
        assert [c.is_true for c in candidates] == [n == match_set.target_identity for n in expected]
