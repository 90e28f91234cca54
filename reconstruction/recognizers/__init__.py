"""Stage 2, recognizers: the face recognizers F and F', and the vectors they give.

``registry`` is the one registry of recognizers (name → embedder) and the one definition
of a recognizer's view of a reconstruction; ``embedding.dataset_embed`` embeds a dataset;
``arcface`` trains the torch backbones whose registry is ``backbones``; ``services``
trains an extractor end to end (``train_extractor``).
"""
