"""The demo study, built by the real pipeline (the default) or from photos alone.

``pipeline``: `demo_pipeline_study_create` (``manage.py demo``) runs import → Eigenfaces
basis → Eigenfaces attack → embed F' → build_study on a CPU-sized subset of the faces (the
demo preset, `DemoPipelineConfig`). ``photos``: `demo_study_create` (``--photos-only``, ~10 s)
builds match sets from real photos standing in for reconstructions, and holds what both
share (the photo folder, the study's codes, `demo_study_delete`).
"""

from reconstruction.studies.demo.photos import (
    DEMO_CODES,
    DEMO_K,
    DemoDataError,
    DemoMatchSetPlan,
    demo_faces_root,
    demo_plan,
    demo_study_create,
    demo_study_delete,
    face_photos,
)
from reconstruction.studies.demo.pipeline import (
    PAPER_EIGENFACES_ITERATIONS,
    DemoPipelineConfig,
    demo_pipeline_study_create,
    demo_subset_plan,
    demo_subset_write,
)

__all__ = [
    "DEMO_CODES",
    "DEMO_K",
    "PAPER_EIGENFACES_ITERATIONS",
    "DemoDataError",
    "DemoMatchSetPlan",
    "DemoPipelineConfig",
    "demo_faces_root",
    "demo_pipeline_study_create",
    "demo_plan",
    "demo_study_create",
    "demo_study_delete",
    "demo_subset_plan",
    "demo_subset_write",
    "face_photos",
]
