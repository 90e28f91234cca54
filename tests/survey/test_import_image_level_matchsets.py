"""Image-level match sets (build_study's default, Metric 1's top-K) import as they are: several
photos of the target, or of one wrong identity, may fill several of the K places."""

import pytest

from survey.matchsets import matchsets_import
from survey.models import MatchSet
from tests.survey.matchset_helpers import manifest_folder, write

pytestmark = pytest.mark.django_db


def test_several_true_photos_and_repeated_wrong_identities_are_accepted(tmp_path):
    data = manifest_folder(tmp_path, count=1)
    item = data["match_sets"][0]
    # ranks 1 and 3: two photos of the target; ranks 2, 4 and 5: three photos of one stranger.
    for candidate in item["candidates"]:
        true = candidate["rank"] in (1, 3)
        candidate["is_true"] = true
        candidate["identity"] = item["target_identity"] if true else "Stranger"
    item["provenance"]["match_sets"] = "image"
    report = matchsets_import(path=write(tmp_path, data))
    assert report.ok, report.problems
    match_set = MatchSet.objects.get(key=item["key"])
    assert match_set.provenance["match_sets"] == "image"
    stored = [(c.rank, c.identity, c.is_true) for c in match_set.candidates.order_by("rank")]
    assert stored == [
        (1, "Person 0", True),
        (2, "Stranger", False),
        (3, "Person 0", True),
        (4, "Stranger", False),
        (5, "Stranger", False),
    ]
