"""Stage 2, recognizers: the face recognizers F and F', and the vectors they give.

``registry`` is the one registry of recognizers (name → embedder) and the one definition
of a recognizer's view of a reconstruction; ``embedding.dataset_embed`` embeds a dataset;
``backbones`` is the one registry of torch backbones (name → constructor), which
``arcface`` trains; ``services.extractor_train`` trains an extractor end to end and
``extractor_weights`` stores its weights.
"""
