"""Names shared by the data pipeline, the model, the engine and the metrics.

One place for the keys that cross module boundaries, so that the occlusion-batch hook, the data
preprocessor, the recognizer and the metrics agree on them without importing each other.
"""

#: Extra key of a training batch that carries the occlusion stream: ``data_batch[OCC_KEY] =
#: dict(inputs=..., data_samples=...)`` (written by ``OcclusionBatchHook``, unpacked by
#: ``FaceDataPreprocessor`` into ``occ_inputs`` / ``occ_data_samples``).
OCC_KEY = 'occ'

# Per-sample fields of a ``DataSample``.
#: Identity label ``[1]`` (int64), written by ``PackFaceInputs``.
GT_LABEL = 'gt_label'
#: Ground-truth pixel visibility ``[1, H, W]`` in [0, 1] (1 = visible face), written by
#: ``PackFaceInputs`` from the occluders' ``visibility_mask``.
GT_VISIBILITY = 'gt_visibility'
#: Flip-fused unit embedding ``[D]`` (float32), written by ``OAML.predict``.
EMBEDDING = 'embedding'
#: Matching map ``[C, h, w]`` (float16, every location L2-normalised), written by
#: ``OAML.predict`` when the model has a QAConv head.
FEATURE_MAP = 'feature_map'
#: Predicted visibility ``[1, h, w]`` (float32) on the matching map's grid, written by
#: ``OAML.predict`` when QAConv is visibility-weighted.
VISIBILITY = 'visibility'
