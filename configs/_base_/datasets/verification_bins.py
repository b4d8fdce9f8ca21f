# The five standard verification sets as InsightFace .bin files (pair k = images 2k, 2k + 1),
# one loader per set for MultiValLoop / MultiTestLoop (each set keeps its own length, so the
# sampler's padding is trimmed per set). Metric keys are '<name>/<score>/accuracy' with the
# name taken from each file's stem. Sizes: 6,000 pairs each, 7,000 for cfp_fp
# docs/reference.md#verification-bin-layout. No augmentation: the model flips internally for flip
# fusion.
verification_data_root = 'data/faces_webface_112x112'
val_pipeline = [dict(type='PackFaceInputs')]
# Worker budget: the sets are evaluated one after another, so non-persistent workers mean at
# most num_workers validation processes exist at a time (per rank), started once per set and
# validation; persistent ones would keep num_workers per set alive for the whole run (9 sets x
# 4 = 36 processes next to the training loaders). Decoding a few thousand 112x112 faces takes
# seconds, so starting workers per set costs little.
val_loader_common = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
)

val_dataloader = [
    dict(**val_loader_common,
         dataset=dict(type='VerificationBinDataset', data_root=verification_data_root,
                      ann_file='lfw.bin', pipeline=val_pipeline)),
    dict(**val_loader_common,
         dataset=dict(type='VerificationBinDataset', data_root=verification_data_root,
                      ann_file='cfp_fp.bin', pipeline=val_pipeline)),
    dict(**val_loader_common,
         dataset=dict(type='VerificationBinDataset', data_root=verification_data_root,
                      ann_file='agedb_30.bin', pipeline=val_pipeline)),
    dict(**val_loader_common,
         dataset=dict(type='VerificationBinDataset', data_root=verification_data_root,
                      ann_file='calfw.bin', pipeline=val_pipeline)),
    dict(**val_loader_common,
         dataset=dict(type='VerificationBinDataset', data_root=verification_data_root,
                      ann_file='cplfw.bin', pipeline=val_pipeline)),
]
# One config is copied for every set by the multi-set loops.
val_evaluator = dict(type='FaceVerificationMetric')

test_dataloader = val_dataloader
test_evaluator = val_evaluator
