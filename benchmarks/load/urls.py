"""The project's URLs (config.urls) plus the harness's minimal answer view (minimal.py)."""

from django.urls import path

from benchmarks.load.minimal import minimal_answer
from config.urls import handler500
from config.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    path("__load/<slug:slug>/minimal-answer/", minimal_answer, name="load_minimal_answer"),
    *project_urlpatterns,
]

__all__ = ["handler500", "urlpatterns"]
