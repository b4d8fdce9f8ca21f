# Data: CASIA-WebFace RecordIO, InsightFace's faces_webface_112x112 (train.rec + train.idx) under
# data/faces_webface_112x112, the same files as the main stream (casia_webface_rec.py); from
# InsightFace's data zoo, or python tools/dataset_converters/folder_to_rec.py for own folders
# (docs/data_preparation.md). Nothing else: no occluded-face set is needed.
#
# The occlusion stream (OcclusionBatchHook): every training batch gets 32 occluded faces with
# ground-truth visibility masks and 8 clean faces (80/20, OAML report 4.3), which supervise the
# occlusion head.
# Occluded faces: CASIA-WebFace whose pipeline starts with a synthetic occluder on every face
# (niqab, medical mask, sunglasses or a random patch, training styles only); each occluder
# writes the visibility mask it leaves, so the masks are exact. A real occluded set with masks
# (OccludedFaceDataset) is the option in occluded_faces_private.py.
# Clean faces: CASIA-WebFace with no occluder (the hook refuses one); PackFaceInputs packs the
# template face region as their mask.
occluded_data_root = 'data/faces_webface_112x112'
clean_data_root = 'data/faces_webface_112x112'

stream_occluders = [
    dict(type='NiqabOcclusion'),
    dict(type='MedicalMaskOcclusion', prob=1.0),
    dict(type='SunglassesOcclusion'),
    dict(type='RandomOcclusion'),
]
# RandomChoice needs probabilities that sum to exactly 1, hence binary fractions.
occluded_pipeline = [
    dict(type='RandomChoice', transforms=[[o] for o in stream_occluders],
         prob=[0.25, 0.25, 0.25, 0.25]),
    dict(type='FaceAugmenter'),
    dict(type='PackFaceInputs'),
]
clean_pipeline = [dict(type='FaceAugmenter'), dict(type='PackFaceInputs')]
# Workers in proportion to the main stream's (8 workers for 256 faces per iteration): 32
# occluded faces need about one worker at the same per-face cost, 8 clean faces a quarter of
# one; 2 and 1 leave headroom (occluder drawing) without a dozen idle processes per rank. The
# hook keeps them persistent: it re-iterates its loaders at every pass.

custom_hooks = [
    dict(
        type='OcclusionBatchHook',
        clean_ratio=0.2,
        occluded_loader=dict(
            batch_size=32,
            num_workers=2,
            sampler=dict(type='DefaultSampler', shuffle=True),
            dataset=dict(
                type='MXFaceDataset',
                data_root=occluded_data_root,
                pipeline=occluded_pipeline)),
        clean_loader=dict(
            batch_size=8,
            num_workers=1,
            sampler=dict(type='DefaultSampler', shuffle=True),
            dataset=dict(
                type='MXFaceDataset',
                data_root=clean_data_root,
                pipeline=clean_pipeline))),
]
