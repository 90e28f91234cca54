"""Shared simulated studies for the analysis tests (database-free)."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.outcomes import add_outcomes
from analysis.simulation import SimulationConfig, simulate_long_responses


@pytest.fixture(scope="session")
def clean_study() -> pd.DataFrame:
    """200 participants × 4 methods × 5 questions, one method at chance, outcomes added."""
    return add_outcomes(simulate_long_responses(SimulationConfig(), seed=11))


@pytest.fixture(scope="session")
def messy_study() -> pd.DataFrame:
    """A study with careless participants of every kind (raw export, no derived columns)."""
    return simulate_long_responses(SimulationConfig.messy(), seed=5)
