import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from PIL import Image

from survey import matchsets
from survey.matchsets import CandidateInput, MatchSetInvalid, match_set_create, matchsets_import
from survey.models import Candidate, MatchSet, Study
from tests.factories import StudyFactory
from tests.survey.matchset_helpers import STUDY, manifest_folder, write

pytestmark = pytest.mark.django_db


def stored_files() -> list[Path]:
    return [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]


def test_import_creates_a_draft_study_with_every_match_set_and_candidate(tmp_path):
    write(tmp_path, manifest_folder(tmp_path, count=3))
    report = matchsets_import(path=tmp_path)
    assert report.ok, report.problems
    assert (report.created, report.study_created, report.study_slug) == (3, True, "pilot")
    assert report.by_method == {"eigenfaces": 1, "nbnet": 1, "naive": 1}
    study = Study.objects.get(slug="pilot")
    assert study.status == Study.Status.DRAFT
    assert study.completion_code == "C1OK2345"
    first = MatchSet.objects.get(study=study, key="ms-001")
    assert first.method == "eigenfaces"
    assert first.provenance == {"recognizer": "dlib-resnet", "seed": 0}
    ranks = list(first.candidates.values_list("rank", "identity", "is_true", "score"))
    assert [r[:3] for r in ranks] == [
        (1, "Other 0-1", False),
        (2, "Person 0", True),
        (3, "Other 0-3", False),
        (4, "Other 0-4", False),
        (5, "Other 0-5", False),
    ]
    assert ranks[0][3] == pytest.approx(0.8)
    assert Candidate.objects.filter(match_set__study=study).count() == 15
    assert len(stored_files()) == 18  # every image rendered once: 3 queries + 15 candidates


def test_imported_images_are_web_size_jpegs_under_names_that_reveal_nothing(tmp_path):
    write(tmp_path, manifest_folder(tmp_path, count=1))
    matchsets_import(path=tmp_path)
    match_set = MatchSet.objects.get()
    files = [match_set.query_image, *(c.image for c in match_set.candidates.all())]
    for image_file in files:
        with image_file.open("rb") as handle, Image.open(handle) as image:
            assert (image.format, image.size, image.mode) == ("JPEG", (224, 224), "RGB")
        name = Path(image_file.name).name
        assert image_file.name.startswith("studies/")
        assert len(name) == len("0123456789abcdef0123456789abcdef.jpg")
        assert "ms-001" not in name
        assert "true" not in name
    assert len({f.name for f in files}) == 6


def test_import_into_an_existing_study_named_by_the_option(tmp_path):
    study = StudyFactory(slug="existing", status=Study.Status.OPEN)
    write(tmp_path, manifest_folder(tmp_path, count=2, study="ignored-slug"))
    report = matchsets_import(path=tmp_path, study_slug="existing")
    assert report.ok, report.problems
    assert (report.created, report.study_created) == (2, False)
    assert study.match_sets.count() == 2
    assert not Study.objects.filter(slug__in=["pilot", "ignored-slug"]).exists()


def test_manifest_may_name_an_existing_study_by_slug(tmp_path):
    study = StudyFactory(slug="named")
    write(tmp_path, manifest_folder(tmp_path, count=1, study="named"))
    report = matchsets_import(path=tmp_path / "manifest.json")
    assert report.ok, report.problems
    assert study.match_sets.count() == 1


def _drop_rank_3(data: dict) -> None:
    data["match_sets"][1]["candidates"].pop(2)


def _duplicate_rank(data: dict) -> None:
    data["match_sets"][1]["candidates"][3]["rank"] = 2


def _rank_outside(data: dict) -> None:
    data["match_sets"][1]["candidates"][4]["rank"] = 6


def _unknown_method(data: dict) -> None:
    data["match_sets"][1]["method"] = "stylegan"


def _duplicate_key(data: dict) -> None:
    data["match_sets"][2]["key"] = "ms-001"


def _missing_image(data: dict) -> None:
    data["match_sets"][1]["candidates"][2]["image"] = "candidates/nowhere.jpg"


def _outside_folder(data: dict) -> None:
    data["match_sets"][1]["query_image"] = "../elsewhere.jpg"


def _unknown_study_field(data: dict) -> None:
    data["study"] = {**STUDY, "status": "open"}


def _study_without_codes(data: dict) -> None:
    data["study"] = {"slug": "pilot", "title": "Pilot"}


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_drop_rank_3, "match_sets[1] (key ms-002): has 4 candidates; the study's K is 5"),
        (_duplicate_rank, "match_sets[1] (key ms-002): candidate rank 2 appears 2 times"),
        (_rank_outside, "match_sets[1] (key ms-002): candidate rank 6 is outside 1..5"),
        (
            _unknown_method,
            "match_sets[1] (key ms-002): unknown method 'stylegan' "
            "(expected one of eigenfaces, nbnet, naive, vec2face)",
        ),
        (_duplicate_key, "match_sets[2] (key ms-001): duplicate key (also match_sets[0])"),
        (
            _missing_image,
            "match_sets[1] (key ms-002): candidate rank 3: image 'candidates/nowhere.jpg' "
            "not found",
        ),
        (
            _outside_folder,
            "match_sets[1] (key ms-002): query image '../elsewhere.jpg' is outside the "
            "manifest folder",
        ),
        (_unknown_study_field, "study: unknown field 'status'"),
        (_study_without_codes, "study.completion_code: This field cannot be blank."),
    ],
)
def test_each_problem_is_reported_by_item_and_nothing_is_imported(tmp_path, mutate, expected):
    data = manifest_folder(tmp_path, count=3)
    mutate(data)
    write(tmp_path, data)
    report = matchsets_import(path=tmp_path)
    assert expected in report.problems
    assert report.created == 0
    assert not Study.objects.exists()
    assert not MatchSet.objects.exists()
    assert stored_files() == []


def test_unreadable_image_is_reported(tmp_path):
    data = manifest_folder(tmp_path, count=2)
    (tmp_path / "candidates/ms-002-4.jpg").write_bytes(b"not a jpeg at all")
    write(tmp_path, data)
    report = matchsets_import(path=tmp_path)
    assert len(report.problems) == 1
    assert report.problems[0].startswith(
        "match_sets[1] (key ms-002): candidate rank 4: image 'candidates/ms-002-4.jpg' "
        "is not a readable image"
    )
    assert not MatchSet.objects.exists()


def test_key_already_in_the_study_is_reported(tmp_path):
    write(tmp_path, manifest_folder(tmp_path, count=2))
    assert matchsets_import(path=tmp_path).created == 2
    report = matchsets_import(path=tmp_path)
    assert report.problems == [
        "match_sets[0] (key ms-001): key already exists in study 'pilot'",
        "match_sets[1] (key ms-002): key already exists in study 'pilot'",
    ]
    assert MatchSet.objects.count() == 2


def test_bad_json_is_reported_with_line_and_column(tmp_path):
    (tmp_path / "manifest.json").write_text('{\n  "study": "pilot",\n  "match_sets": [,]\n}\n')
    report = matchsets_import(path=tmp_path)
    assert report.problems == [
        "manifest.json: invalid JSON at line 3, column 18: Expecting value",
    ]


def test_every_problem_in_every_item_is_reported_at_once(tmp_path):
    data = manifest_folder(tmp_path, count=4)
    _rank_outside(data)
    _unknown_method(data)
    data["match_sets"][3]["candidates"][0]["is_true"] = "yes"
    data["match_sets"][3]["target_identity"] = ""
    write(tmp_path, data)
    problems = matchsets_import(path=tmp_path).problems
    assert problems == [
        "match_sets[1] (key ms-002): unknown method 'stylegan' "
        "(expected one of eigenfaces, nbnet, naive, vec2face)",
        "match_sets[1] (key ms-002): candidate rank 6 is outside 1..5",
        "match_sets[3] (key ms-004): target_identity is missing",
        "match_sets[3] (key ms-004): candidate rank 1: is_true must be true or false",
    ]


def test_a_failure_while_creating_rolls_back_everything_and_removes_files(tmp_path, monkeypatch):
    write(tmp_path, manifest_folder(tmp_path, count=3))
    real = matchsets.web_image
    calls = []

    def failing_on_the_fifteenth(source):
        calls.append(source)
        if len(calls) == 15:
            raise OSError("disk full")
        return real(source)

    monkeypatch.setattr(matchsets, "web_image", failing_on_the_fifteenth)
    with pytest.raises(OSError, match="disk full"):
        matchsets_import(path=tmp_path)
    assert not Study.objects.exists()
    assert not MatchSet.objects.exists()
    assert stored_files() == []


def test_match_set_create_refuses_ranks_that_are_not_one_to_k_and_stores_nothing():
    study = StudyFactory()
    candidates = [
        CandidateInput(rank=rank, identity=f"P{rank}", image=b"", is_true=False)
        for rank in (1, 2, 3, 3)
    ]
    with pytest.raises(MatchSetInvalid) as caught:
        match_set_create(
            study=study,
            key="bad",
            method="naive",
            query_image=b"",
            target_identity="P1",
            candidates=candidates,
            provenance={},
        )
    assert caught.value.problems == [
        "has 4 candidates; the study's K is 5",
        "candidate rank 3 appears 2 times",
    ]
    assert not MatchSet.objects.exists()
    assert stored_files() == []


def test_match_set_create_crops_the_centre_square(tmp_path):
    study = StudyFactory()
    wide = tmp_path / "wide.png"
    image = Image.new("RGB", (300, 100), (255, 0, 0))
    image.paste((0, 0, 255), (100, 0, 200, 100))  # blue centre square between red sides
    image.save(wide)
    match_set = match_set_create(
        study=study,
        key="wide",
        method="eigenfaces",
        query_image=wide,
        target_identity="P",
        candidates=[
            CandidateInput(rank=r, identity="P", image=wide.read_bytes(), is_true=r == 1)
            for r in range(1, 6)
        ],
        provenance={"note": "synthetic"},
    )
    with match_set.query_image.open("rb") as handle, Image.open(handle) as rendered:
        assert rendered.size == (224, 224)
        red, _green, blue = rendered.convert("RGB").getpixel((2, 112))
        # The red sides were cropped away: the left edge is blue.
        assert blue > 200
        assert red < 60


def test_command_prints_a_summary(tmp_path):
    write(tmp_path, manifest_folder(tmp_path, count=2))
    out = _call(str(tmp_path))
    assert "Imported 2 match set(s) (eigenfaces 1, nbnet 1) into new study 'pilot'" in out
    assert "draft" in out


def test_command_lists_each_problem_and_fails(tmp_path):
    data = manifest_folder(tmp_path, count=4)
    _rank_outside(data)
    _duplicate_key(data)
    write(tmp_path, data)
    with pytest.raises(CommandError) as caught:
        _call(str(tmp_path))
    message = str(caught.value)
    assert "2 problem(s)" in message
    assert "nothing was imported" in message
    assert "\n  match_sets[1] (key ms-002): candidate rank 6 is outside 1..5" in message
    assert "\n  match_sets[2] (key ms-001): duplicate key (also match_sets[0])" in message
    assert not MatchSet.objects.exists()


def test_command_exits_non_zero_on_problems(tmp_path):
    (tmp_path / "manifest.json").write_text("{oops")
    result = subprocess.run(
        [sys.executable, "manage.py", "import_matchsets", str(tmp_path)],
        cwd=settings.BASE_DIR,
        env={
            "PATH": "/usr/bin:/bin",
            "FVR_VAR_DIR": str(tmp_path / "var"),
            # DEBUG is off: the settings refuse to start without keys.
            "DJANGO_SECRET_KEY": settings.SECRET_KEY,
            "FVR_PSEUDONYM_KEY": settings.FVR_PSEUDONYM_KEY,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "manifest.json: invalid JSON at line 1, column 2" in result.stderr


def _call(*args: str) -> str:
    out = StringIO()
    call_command("import_matchsets", *args, stdout=out)
    return out.getvalue()
