"""Service functions of the reconstruction app: writes that touch several rows or files.

One module per part of the pipeline; everything public is re-exported here, so callers
import from `reconstruction.services`.
"""

from reconstruction.faces.services import ImportSummary, dataset_import
from reconstruction.jobs import JobError, job_enqueue
from reconstruction.methods.reconstructor_training import (
    EMBEDDED_ALIGNED_INPUT,
    ReconstructorTrainError,
    ReconstructorTrainSummary,
    reconstructor_train,
)
from reconstruction.methods.services import (
    ReconstructSummary,
    eigenbasis_train,
    reconstruct_targets,
    reconstruction_create,
)
from reconstruction.metric1.services import topk_evaluate, topk_evaluate_engine
from reconstruction.recognizers.services import (
    ExtractorTrainError,
    ExtractorTrainSummary,
    extractor_train,
)
from reconstruction.studies.services import StudyBuildSummary, study_build

__all__ = [
    "EMBEDDED_ALIGNED_INPUT",
    "ExtractorTrainError",
    "ExtractorTrainSummary",
    "ImportSummary",
    "JobError",
    "ReconstructSummary",
    "ReconstructorTrainError",
    "ReconstructorTrainSummary",
    "StudyBuildSummary",
    "dataset_import",
    "eigenbasis_train",
    "extractor_train",
    "job_enqueue",
    "reconstruct_targets",
    "reconstruction_create",
    "reconstructor_train",
    "study_build",
    "topk_evaluate",
    "topk_evaluate_engine",
]
