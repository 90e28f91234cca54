"""The Rekognition adapter's real boto3 calls, answered by botocore's Stubber."""

import boto3
import pytest
from botocore.stub import Stubber

from reconstruction.metric1.engines import GalleryImage, get_engine, ranked_matrix
from reconstruction.metric1.engines.rekognition import (
    RekognitionEngine,
    external_id,
    sanitize_identity,
)
from reconstruction.metric1.scoring import FP, NO_MATCH, TP, outcomes_from_ranked

COLLECTION = "fvr-metric1-test"


@pytest.fixture
def client():
    return boto3.client(
        "rekognition",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def engine(client):
    sleeps: list[float] = []
    adapter = get_engine(
        "rekognition", collection_id=COLLECTION, client=client, sleep=sleeps.append
    )
    adapter.sleeps = sleeps
    return adapter


def face(external: str, face_id: str = "11111111-1111-1111-1111-111111111111") -> dict:
    return {"FaceId": face_id, "ExternalImageId": external}


def test_identity_names_are_sanitised_without_collisions():
    assert sanitize_identity("Abdullah_Gul") == "Abdullah_Gul"
    odd = sanitize_identity("José María:Aznar")
    assert ":" not in odd
    assert " " not in odd
    assert odd != sanitize_identity("Jose Maria:Aznar")
    assert external_id("A B", "17").endswith(":17")


def test_partial_enrolment_resumes_retries_throttling_and_records_faceless_images(engine, client):
    images = [
        GalleryImage("Ann Lee", "1", b"jpeg-1"),  # indexed in an earlier, interrupted run
        GalleryImage("Bob", "2", b"jpeg-2"),
        GalleryImage("Bob", "3", b"jpeg-3"),  # no face found
    ]
    with Stubber(client) as stub:
        stub.add_client_error(
            "create_collection",
            service_error_code="ResourceAlreadyExistsException",
            http_status_code=400,
        )
        stub.add_response(
            "list_faces",
            {"Faces": [face(external_id("Ann Lee", "1"))], "NextToken": "page-2"},
            {"CollectionId": COLLECTION, "MaxResults": 4096},
        )
        stub.add_response(
            "list_faces",
            {"Faces": []},
            {"CollectionId": COLLECTION, "MaxResults": 4096, "NextToken": "page-2"},
        )
        index_bob = {
            "CollectionId": COLLECTION,
            "Image": {"Bytes": b"jpeg-2"},
            "ExternalImageId": "Bob:2",
            "MaxFaces": 1,
            "QualityFilter": "AUTO",
            "DetectionAttributes": [],
        }
        stub.add_client_error(
            "index_faces", service_error_code="ThrottlingException", http_status_code=400
        )
        stub.add_client_error(
            "index_faces",
            service_error_code="ProvisionedThroughputExceededException",
            http_status_code=400,
        )
        stub.add_response("index_faces", {"FaceRecords": [{"Face": face("Bob:2")}]}, index_bob)
        stub.add_response("index_faces", {"FaceRecords": [], "UnindexedFaces": []})
        summary = engine.enrol(images)
        stub.assert_no_pending_responses()
    assert (summary.indexed, summary.skipped, summary.no_face) == (1, 1, ["3"])
    assert engine.sleeps == [0.5, 1.0]  # exponential backoff
    assert engine.retries == 2


def test_throttling_gives_up_after_max_retries(client):
    from botocore.exceptions import ClientError

    adapter = RekognitionEngine(
        collection_id=COLLECTION, client=client, max_retries=1, sleep=lambda s: None
    )
    with Stubber(client) as stub:
        for _ in range(2):
            stub.add_client_error("delete_collection", service_error_code="ThrottlingException")
        with pytest.raises(ClientError, match="Throttling"):
            adapter.cleanup()


def test_search_returns_identities_best_first_and_no_face_as_an_outcome(engine, client):
    engine.identities[sanitize_identity("Ann Lee")] = "Ann Lee"
    with Stubber(client) as stub:
        stub.add_response(
            "search_faces_by_image",
            {
                "FaceMatches": [
                    {"Similarity": 81.0, "Face": face(external_id("Ann Lee", "1"))},
                    {"Similarity": 97.5, "Face": face("Bob:2")},
                ]
            },
            {
                "CollectionId": COLLECTION,
                "Image": {"Bytes": b"query"},
                "MaxFaces": 5,
                "FaceMatchThreshold": 80.0,
                "QualityFilter": "NONE",
            },
        )
        stub.add_client_error(
            "search_faces_by_image",
            service_error_code="InvalidParameterException",
            service_message="There are no faces in the image. Should be at least 1.",
        )
        stub.add_response("search_faces_by_image", {"FaceMatches": []})
        found = engine.search(b"query", k=5, threshold=80.0)
        faceless = engine.search(b"noise", k=5, threshold=80.0)
        nothing = engine.search(b"other", k=5, threshold=80.0)
    assert [(m.identity, m.key, m.similarity) for m in found.matches] == [
        ("Bob", "2", 97.5),
        ("Ann Lee", "1", 81.0),
    ]
    assert faceless.no_face
    assert not faceless.matches
    labels, scores = ranked_matrix([found, faceless, nothing], {"Ann Lee": 1, "Bob": 2}, k=5)
    outcomes = outcomes_from_ranked(labels, scores, [1, 1, 2], k=1, threshold=80.0)
    assert outcomes.tolist() == [FP, NO_MATCH, NO_MATCH]
    assert outcomes_from_ranked(labels, scores, [1, 1, 2], k=2).tolist()[0] == TP


def test_dry_run_plan_counts_calls_and_cost_before_sending_anything(engine, client):
    with Stubber(client) as stub:  # any call would fail: nothing is stubbed
        plan = engine.plan(gallery=1000, queries=40, already_indexed=0)
        stub.assert_no_pending_responses()
    assert plan.calls["IndexFaces"] == 1000
    assert plan.calls["SearchFacesByImage"] == 40
    assert plan.cost == pytest.approx(1.04)
    assert "estimated cost $1.04" in plan.describe()
    cheaper = RekognitionEngine(collection_id=COLLECTION, client=client, price_per_1000=0.4)
    assert cheaper.plan(gallery=1000, queries=0).cost == pytest.approx(0.4)


def test_cleanup_deletes_the_collection_once(engine, client):
    with Stubber(client) as stub:
        stub.add_response("delete_collection", {"StatusCode": 200}, {"CollectionId": COLLECTION})
        stub.add_client_error("delete_collection", service_error_code="ResourceNotFoundException")
        assert engine.cleanup() is True
        assert engine.cleanup() is False


def test_invalid_collection_id_is_refused():
    with pytest.raises(ValueError, match="collection id"):
        RekognitionEngine(collection_id="bad id!")


def test_strict_enrolment_refuses_a_collection_of_another_gallery_before_indexing(engine, client):
    from reconstruction.metric1.engines import EngineError

    with Stubber(client) as stub:
        stub.add_response("create_collection", {"StatusCode": 200})
        stub.add_response("list_faces", {"Faces": [face("Carl:9"), face(external_id("Ann", "1"))]})
        # No index_faces is queued: indexing anything would fail the Stubber.
        with pytest.raises(EngineError, match=r"holds 1 faces .*'Carl:9'.*rekognition_cleanup"):
            engine.enrol([GalleryImage("Ann", "1", b"jpeg-1")], strict=True)
        stub.assert_no_pending_responses()


def test_missing_or_refused_credentials_name_the_aws_variables(client, tmp_path, monkeypatch):
    from reconstruction.metric1.engines import EngineError

    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # never AWS, whatever happens
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    with pytest.raises(EngineError, match="pass --region"):
        RekognitionEngine(collection_id=COLLECTION).cleanup()
    unsigned = RekognitionEngine(collection_id=COLLECTION, region="us-east-1")
    with pytest.raises(EngineError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        unsigned.cleanup()
    refused = RekognitionEngine(collection_id=COLLECTION, client=client)
    with Stubber(client) as stub:
        stub.add_client_error(
            "delete_collection",
            service_error_code="UnrecognizedClientException",
            service_message="The security token included in the request is invalid.",
        )
        with pytest.raises(EngineError, match="AWS refused the credentials"):
            refused.cleanup()
