"""Stage 1, faces: identity-per-folder datasets, their download, import and alignment.

``datasets`` scans a dataset folder (the one folder-per-identity scanner, also as
``identity_photos``; the one ``IMAGE_SUFFIXES``) and holds its splits; ``downloads``
fetches LFW and the other public sets; ``alignment`` detects, lands and crops faces
(ArcFace 5-point frame; ``dlib_chip``, the one dlib chip cutter); ``services.dataset_import``
writes a dataset's rows and aligned crops.
"""
