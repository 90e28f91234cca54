"""Amazon Rekognition as F' (boto3): one collection per gallery, IndexFaces to enrol,
SearchFacesByImage for the top-K (Wenger et al. §V, "commercial systems").

- Enrolment: ``IndexFaces(MaxFaces=1)`` per gallery image with ``ExternalImageId =
  "<identity>:<key>"``: the identity sanitised to Rekognition's pattern ``[a-zA-Z0-9_.\\-:]+``
  (``:`` is reserved as the separator; a name that had to change gets a short hash suffix so
  two names never collide; `identity_of` maps back). It resumes: ``ListFaces`` first, and
  images whose ExternalImageId is already in the collection are skipped. An image in which
  Rekognition indexes no face is recorded (``EnrolSummary.no_face``), not retried.
- Search: ``SearchFacesByImage(MaxFaces=K, FaceMatchThreshold=T)``; Rekognition answers
  ``InvalidParameterException`` when the query holds no face: recorded as
  ``SearchResult(no_face=True)`` (a "no match" in Metric 1, counted separately).
- Throttling (``ThrottlingException``, ``ProvisionedThroughputExceededException``) is retried
  with exponential backoff (``base_delay · 2^attempt``, up to ``max_retries``); botocore's
  own retries are switched off for the client this module builds so the count is ours.
- Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID`` /
  ``AWS_SECRET_ACCESS_KEY`` [/ ``AWS_SESSION_TOKEN``], ``AWS_PROFILE``, an instance role);
  missing or refused credentials and a missing region raise `EngineError` naming them.
- Cost: `plan` counts the calls before anything is sent. Assumption (us-east-1 list price,
  2024): IndexFaces and SearchFacesByImage are "Group 1" image APIs at $1.00 per 1000
  images for the first million a month (``price_per_1000``); CreateCollection, ListFaces
  and DeleteCollection are not billed; face storage ($0.00001 per face-month) is ignored.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from reconstruction.metric1.engines import (
    CallPlan,
    EngineError,
    EnrolSummary,
    GalleryImage,
    Match,
    SearchResult,
)

__all__ = [
    "DEFAULT_FACE_MATCH_THRESHOLD",
    "PRICE_PER_1000",
    "RekognitionEngine",
    "external_id",
    "sanitize_identity",
]

PRICE_PER_1000 = 1.00  # USD per 1000 Group 1 calls (IndexFaces, SearchFacesByImage)
THROTTLING = {"ThrottlingException", "ProvisionedThroughputExceededException"}
_UNSAFE = re.compile(r"[^a-zA-Z0-9_.\-]")
LIST_PAGE = 4096  # ListFaces' largest page
MAX_FACES = 4096  # SearchFacesByImage's largest MaxFaces
# SearchFacesByImage's FaceMatchThreshold when the request leaves it out (AWS API reference:
# "The default value is 80").
DEFAULT_FACE_MATCH_THRESHOLD = 80.0
CREDENTIALS_HELP = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for temporary "
    "credentials), or AWS_PROFILE for a profile in ~/.aws/credentials"
)
REFUSED = {
    "AccessDeniedException",
    "ExpiredTokenException",
    "InvalidSignatureException",
    "UnrecognizedClientException",
}


def sanitize_identity(name: str) -> str:
    """``name`` in Rekognition's ExternalImageId alphabet (without ``:``), collision-free."""
    safe = _UNSAFE.sub("_", name)[:200] or "_"
    if safe != name:
        safe = f"{safe}.{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return safe


def external_id(identity: str, key: str) -> str:
    """The ExternalImageId of one gallery image: sanitised identity, ``:``, sanitised key."""
    return f"{sanitize_identity(identity)}:{_UNSAFE.sub('_', key)[:40]}"


class RekognitionEngine:
    """One Rekognition collection holding one gallery."""

    name = "rekognition"
    max_k = MAX_FACES
    default_threshold = DEFAULT_FACE_MATCH_THRESHOLD

    def __init__(
        self,
        *,
        collection_id: str,
        client: Any = None,
        region: str | None = None,
        price_per_1000: float = PRICE_PER_1000,
        max_retries: int = 6,
        base_delay: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not re.fullmatch(r"[a-zA-Z0-9_.\-]{1,255}", collection_id):
            raise ValueError(f"invalid Rekognition collection id {collection_id!r}")
        self.collection_id = collection_id
        self._client = client
        self.region = region
        self.price_per_1000 = price_per_1000
        self.max_retries = max_retries
        self.base_delay = base_delay
        self.sleep = sleep
        self.identities: dict[str, str] = {}  # sanitised → original identity name
        self.retries = 0

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config
            from botocore.exceptions import NoRegionError

            try:
                self._client = boto3.client(
                    "rekognition",
                    region_name=self.region,
                    config=Config(retries={"total_max_attempts": 1}),
                )
            except NoRegionError as exc:
                raise EngineError(
                    "No AWS region for Rekognition: pass --region (e.g. us-east-1) or set "
                    "AWS_DEFAULT_REGION."
                ) from exc
        return self._client

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """One API call, retried with exponential backoff while throttled."""
        from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

        for attempt in range(self.max_retries + 1):
            try:
                return getattr(self.client, operation)(**params)
            except (NoCredentialsError, PartialCredentialsError) as exc:
                raise EngineError(
                    f"No AWS credentials for Rekognition: {CREDENTIALS_HELP}."
                ) from exc
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in REFUSED:
                    raise EngineError(
                        f"AWS refused the credentials ({code}: "
                        f"{exc.response.get('Error', {}).get('Message', '')}): {CREDENTIALS_HELP}, "
                        "for an identity allowed to use Rekognition."
                    ) from exc
                if code not in THROTTLING or attempt == self.max_retries:
                    raise
                self.retries += 1
                self.sleep(self.base_delay * 2**attempt)
        raise AssertionError("unreachable")

    def plan(self, *, gallery: int, queries: int, already_indexed: int = 0) -> CallPlan:
        """The calls a run would make (no request is sent)."""
        return CallPlan(
            calls={
                "CreateCollection": 1,
                "ListFaces": 1 + already_indexed // LIST_PAGE,
                "IndexFaces": max(0, gallery - already_indexed),
                "SearchFacesByImage": queries,
                "DeleteCollection": 1,
            },
            price_per_1000=self.price_per_1000,
            billed=("IndexFaces", "SearchFacesByImage"),
        )

    def collection_ensure(self) -> bool:
        """Create the collection unless it exists; True when it was created."""
        from botocore.exceptions import ClientError

        try:
            self._call("create_collection", CollectionId=self.collection_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceAlreadyExistsException":
                return False
            raise
        return True

    def indexed_ids(self) -> set[str]:
        """ExternalImageIds already in the collection (all ListFaces pages)."""
        found: set[str] = set()
        params: dict[str, Any] = {"CollectionId": self.collection_id, "MaxResults": LIST_PAGE}
        while True:
            page = self._call("list_faces", **params)
            found.update(
                f["ExternalImageId"] for f in page.get("Faces", []) if "ExternalImageId" in f
            )
            token = page.get("NextToken")
            if not token:
                return found
            params["NextToken"] = token

    def enrol(self, images: Iterable[GalleryImage], *, strict: bool = False) -> EnrolSummary:
        """Index each image's largest face; images already in the collection are skipped.

        ``strict``: refuse, before indexing anything, a collection that holds faces of images
        not in ``images`` (another gallery's: they would show up in searches).
        """
        images = list(images)
        summary = EnrolSummary()
        self.collection_ensure()
        summary.calls += 1
        present = self.indexed_ids()
        summary.calls += 1
        if strict:
            foreign = present - {external_id(i.identity, i.key) for i in images}
            if foreign:
                raise EngineError(
                    f"Rekognition collection {self.collection_id!r} holds {len(foreign)} faces "
                    f"that are not in this gallery (e.g. {sorted(foreign)[0]!r}): choose another "
                    f"collection, or delete it with `manage.py rekognition_cleanup "
                    f"{self.collection_id}`."
                )
        for image in images:
            self.identities[sanitize_identity(image.identity)] = image.identity
            wanted = external_id(image.identity, image.key)
            if wanted in present:
                summary.skipped += 1
                continue
            response = self._call(
                "index_faces",
                CollectionId=self.collection_id,
                Image={"Bytes": image.data},
                ExternalImageId=wanted,
                MaxFaces=1,
                QualityFilter="AUTO",
                DetectionAttributes=[],
            )
            summary.calls += 1
            if response.get("FaceRecords"):
                summary.indexed += 1
                present.add(wanted)
            else:
                summary.no_face.append(image.key)
        return summary

    def identity_of(self, external_image_id: str) -> str:
        """The original identity name of an ExternalImageId written by `enrol`."""
        safe = external_image_id.rsplit(":", 1)[0]
        return self.identities.get(safe, safe)

    def search(self, image: bytes, *, k: int, threshold: float) -> SearchResult:
        """Top-``k`` faces ≥ ``threshold`` (Rekognition's 0–100 similarity), best first."""
        from botocore.exceptions import ClientError

        try:
            response = self._call(
                "search_faces_by_image",
                CollectionId=self.collection_id,
                Image={"Bytes": image},
                MaxFaces=k,
                FaceMatchThreshold=threshold,
                QualityFilter="NONE",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidParameterException":
                return SearchResult(no_face=True)
            raise
        matches = []
        for match in sorted(response.get("FaceMatches", []), key=lambda m: -m["Similarity"]):
            external = match["Face"].get("ExternalImageId", "")
            matches.append(
                Match(
                    identity=self.identity_of(external),
                    key=external.rsplit(":", 1)[-1],
                    similarity=float(match["Similarity"]),
                )
            )
        return SearchResult(matches=tuple(matches[:k]))

    def cleanup(self) -> bool:
        """Delete the collection (and every face in it); False if it did not exist."""
        from botocore.exceptions import ClientError

        try:
            self._call("delete_collection", CollectionId=self.collection_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return False
            raise
        return True
