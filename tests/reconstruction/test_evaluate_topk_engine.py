"""evaluate_topk --engine rekognition: the real Rekognition adapter and boto3 client, with
AWS's answers recorded by botocore's Stubber, on a few imported LFW identities."""

import io
import math
import shutil
from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore.stub import Stubber
from django.core.management import CommandError, call_command

from reconstruction.metric1 import scoring as metric1
from reconstruction.metric1.engines import ENGINES
from reconstruction.metric1.engines.rekognition import RekognitionEngine, external_id
from reconstruction.models import FaceImage, Reconstruction, TopKRun
from reconstruction.services import dataset_import, eigenbasis_train, reconstruct_targets

# 3 photos: basis (train); 2 photos: targets (one reconstructed, one left enrolled);
# 1 photo: distractors. (The shared `tiny_lfw` has one photo per target: with the source
# photo left out, a true identity would have nothing enrolled.)
IDENTITIES = {
    "Abdullah_al-Attiyah": 3,
    "Adel_Al-Jubeir": 3,
    "Aaron_Sorkin": 2,
    "Adam_Scott": 2,
    "AJ_Cook": 1,
    "AJ_Lamas": 1,
    "Aaron_Eckhart": 1,
    "Aaron_Guiel": 1,
}
COLLECTION = "fvr-engine-test"
AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


@pytest.fixture
def reconstructed(face_data: Path, tmp_path: Path, mobileface) -> str:
    """Dataset `tiny`: 2 target identities × 2 photos, 4 gallery identities, 4 Eigenfaces runs."""
    root = tmp_path / "lfw-tiny"
    for name, count in IDENTITIES.items():
        (root / name).mkdir(parents=True)
        for path in sorted((face_data / "lfw" / name).glob("*.jpg"))[:count]:
            shutil.copy(path, root / name / path.name)
    dataset_import(
        name="tiny", path=root, splits="train=0.25@3,target=0.25@2,gallery=0.5", progress=False
    )
    basis = eigenbasis_train(dataset="tiny", method="pca", preset="tiny", progress=False)
    for seed in (0, 1):
        reconstruct_targets(
            dataset="tiny",
            method="eigenfaces",
            recognizer="mobileface",
            preset="tiny",
            seed=seed,
            artifact_id=basis.pk,
            progress=False,
        )
    return "tiny"


@pytest.fixture
def stubbed(monkeypatch):
    """The command's engine gets a real boto3 client whose calls are recorded and stubbed."""
    client = boto3.client(
        "rekognition",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    sent: list[tuple[str, dict]] = []
    sleeps: list[float] = []

    def record(params: dict, model, **kwargs) -> None:
        sent.append((model.name, dict(params)))

    client.meta.events.register("provide-client-params.rekognition.*", record)
    real = ENGINES["rekognition"]
    monkeypatch.setitem(
        ENGINES,
        "rekognition",
        lambda **options: RekognitionEngine(client=client, sleep=sleeps.append, **options),
    )
    return client, sent, sleeps, real


def face(image: FaceImage) -> dict:
    return {
        "FaceId": f"00000000-0000-0000-0000-{image.pk:012d}",
        "ExternalImageId": external_id(image.identity.name, str(image.pk)),
    }


def matches(*pairs: tuple[FaceImage, float]) -> dict:
    return {"FaceMatches": [{"Similarity": s, "Face": face(i)} for i, s in pairs]}


@pytest.mark.django_db
@pytest.mark.facedata
def test_engine_run_scores_every_k_from_one_search_per_query(reconstructed, stubbed, tmp_path):
    client, sent, sleeps, _ = stubbed
    recs = sorted(
        Reconstruction.objects.select_related("target"), key=lambda r: (r.target_id, r.pk)
    )
    assert len(recs) == 4
    t1a, t2a = recs[0].target, recs[2].target  # the reconstructed (source) photos
    assert recs[1].target == t1a
    assert recs[3].target == t2a

    def other(image: FaceImage) -> FaceImage:
        return FaceImage.objects.ok().filter(identity=image.identity).exclude(pk=image.pk).get()

    t1b, t2b = other(t1a), other(t2a)
    g1, g2, _, g4 = FaceImage.objects.ok().filter(identity__split="gallery").order_by("pk")
    enrolled = sorted(
        FaceImage.objects.ok().filter(identity__split__in=["target", "gallery"]),
        key=lambda i: (i.identity_id, i.relative_path),
    )
    assert len(enrolled) == 8  # N = 5: both true identities + all 4 gallery identities

    with Stubber(client) as stub:
        stub.add_response("create_collection", {"StatusCode": 200}, {"CollectionId": COLLECTION})
        # g1 was indexed by an earlier, interrupted run: it is skipped.
        stub.add_response("list_faces", {"Faces": [face(g1)]})
        for image in enrolled:
            if image != g1:
                stub.add_response(
                    "index_faces",
                    {"FaceRecords": [] if image == g4 else [{"Face": face(image)}]},
                )
        stub.add_client_error("search_faces_by_image", service_error_code="ThrottlingException")
        # Reconstructions (T1 seed 0, T1 seed 1, T2 seed 0, T2 seed 1).
        stub.add_response("search_faces_by_image", matches((t1a, 99), (g1, 90), (t1b, 85)))
        stub.add_response("search_faces_by_image", matches((g1, 93), (g2, 91)))
        stub.add_response(
            "search_faces_by_image", matches((t1b, 95), (g2, 88))
        )  # T1: not enrolled for T2
        stub.add_response("search_faces_by_image", matches((t2b, 89)))
        # Photo baselines: T1's photo; T2's photo where Rekognition finds no face.
        stub.add_response("search_faces_by_image", matches((t1a, 100), (t1b, 97)))
        stub.add_client_error(
            "search_faces_by_image",
            service_error_code="InvalidParameterException",
            service_message="There are no faces in the image. Should be at least 1.",
        )
        # Random-face baselines (truth T1, then T2).
        stub.add_response("search_faces_by_image", {"FaceMatches": []})
        stub.add_response("search_faces_by_image", matches((t1a, 92), (t2b, 81)))
        out = io.StringIO()
        call_command(
            "evaluate_topk", "--dataset", reconstructed, "--engine", "rekognition",
            "--collection", COLLECTION, "--n", "5", "--k", "1,2", "--include-source",
            "--drop-other-targets", "--out", str(tmp_path / "out"), stdout=out,
        )  # fmt: skip
        stub.assert_no_pending_responses()

    searches = [params for name, params in sent if name == "SearchFacesByImage"]
    assert len(searches) == 9  # 8 queries, one throttled and retried
    assert sleeps == [0.5]
    # max K + the 4 photos of true identities that a query's answer may drop.
    assert {(p["MaxFaces"], p["FaceMatchThreshold"]) for p in searches} == {(6, 80.0)}
    assert searches[1]["Image"]["Bytes"] == recs[0].image.open("rb").read()
    root = Path(t1a.dataset.root)
    assert searches[5]["Image"]["Bytes"] == (root / t1a.relative_path).read_bytes()
    indexed = [p for name, p in sent if name == "IndexFaces"]
    assert [p["ExternalImageId"] for p in indexed] == [
        external_id(i.identity.name, str(i.pk)) for i in enrolled if i != g1
    ]
    assert indexed[0]["Image"]["Bytes"] == (root / enrolled[0].relative_path).read_bytes()

    run = TopKRun.objects.get()
    assert (run.recognizer, run.gallery_n, run.k, run.ks, run.ns) == (
        "rekognition",
        5,
        2,
        [1, 2],
        [],
    )
    assert (run.sweep, run.trials, run.threshold, run.queries) == ("k", 1, 80.0, 8)
    assert run.config["collection"] == COLLECTION
    assert run.config["max_faces"] == 6
    assert sorted(run.config["distractor_identity_ids"]) == sorted(
        {g.identity_id for g in FaceImage.objects.filter(identity__split="gallery")}
    )
    assert run.results["enrolment"] == {
        "indexed": 6, "skipped": 1, "no_face": [str(g4.pk)], "calls": 9,
    }  # fmt: skip
    assert run.results["retries"] == 1
    assert [q["no_face"] for q in run.results["queries"]] == [False] * 5 + [True, False, False]

    rows = {(r["variant"], r["group"], r["k"]): r for r in run.results["rows"]}
    expected = {
        # (tpr, fpr, no match, Table II most frequent class share, non-unique share)
        ("excluded", "eigenfaces", 1): (0.25, 0.75, 0, 2 / 3, 2 / 3),
        ("excluded", "eigenfaces", 2): (0.5, 0.5, 0, 0.5, 0),
        ("excluded", "photo", 1): (0.5, 0, 0.5, None, None),
        ("excluded", "photo", 2): (0.5, 0, 0.5, None, None),
        ("excluded", "random", 1): (0.5, 0, 0.5, None, None),
        ("excluded", "random", 2): (0.5, 0, 0.5, None, None),
        ("included", "eigenfaces", 1): (0.5, 0.5, 0, 0.5, 0),
        ("included", "eigenfaces", 2): (0.5, 0.5, 0, 0.5, 0),
        ("included", "photo", 1): (0.5, 0, 0.5, None, None),
        ("included", "random", 2): (0.5, 0, 0.5, None, None),
    }
    for key, (tpr, fpr, no_match, recurring, non_unique) in expected.items():
        row = rows[key]
        assert (row["tpr"], row["fpr"], row["no_match"]) == pytest.approx((tpr, fpr, no_match))
        if recurring is None:  # no false positive: Table II has nothing to share out
            assert (row["fp_recurring_share"], row["fp_non_unique_share"]) == (None, None)
        else:
            assert row["fp_recurring_share"] == pytest.approx(recurring)
            assert row["fp_non_unique_share"] == pytest.approx(non_unique)
        assert (row["n"], row["trials"], row["engine"]) == (5, 1, "rekognition")
    assert len(rows) == 12
    for row in rows.values():
        assert row["tpr"] + row["fpr"] + row["no_match"] == pytest.approx(1)

    names = {Path(p).name for p in run.results["files"]}
    assert names == {
        "metric1_rekognition.csv", "metric1_rekognition.md",
        "metric1_rekognition_vs_k.png", "metric1_rekognition_vs_k.svg",
        "metric1_rekognition_bars.png", "metric1_rekognition_bars.svg",
    }  # fmt: skip
    for name in names:
        assert (tmp_path / "out" / name).stat().st_size > 0
    summary = (tmp_path / "out" / "metric1_rekognition.md").read_text()
    assert "N sweep not run for a commercial engine" in summary
    assert (
        "| rekognition / excluded / eigenfaces | 1 | 25.0 (4.6–69.9) | 75.0 | 0.0 | 4 |" in summary
    )
    assert "| rekognition / excluded / eigenfaces | 0.0 | 50.0 | 50.0 |" in summary  # Table II
    assert "other queries' true identities dropped from each answer" in summary
    csv_text = (tmp_path / "out" / "metric1_rekognition.csv").read_text()
    assert csv_text.count("\n") == 13  # header + 12 rows
    text = out.getvalue()
    assert "eigenfaces: tpr 50.0% fpr 50.0% no match 0.0% (N = 5, K = 2)" in text
    assert "photo: tpr 50.0% fpr 0.0% no match 50.0%" in text
    assert "N sweep not run" in text
    assert f"rekognition_cleanup {COLLECTION}" in text


@pytest.mark.django_db
@pytest.mark.facedata
def test_dry_run_sends_nothing_and_missing_credentials_name_the_aws_variables(
    reconstructed, stubbed, tmp_path, monkeypatch
):
    client, sent, _, real = stubbed
    out = io.StringIO()
    with Stubber(client) as stub:  # nothing queued: any request would fail
        call_command(
            "evaluate_topk", "--dataset", reconstructed, "--engine", "rekognition",
            "--dry-run", "--n", "5", "--k", "5,10", "--out", str(tmp_path / "out"), stdout=out,
        )  # fmt: skip
        stub.assert_no_pending_responses()
    assert sent == []
    text = out.getvalue()
    assert "Dry run: nothing sent to rekognition." in text
    assert "collection fvr-tiny-n5-s0-" in text
    assert "Gallery: 6 identities (4 drawn distractors + the true ones), 8 photos" in text
    assert "Queries: 8 (eigenfaces 4, photo 2, random 2)" in text
    assert "MaxFaces = 11" in text  # K 10 + the source photo, dropped in the excluded variant
    assert "Other queries' true identities: kept in each answer" in text
    assert "CreateCollection × 1" in text
    assert "IndexFaces × 8" in text
    assert "SearchFacesByImage × 8" in text
    assert "estimated cost $0.02" in text  # 16 billed calls at $1 per 1000
    assert not TopKRun.objects.exists()
    assert not (tmp_path / "out").exists()

    with pytest.raises(CommandError, match="N = 50 needs 49 distractor identities, 4 exist"):
        call_command(
            "evaluate_topk", "--dataset", reconstructed, "--engine", "rekognition",
            "--dry-run", "--n", "50",
        )  # fmt: skip

    # A real client without credentials fails before sending anything, naming what to set.
    monkeypatch.setitem(ENGINES, "rekognition", real)
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # never AWS, whatever happens
    with pytest.raises(CommandError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        call_command(
            "evaluate_topk", "--dataset", reconstructed, "--engine", "rekognition",
            "--region", "us-east-1", "--n", "5", "--out", str(tmp_path / "out"),
        )  # fmt: skip
    assert not TopKRun.objects.exists()


@pytest.mark.django_db
@pytest.mark.facedata
def test_engine_defaults_are_the_paper_s_and_other_targets_stay_in_the_answer(
    reconstructed, stubbed, tmp_path
):
    client, sent, _, _ = stubbed
    # The paper's N = 5000 by default: this tiny dataset has 4 distractor identities.
    with pytest.raises(CommandError, match="N = 5000 needs 4999 distractor identities"):
        call_command("evaluate_topk", "--dataset", reconstructed, "--engine", "rekognition")
    recs = sorted(
        Reconstruction.objects.select_related("target"), key=lambda r: (r.target_id, r.pk)
    )
    t1, t2 = recs[0].target, recs[2].target  # the reconstructed (source) photos

    def other(image: FaceImage) -> FaceImage:
        return FaceImage.objects.ok().filter(identity=image.identity).exclude(pk=image.pk).get()

    t1b, t2b = other(t1), other(t2)
    g1, g2 = FaceImage.objects.ok().filter(identity__split="gallery").order_by("pk")[:2]
    with Stubber(client) as stub:
        stub.add_response("create_collection", {"StatusCode": 200}, {"CollectionId": COLLECTION})
        stub.add_response("list_faces", {"Faces": []})
        for image in FaceImage.objects.ok().filter(identity__split__in=["target", "gallery"]):
            stub.add_response("index_faces", {"FaceRecords": [{"Face": face(image)}]})
        # T1 seed 0, T1 seed 1, T2 seed 0, T2 seed 1: the other target answers three of them.
        stub.add_response("search_faces_by_image", matches((t2b, 90), (g1, 85)))
        stub.add_response("search_faces_by_image", matches((t2b, 88)))
        stub.add_response("search_faces_by_image", matches((t1b, 95), (g2, 88)))
        stub.add_response("search_faces_by_image", matches((t2b, 89)))
        call_command(
            "evaluate_topk", "--dataset", reconstructed, "--engine", "rekognition",
            "--collection", COLLECTION, "--n", "5", "--no-baselines",
            "--out", str(tmp_path / "out"), stdout=io.StringIO(),
        )  # fmt: skip
        stub.assert_no_pending_responses()
    searches = [params for name, params in sent if name == "SearchFacesByImage"]
    # K = 5 and Rekognition's default threshold; 1 more face: the source photo may be dropped.
    assert {(p["MaxFaces"], p["FaceMatchThreshold"]) for p in searches} == {(6, 80.0)}
    run = TopKRun.objects.get()
    assert (run.k, run.ks, run.threshold) == (5, [5], 80.0)
    assert run.config["drop_other_targets"] is False
    (row,) = [r for r in run.results["rows"] if r["group"] == "eigenfaces"]
    # Kept, T2 answers T1's queries and T1 answers T2's: 3 false positives of classes
    # [T2, T2, T1] (2 of 3 non-unique); dropped, T1 seed 1 would have no match at all.
    assert (row["tpr"], row["fpr"], row["no_match"]) == pytest.approx((0.25, 0.75, 0))
    assert row["fp_non_unique_share"] == pytest.approx(2 / 3)
    assert row["fp_recurring_share"] == pytest.approx(2 / 3)
    summary = (tmp_path / "out" / "metric1_rekognition.md").read_text()
    assert "other queries' true identities kept in each answer" in summary


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--engine", "azure"], "Unknown engine 'azure'; known: rekognition"),
        (["--engine", "rekognition", "--recognizer", "mobileface"], "not both"),
        ([], "Give --recognizer"),
        (["--engine", "rekognition", "--sweep", "n"], "K sweep only"),
        (["--engine", "rekognition", "--trials", "3"], "one gallery draw"),
        (["--engine", "rekognition", "--by", "identity"], "ranks faces"),
        (["--recognizer", "mobileface", "--dry-run"], "--dry-run needs --engine"),
        (
            ["--recognizer", "mobileface", "--drop-other-targets"],
            "--drop-other-targets needs --engine",
        ),
    ],
)
def test_command_explains_engine_option_mistakes_before_touching_anything(arguments, message):
    # No database access is allowed here: each mistake is caught first.
    with pytest.raises(CommandError, match=message):
        call_command("evaluate_topk", "--dataset", "tiny", *arguments)


def test_distractor_draw_is_the_local_runs_first_gallery_draw():
    # Identity 100 + j has one image e_j; every query's truth is identity 500 (image e_11).
    # Query j scores e_j above the truth, so its top-1 is 100 + j exactly when j is drawn.
    labels = np.array([100 + j for j in range(10)] + [500])
    pool = np.eye(12)[[*range(10), 11]]
    queries = np.eye(12)[:10] + 0.5 * np.eye(12)[11]
    scored = metric1.ScorePool(
        queries,
        truth=[500] * 10,
        sources=[-1] * 10,
        pool=pool,
        pool_labels=labels,
        pool_image_ids=np.arange(11),
    )
    for seed in range(5):
        (trial,) = scored.draw(n=4, ks=(1,), trials=1, rng=np.random.default_rng([seed, 4]))
        drawn = {int(t) for t in trial.top1 if t != 500}
        assert len(drawn) == 3
        assert set(metric1.distractor_draw(labels, [500], n=4, seed=seed).tolist()) == drawn
    with pytest.raises(ValueError, match="N = 12 needs 11 distractor identities, 10 exist"):
        metric1.distractor_draw(labels, [500], n=12, seed=0)


def test_ranked_trial_cuts_every_k_from_one_ranking_with_a_threshold():
    labels = np.array([[2, 1, -1], [3, 3, 2], [1, 2, 3], [-1, -1, -1]])
    scores = np.array([[90, 85, -np.inf], [95, 70, 60], [79, 78, 77], [-np.inf] * 3])
    trial = metric1.ranked_trial(labels, scores, [1, 1, 1, 1], n=10, ks=(1, 2, 3), threshold=80)
    tp, fp, none = metric1.TP, metric1.FP, metric1.NO_MATCH
    assert trial.outcomes.tolist() == [
        [fp, tp, tp],  # the true identity second
        [fp, fp, fp],  # only wrong identities ≥ 80
        [none, none, none],  # nothing ≥ 80
        [none, none, none],  # no face in the query
    ]
    assert trial.top1.tolist() == [2, 3, -1, -1]
    (row,) = [r for r in metric1.summarize([trial]) if r["k"] == 2]
    assert (row["tpr"], row["fpr"], row["no_match"]) == (0.25, 0.25, 0.5)
    assert row["fp_recurring_share"] == 1.0  # the one false positive's top-1 is identity 3
    assert row["fp_non_unique_share"] == 0.0  # ... a class no other false positive shares
    assert math.isclose(row["tpr"] + row["fpr"] + row["no_match"], 1)
