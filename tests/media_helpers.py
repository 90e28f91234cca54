"""Files as the models name them: the private kinds that reconstruction/ stores, and PNG bytes."""

from reconstruction.models import (
    FaceDataset,
    FaceImage,
    Reconstruction,
    ReconstructorArtifact,
    aligned_upload_to,
    artifact_upload_to,
    reconstruction_upload_to,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def private_names() -> dict[str, str]:
    """What reconstruction/ stores: an aligned dataset crop, a reconstruction, fitted weights."""
    dataset = FaceDataset(name="lfw")
    return {
        "crop": aligned_upload_to(FaceImage(dataset=dataset), "Ann_Doe_0001-0a1b2c3d4e5f-112.png"),
        "reconstruction": reconstruction_upload_to(
            Reconstruction(method="eigenfaces", recognizer="mobileface"), "target-1.png"
        ),
        "weights": artifact_upload_to(
            ReconstructorArtifact(method="nbnet", kind="weights", sha256="ab" * 32), "nbnet.pt"
        ),
    }
