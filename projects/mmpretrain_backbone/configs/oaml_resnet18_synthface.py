# Config A: mmoaml's OAML recognizer around an MMPretrain backbone (mmpretrain.ResNet-18).
#
# The backbone is MMPretrain's ResNet-18 cut after its third stage (out_indices=(2, )): at a
# 112x112 input that is a stride-16 map of 256 x 7 x 7, the same 7x7 grid as IResNet's body map.
# mmoaml's FaceEmbeddingNeck, AdaFaceHead, QAConvHead and OcclusionHead are sized for it
# (256 channels, 7x7). Everything else is the repository's SynthFace recipe: synthetic occluders
# on 60% of the training faces (their masks supervise the occlusion head), PK batches of
# 16 identities x 4 images, AdamW with warm-up and cosine decay, FaceVerificationMetric on the
# clean pairs and their probe-occluded variants.
#
# Scopes: the runtime's default scope is mmoaml (OAML, its heads, FaceFolderDataset, PKSampler,
# the multi-set test loop resolve there); the backbone is taken from MMPretrain's registry by
# its scoped name 'mmpretrain.ResNet'. MMPretrain components with plain names (CrossEntropyLoss,
# RandomApply) resolve too, because mmoaml's registries are children of MMPretrain's.
#
# Data: a small SynthFace set written by the commands of projects/mmpretrain_backbone/README.md
# under work_dirs/projects/synthface_small (50 training identities x 10 images, 300 verification
# pairs over 30 other identities, probe-occluded variants with held-out occluder styles).
#
#   python tools/train.py projects/mmpretrain_backbone/configs/oaml_resnet18_synthface.py \
#       --amp --no-validate
#   python tools/test.py projects/mmpretrain_backbone/configs/oaml_resnet18_synthface.py \
#       work_dirs/oaml_resnet18_synthface/epoch_10.pth
_base_ = [
    '../../../configs/_base_/datasets/synthface.py',
    '../../../configs/_base_/schedules/synthface_cosine.py',
    '../../../configs/_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmoaml', 'mmpretrain.models'], allow_failed_imports=False)
default_scope = 'mmoaml'

data_root = 'work_dirs/projects/synthface_small'
num_classes = 50
channels, grid = 256, 7  # ResNet-18 stage 3 at 112x112: 256 x 7 x 7 (stride 16)
embed_dim = 128

model = dict(
    type='mmoaml.OAML',
    data_preprocessor=dict(
        type='mmoaml.FaceDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3, to_rgb=False,
        channels_last=True),
    backbone=dict(
        _scope_='mmpretrain',
        type='ResNet',
        depth=18,
        num_stages=3,
        strides=(1, 2, 2),
        dilations=(1, 1, 1),
        out_indices=(2, ),
        norm_cfg=dict(type='BN', requires_grad=True)),
    neck=dict(type='mmoaml.FaceEmbeddingNeck', in_channels=channels, feat_size=grid,
              embed_dim=embed_dim, dropout=0.0),
    adaface_head=dict(
        type='mmoaml.AdaFaceHead', embed_dim=embed_dim, num_classes=num_classes, s=32.,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    qaconv_head=dict(
        type='mmoaml.QAConvHead', num_features=channels, height=grid, width=grid,
        losses=dict(
            pair=dict(type='PairwiseMatchingLoss', loss_weight=0.5),
            triplet=dict(type='SoftmaxTripletLoss', margin=1.0, triplet_weight=0.5,
                         loss_weight=0.5))),
    occlusion_head=dict(
        type='mmoaml.OcclusionHead', in_channels=channels, mid_channels=64,
        loss=dict(type='OcclusionLoss', loss_weight=0.1)),
    feature_level=-1,
    occlusion_supervision='auto',
    visibility_weighting='auto',
)

train_dataloader = dict(dataset=dict(data_root=data_root))

# Test: the clean pairs and two probe-occluded variants (held-out occluder styles), each with
# its pixel masks for the ground-truth-visibility oracle score.
test_root = data_root + '/val'
test_sets = [('synthface_clean_clean', 'clean'), ('synthface_clean_mask_probe', 'mask'),
             ('synthface_clean_niqab_probe', 'niqab')]
test_dataloader = [
    dict(batch_size=100, num_workers=1, persistent_workers=True, drop_last=False,
         sampler=dict(type='DefaultSampler', shuffle=False),
         dataset=dict(type='VerificationBinDataset', data_root=test_root,
                      ann_file=f'{stem}.bin', name=name,
                      pipeline=[dict(type='PackFaceInputs')]))
    for stem, name in test_sets
]
test_evaluator = dict(
    type='FaceVerificationMetric',
    score_types=('adaface', 'qaconv', 'qaconv_none', 'qaconv_gt', 'combined'))
val_dataloader = test_dataloader[:1]
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
