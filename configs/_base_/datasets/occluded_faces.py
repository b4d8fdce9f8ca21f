# The occlusion stream (OcclusionBatchHook): every training batch gets 32 occluded faces with
# ground-truth visibility masks and 8 clean faces (80/20, OAML report 4.3), which supervise the
# occlusion head.
# Occluded faces: OccludedFaceDataset, <root>/images/<identity>/<name>.jpg with
# <root>/masks/<identity>/<name>.png (single-channel, 255 = visible face, 0 = occluder or not
# face). Without a real occluded set, the same stream can be synthesised: a clean dataset whose
# pipeline starts with an occluder (NiqabOcclusion, SunglassesOcclusion, RandomOcclusion or
# MedicalMaskOcclusion with prob=1.0), since occluders write the visibility mask themselves.
# Clean faces: CASIA-WebFace with no occluder (the hook refuses one); PackFaceInputs packs the
# template face region as their mask.
occluded_data_root = 'data/occluded_faces'
clean_data_root = 'data/faces_webface_112x112'

occluded_pipeline = [dict(type='FaceAugmenter'), dict(type='PackFaceInputs')]
clean_pipeline = [dict(type='FaceAugmenter'), dict(type='PackFaceInputs')]
# Workers in proportion to the main stream's (8 workers for 256 faces per iteration): 32
# occluded faces need about one worker at the same per-face cost, 8 clean faces a quarter of
# one; 2 and 1 leave headroom (mask decoding) without a dozen idle processes per rank. The
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
                type='OccludedFaceDataset',
                data_root=occluded_data_root,
                img_dir='images',
                mask_dir='masks',
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
