"""Stage 4, top-K matching: galleries, commercial engines and Metric 1.

``gallery`` is the enrolled collection and its top-K search; ``engines`` the registry of
commercial recognizers (Amazon Rekognition); ``scoring`` Metric 1's rates, fast sweeps and
Table II; ``report`` writes a run's CSV, Markdown and plots; ``selection`` reads the gallery
pool and the reconstructions a run queries; ``services`` runs Metric 1 over the database in a
local F' (``topk_evaluate``) and re-exports the commercial-engine run, planned in
``engine_plan`` (``topk_engine_plan``) and carried out in ``engine_runs``
(``topk_evaluate_engine``).
"""
