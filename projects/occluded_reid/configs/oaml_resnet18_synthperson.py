# Occluded person re-identification with mmoaml's parts (QAConv came from re-identification):
# mmoaml's OAML recognizer around MMPretrain's ResNet-18 on 128 x 64 (H x W) pedestrians.
#
# - backbone: mmpretrain.ResNet-18, three stages, out_indices=(1, 2): a stride-8 map of
#   128 x 16 x 8 (feature_level=0) for QAConv and the occlusion head (finer than the stride-16
#   map: an occluder covering the legs hides whole rows of cells), and the stride-16 map of
#   256 x 8 x 4 for the embedding neck (which always reads the last map).
# - heads: FaceEmbeddingNeck -> AdaFaceHead (an identity classifier over the training people),
#   QAConvHead (pairwise + softmax-triplet losses on each PK batch, matches weighted by the
#   predicted visibility), OcclusionHead (supervised by the ground-truth pixel masks that
#   SynthPersonDataset loads and the occluders update).
# - data: SynthPerson (projects/occluded_reid/occluded_reid: procedural people, pixel masks),
#   occluders drawn on the fly on half the training images (the project's pedestrian occluders
#   and mmoaml's RandomOcclusion), flips; PKSampler batches of 16 people x 4 images.
# - test: OccludedReIDMetric (project-local: rank-1 and mAP) of occluded and clean queries
#   against a clean gallery of new people, scored by the embedding and by QAConv with
#   predicted / ground-truth / no visibility weighting, through mmoaml's MultiTestLoop (which
#   binds the model's QAConv head to the metric).
#
#   export PYTHONPATH=$PWD:$PYTHONPATH
#   python projects/occluded_reid/tools/make_synthperson.py work_dirs/projects/synthperson
#   python tools/train.py projects/occluded_reid/configs/oaml_resnet18_synthperson.py \
#       --amp --no-validate
#   python tools/test.py projects/occluded_reid/configs/oaml_resnet18_synthperson.py \
#       work_dirs/oaml_resnet18_synthperson/epoch_10.pth
_base_ = [
    '../../../configs/_base_/schedules/synthface_cosine.py',
    '../../../configs/_base_/default_runtime.py',
]
custom_imports = dict(
    imports=['mmoaml', 'mmpretrain.models', 'projects.occluded_reid.occluded_reid'],
    allow_failed_imports=False)
default_scope = 'mmoaml'

data_root = 'work_dirs/projects/synthperson'
num_classes = 60  # training people of make_synthperson.py's defaults
match_channels, match_grid = 128, (16, 8)  # ResNet-18 stage 2 at 128x64 (stride 8)
embed_channels, embed_grid = 256, (8, 4)  # stage 3 (stride 16)
embed_dim = 128

model = dict(
    type='OAML',
    data_preprocessor=dict(
        type='FaceDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3, to_rgb=False,
        channels_last=True),
    backbone=dict(
        type='mmpretrain.ResNet', depth=18, num_stages=3, strides=(1, 2, 2),
        dilations=(1, 1, 1), out_indices=(1, 2)),
    neck=dict(type='FaceEmbeddingNeck', in_channels=embed_channels, feat_size=embed_grid,
              embed_dim=embed_dim, dropout=0.0),
    adaface_head=dict(
        type='AdaFaceHead', embed_dim=embed_dim, num_classes=num_classes, s=32.,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    qaconv_head=dict(
        type='QAConvHead', num_features=match_channels, height=match_grid[0],
        width=match_grid[1],
        losses=dict(
            pair=dict(type='PairwiseMatchingLoss', loss_weight=0.5),
            triplet=dict(type='SoftmaxTripletLoss', margin=1.0, triplet_weight=0.5,
                         loss_weight=0.5))),
    occlusion_head=dict(
        type='OcclusionHead', in_channels=match_channels, mid_channels=64,
        loss=dict(type='OcclusionLoss', loss_weight=0.1)),
    feature_level=0,
    occlusion_supervision='main',
    visibility_weighting=True,
)

train_batch_size = 64
train_pipeline = [
    dict(type='RandomApply', prob=0.5,
         transforms=[dict(type='RandomChoice',
                          transforms=[[dict(type='RandomPersonOcclusion', prob=1.0)],
                                      [dict(type='RandomOcclusion', prob=1.0)]],
                          prob=[0.75, 0.25])]),
    dict(type='FaceAugmenter', crop_prob=0.0, lowres_prob=0.0, photometric_prob=0.0,
         flip_prob=0.5),
    dict(type='PackFaceInputs'),
]
train_dataloader = dict(
    batch_size=train_batch_size,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='PKSampler', num_instances=4, batch_size=train_batch_size),
    dataset=dict(type='SynthPersonDataset', data_root=data_root, ann_file='train.txt',
                 pipeline=train_pipeline))

test_dataloader = [
    dict(batch_size=100, num_workers=1, persistent_workers=True, drop_last=False,
         sampler=dict(type='DefaultSampler', shuffle=False),
         dataset=dict(
             type='SynthPersonDataset', data_root=data_root, ann_file='test.txt',
             test_mode=True, metainfo=dict(name='synthperson'),
             pipeline=[dict(type='PackFaceInputs',
                            meta_keys=('sample_idx', 'img_path', 'img_shape', 'role',
                                       'occluded'))]))
]
test_evaluator = dict(type='OccludedReIDMetric',
                      score_types=('embedding', 'qaconv', 'qaconv_gt', 'qaconv_none'))
val_dataloader = test_dataloader
val_evaluator = test_evaluator

max_epochs = 10
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.02, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
         eta_min=0.0, convert_to_iter_based=True),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs, max_keep_ckpts=1))
