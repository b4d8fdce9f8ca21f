# Data: an occluded-face set with ground-truth masks under data/occluded_faces, in this layout
# (OccludedFaceDataset; no public data set or tool provides it, docs/data_preparation.md):
#     data/occluded_faces/images/<identity>/<name>.jpg   aligned 112x112 face
#     data/occluded_faces/masks/<identity>/<name>.png    single-channel mask, 255 = visible face,
#                                                        0 = occluder or not face
# plus the CASIA-WebFace RecordIO for the clean faces (data/faces_webface_112x112/train.rec +
# train.idx, InsightFace's faces_webface_112x112 from its data zoo).
#
# The optional occlusion stream on real occluded faces: the default stream
# (occluded_faces.py: CASIA with synthetic occluders) with the occluded loader reading this
# set. The names differ from occluded_faces.py's so that both can be bases of one config;
# configs/oaml_ir50_occluded_private.py puts private_occlusion_hook in place of the default
# hook.
private_occluded_root = 'data/occluded_faces'
private_clean_root = 'data/faces_webface_112x112'
private_occluded_pipeline = [dict(type='FaceAugmenter'), dict(type='PackFaceInputs')]
private_clean_pipeline = [dict(type='FaceAugmenter'), dict(type='PackFaceInputs')]
private_occlusion_hook = dict(
    type='OcclusionBatchHook',
    clean_ratio=0.2,
    occluded_loader=dict(
        batch_size=32,
        num_workers=2,
        sampler=dict(type='DefaultSampler', shuffle=True),
        dataset=dict(
            type='OccludedFaceDataset',
            data_root=private_occluded_root,
            img_dir='images',
            mask_dir='masks',
            pipeline=private_occluded_pipeline)),
    clean_loader=dict(
        batch_size=8,
        num_workers=1,
        sampler=dict(type='DefaultSampler', shuffle=True),
        dataset=dict(
            type='MXFaceDataset',
            data_root=private_clean_root,
            pipeline=private_clean_pipeline)))
