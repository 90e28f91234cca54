"""How much accuracy varies between participants and between target identities.

A Bayesian binomial mixed model (``BinomialBayesMixedGLM.fit_vb``: variational Bayes) with
method fixed effects and crossed random intercepts for participant and target identity.
It gives the two standard deviations on the logit scale (descriptive: how heterogeneous
people and faces are). Variational posteriors understate uncertainty, so this model is not
used for p-values or intervals of accuracy; those come from GEE and the bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

from analysis import columns as c


@dataclass(frozen=True)
class Variability:
    """Posterior-mean SDs (logit scale) of participant and identity random intercepts."""

    participant_sd: float
    identity_sd: float
    fixed_effects: dict[str, float]  # method → logit-scale intercept (conditional, not marginal)
    n_participants: int
    n_identities: int


def random_effect_sds(df: pd.DataFrame, outcome: str = c.ANY_CORRECT) -> Variability:
    """Fit the crossed random-intercept logit model by variational Bayes and return its SDs."""
    data = pd.DataFrame(
        {
            "y": df[outcome].to_numpy(dtype=float),
            "method": df[c.METHOD].astype(str).to_numpy(),
            "participant": df[c.PARTICIPANT].astype(str).to_numpy(),
            "identity": df[c.TARGET_IDENTITY].astype(str).to_numpy(),
        }
    )
    model = BinomialBayesMixedGLM.from_formula(
        "y ~ 0 + C(method)",
        {"participant": "0 + C(participant)", "identity": "0 + C(identity)"},
        data,
    )
    result = model.fit_vb()
    # vcp_mean holds posterior means of log SDs, in the order of the vc_formulas names.
    names = list(model.vcp_names)
    sds = dict(zip(names, np.exp(result.vcp_mean), strict=True))
    fixed = {
        name.removeprefix("C(method)[").removesuffix("]"): float(value)
        for name, value in zip(model.fep_names, result.fe_mean, strict=True)
    }
    return Variability(
        participant_sd=float(sds["participant"]),
        identity_sd=float(sds["identity"]),
        fixed_effects=fixed,
        n_participants=data["participant"].nunique(),
        n_identities=data["identity"].nunique(),
    )
