"""Service functions of the reconstruction app: writes that touch several rows or files.

One module per part of the pipeline; everything public is re-exported here, so callers
import from `reconstruction.services`.
"""

from reconstruction.services.extractors import (
    ExtractorTrainError,
    ExtractorTrainSummary,
    extractor_train,
)
from reconstruction.services.faces import ImportSummary, dataset_import
from reconstruction.services.jobs import JobError, job_enqueue
from reconstruction.services.reconstructions import (
    EMBEDDED_ALIGNED_INPUT,
    ReconstructorTrainError,
    ReconstructorTrainSummary,
    ReconstructSummary,
    eigenbasis_train,
    reconstruct_targets,
    reconstruction_create,
    reconstructor_train,
)
from reconstruction.services.studies import StudyBuildSummary, study_build
from reconstruction.services.topk import topk_evaluate, topk_evaluate_engine

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
