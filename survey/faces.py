"""A match set's candidate faces, kept per process: they never change once imported.

Every question shown and every answer needs its match set's candidates (rank, image, whether
the face is the target's). Imports create match sets with their candidates in one transaction
and the admin shows them read-only, so a process keeps them after the first read instead of
querying them per request. The key includes the query image's stored name — a random name per
import — so a match set deleted and re-created under a reused row id (SQLite reuses ids) is
never mistaken for the old one. Image *names* are kept, not URLs: with S3 storage a URL is
presigned and short-lived, so it is made per request.
"""

from dataclasses import dataclass

from survey.models import Candidate, MatchSet

MAX_KEPT = 20_000  # match sets; a few MB. Past this the store starts again (studies are small).
_kept: dict[tuple[int, str], tuple["CandidateFace", ...]] = {}


@dataclass(frozen=True, slots=True)
class CandidateFace:
    rank: int
    image_name: str
    is_true: bool

    @property
    def url(self) -> str:
        return Candidate._meta.get_field("image").storage.url(self.image_name)


def candidate_faces(*match_sets: MatchSet) -> list[tuple[CandidateFace, ...]]:
    """Each match set's candidates in rank order; those this process has not seen yet are
    read in one query."""
    keys = [(m.pk, m.query_image.name) for m in match_sets]
    faces = [_kept.get(key) for key in keys]
    missing = {key[0] for key, found in zip(keys, faces, strict=True) if found is None}
    if not missing:
        return faces
    read: dict[int, list[CandidateFace]] = {}
    rows = (
        Candidate.objects.filter(match_set_id__in=missing)
        .order_by("match_set_id", "rank")
        .values_list("match_set_id", "rank", "image", "is_true")
    )
    for match_set_id, rank, image, is_true in rows:
        read.setdefault(match_set_id, []).append(CandidateFace(rank, image, is_true))
    if len(_kept) + len(read) > MAX_KEPT:
        _kept.clear()
    for i, key in enumerate(keys):
        if faces[i] is None:
            faces[i] = tuple(read.get(key[0], ()))
            if faces[i]:  # never remember a match set seen without its candidates
                _kept[key] = faces[i]
    return faces
