"""survey.faces: a match set's candidates read once per process, never confused or stale."""

import pytest

from survey import faces
from survey.faces import CandidateFace, candidate_faces
from survey.models import Candidate, MatchSet
from tests.factories import MatchSetFactory, StudyFactory, synthetic_jpeg

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def empty_store(monkeypatch):
    """Each test starts from an empty store of this process's candidates (and leaves the real
    one as it was)."""
    monkeypatch.setattr(faces, "_kept", {})


def test_faces_in_rank_order_with_urls_read_once(django_assert_num_queries):
    study = StudyFactory()
    first = MatchSetFactory(study=study, candidates__true_rank=3)
    second = MatchSetFactory(study=study, candidates__true_rank=0)
    with django_assert_num_queries(1):  # both, in one query
        faces_first, faces_second = candidate_faces(first, second)
    rows = Candidate.objects.filter(match_set=first).order_by("rank")
    assert faces_first == tuple(CandidateFace(c.rank, c.image.name, c.is_true) for c in rows)
    assert [f.url for f in faces_first] == [c.image.url for c in rows]
    assert [f.rank for f in faces_first if f.is_true] == [3]
    assert not any(f.is_true for f in faces_second)
    with django_assert_num_queries(0):
        assert candidate_faces(second, first) == [faces_second, faces_first]
    third = MatchSetFactory(study=study)
    with django_assert_num_queries(1):  # only the one not seen yet
        _, faces_third = candidate_faces(first, third)
    assert len(faces_third) == study.k


def test_match_set_recreated_under_the_same_id_is_not_taken_for_the_old_one():
    study = StudyFactory()
    old = MatchSetFactory(study=study, candidates__true_rank=1)
    (before,) = candidate_faces(old)
    pk = old.pk
    old.delete()
    # A new import that gets the same row id (SQLite reuses them): new images, new truth.
    new = MatchSet.objects.create(
        pk=pk,
        study=study,
        key="again",
        method=old.method,
        target_identity="Someone else",
        query_image=synthetic_jpeg(777),
    )
    for rank in range(1, study.k + 1):
        Candidate.objects.create(
            match_set=new,
            rank=rank,
            identity=f"x{rank}",
            image=synthetic_jpeg(800 + rank),
            is_true=rank == 4,
        )
    (after,) = candidate_faces(MatchSet.objects.get(pk=pk))
    assert [f.rank for f in after if f.is_true] == [4]
    assert {f.image_name for f in after}.isdisjoint(f.image_name for f in before)


def test_match_set_seen_without_candidates_is_read_again():
    study = StudyFactory()
    bare = MatchSet.objects.create(
        study=study,
        key="bare",
        method="eigenfaces",
        target_identity="P",
        query_image=synthetic_jpeg(901),
    )
    assert candidate_faces(bare) == [()]
    Candidate.objects.create(
        match_set=bare, rank=1, identity="P", image=synthetic_jpeg(902), is_true=True
    )
    (found,) = candidate_faces(bare)
    assert [(f.rank, f.is_true) for f in found] == [(1, True)]
