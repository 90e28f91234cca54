"""Stage 5, study building: from reconstructions to the survey's match sets.

``builder`` chooses targets and enrols galleries (database reads only); ``services``
(``study_build``) ranks each reconstruction's top-K and hands the match sets to the survey
through its one entry point, `survey.matchsets.match_set_create`. ``demo`` builds the demo
study (``manage.py demo``: the real pipeline on a CPU-sized subset, or photos alone);
``observers`` are the recognizer observers of the survey's bots, registered with
`survey.bots.observer_register` from `ReconstructionConfig.ready`.
"""
