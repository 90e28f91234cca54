"""Stage 4, top-K matching: galleries, commercial engines and Metric 1.

``gallery`` is the enrolled collection and its top-K search; ``engines`` the registry of
commercial recognizers (Amazon Rekognition); ``scoring`` Metric 1's rates, fast sweeps and
Table II; ``report`` writes a run's CSV, Markdown and plots; ``services`` runs Metric 1 over
the database (``topk_evaluate``, ``topk_evaluate_engine``).
"""
