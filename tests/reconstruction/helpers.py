"""A tiny reconstructed LFW subset, shared by the tests of what is built from reconstructions."""

from pathlib import Path

import pytest

from reconstruction.methods.eigenfaces import EigenfacesConfig
from reconstruction.models import FaceImage, Reconstruction, Split
from reconstruction.recognizers.embedding import dataset_embed
from reconstruction.services import dataset_import, eigenbasis_train, reconstruction_create
from reconstruction.studies.demo import demo_subset_plan, demo_subset_write

DATASET = "tiny"


def tiny_reconstructed_dataset(face_data: Path, tmp_path: Path) -> list[Reconstruction]:
    """3 target identities (3 photos), 4 train (2), 4 distractors (1); mobileface embeddings;
    a PCA basis; one tiny Eigenfaces reconstruction (F = mobileface) per target identity."""
    from reconstruction.model_store import ModelStoreError
    from reconstruction.recognizers.registry import get_recognizer

    try:
        get_recognizer("mobileface").network("cpu")
    except ModelStoreError as exc:
        pytest.skip(f"mobileface model files unavailable: {exc}")
    plan = demo_subset_plan(faces_root=face_data / "lfw", targets=3, train=4, distractors=4, seed=5)
    root = demo_subset_write(plan=plan, dest=tmp_path / "faces")
    dataset_import(
        name=DATASET, path=root, splits="target=0.27@3,train=0.37@2,gallery=0.36", progress=False
    )
    dataset_embed(dataset=DATASET, recognizer="mobileface", progress=False)
    basis = eigenbasis_train(dataset=DATASET, method="pca", preset="tiny", progress=False)
    firsts: dict[int, FaceImage] = {}
    for image in (
        FaceImage.objects.ok()
        .filter(identity__split=Split.TARGET)
        .order_by("identity__name", "relative_path")
    ):
        firsts.setdefault(image.identity_id, image)
    return [
        reconstruction_create(
            target=image,
            method="eigenfaces",
            recognizer="mobileface",
            config=EigenfacesConfig.tiny(),
            seed=1,
            artifact=basis,
            progress=False,
        )[0]
        for image in firsts.values()
    ]
