"""Analysis services: a study's responses as a frame, its pre-registered plan, reports, pilots.

* ``study_responses_frame`` — the survey's long export as a typed DataFrame
  (``study_data``, with the other database reads: arrivals, match-set mode);
* ``analysis_plan_read`` / ``analysis_config_for`` — the study's frozen ``analysis_plan``
  JSON mapped onto an ``AnalysisConfig`` (documented keys in ``PLAN_KEYS``; ``plan``);
* ``study_analyze`` — build the report folder, with the plan hash and any deviation
  printed in it (``preregistration``), and record an ``AnalysisRun`` (``study_analysis``);
* ``responses_simulate`` — pilot data: simulated participants driven through the real
  survey services, answering from stated true accuracies (the model of
  ``analysis.simulation``: logit = b_method + u_participant + v_identity;
  ``response_simulation``).
"""

from analysis.services.errors import AnalysisError
from analysis.services.plan import (
    DESCRIPTIVE_PLAN_KEYS,
    EXCLUSION_KEYS,
    PLAN_KEYS,
    PRIMARY_OUTCOME,
    PlanReading,
    analysis_config_for,
    analysis_plan_read,
)
from analysis.services.response_simulation import (
    DEFAULT_ACCURACIES,
    P_NONE_WHEN_UNSURE,
    SIM_PREFIX,
    SimulationResult,
    responses_simulate,
)
from analysis.services.study_analysis import (
    headline,
    position_checks,
    report_dir_default,
    study_analyze,
)
from analysis.services.study_data import (
    MATCH_SET_READINGS,
    match_set_mode,
    study_arrivals,
    study_responses_frame,
)

__all__ = [
    "DEFAULT_ACCURACIES",
    "DESCRIPTIVE_PLAN_KEYS",
    "EXCLUSION_KEYS",
    "MATCH_SET_READINGS",
    "PLAN_KEYS",
    "PRIMARY_OUTCOME",
    "P_NONE_WHEN_UNSURE",
    "SIM_PREFIX",
    "AnalysisError",
    "PlanReading",
    "SimulationResult",
    "analysis_config_for",
    "analysis_plan_read",
    "headline",
    "match_set_mode",
    "position_checks",
    "report_dir_default",
    "responses_simulate",
    "study_analyze",
    "study_arrivals",
    "study_responses_frame",
]
