"""Stage 1, faces: identity-per-folder datasets, their download, import and alignment.

``datasets`` scans a dataset folder (the one folder-per-identity scanner) and holds its
splits; ``downloads`` fetches LFW and the other public sets; ``alignment`` detects, lands
and crops faces (ArcFace 5-point frame, dlib chips); ``services.dataset_import`` writes a
dataset's rows and aligned crops.
"""
