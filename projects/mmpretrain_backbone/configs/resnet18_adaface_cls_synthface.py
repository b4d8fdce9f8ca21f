# Config B: the same MMPretrain backbone as a plain mmpretrain.ImageClassifier, with mmoaml's
# FaceEmbeddingNeck and AdaFaceHead as its neck and head (a margin head implements MMPretrain's
# head interface: loss(feats, data_samples) and predict(feats, data_samples), where feats is
# the neck's (embedding, norm)).
#
# Scopes: the default scope is mmpretrain (ImageClassifier, ResNet, ClsDataPreprocessor,
# DefaultSampler, Accuracy, the optimizer and schedulers resolve there); mmoaml's components
# are named with their scope ('mmoaml.FaceEmbeddingNeck', 'mmoaml.FaceFolderDataset', ...)
# after custom_imports has registered them.
#
# Data: the SynthFace training folder of config A as a classification set: of each identity's
# 10 images, images 0-7 train and images 8-9 are held out. The folder scan numbers identities in
# sorted folder order and lists each identity's images in sorted name order, so sample
# i is image i % 10 of identity i // 10 (every identity has images_per_id images). Training
# draws the same synthetic occluders as config A on 60% of the faces.
# Test: MMPretrain's Accuracy (top-1/top-5 over the 50 identities) on the 100 held-out images,
# clean and with a medical mask of the held-out styles (seeded: the same masks every run),
# with mmoaml's MultiTestLoop (two sets, keys clean/... and mask/...).
#
#   python tools/train.py projects/mmpretrain_backbone/configs/resnet18_adaface_cls_synthface.py \
#       --no-validate
#   python tools/test.py projects/mmpretrain_backbone/configs/resnet18_adaface_cls_synthface.py \
#       work_dirs/resnet18_adaface_cls_synthface/epoch_10.pth
# (No --amp: the optimizer wrapper below already is mmoaml's bf16 AutocastOptimWrapper; --amp
# replaces only unscoped wrapper types.)
custom_imports = dict(imports=['mmoaml', 'mmpretrain.models'], allow_failed_imports=False)
default_scope = 'mmpretrain'

data_root = 'work_dirs/projects/synthface_small'
num_classes = 50
images_per_id = 10
held_out = 2  # the last images of each identity
embed_dim = 128

model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(
        type='ClsDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3, to_rgb=False),
    backbone=dict(
        type='ResNet', depth=18, num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 1),
        out_indices=(2, )),
    neck=dict(type='mmoaml.FaceEmbeddingNeck', in_channels=256, feat_size=7,
              embed_dim=embed_dim, dropout=0.0),
    head=dict(type='mmoaml.AdaFaceHead', embed_dim=embed_dim, num_classes=num_classes, s=32.,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
)

occluders = [
    dict(type='mmoaml.NiqabOcclusion'),
    dict(type='mmoaml.MedicalMaskOcclusion'),
    dict(type='mmoaml.SunglassesOcclusion'),
    dict(type='mmoaml.RandomOcclusion'),
]
train_pipeline = [
    dict(type='RandomApply', prob=0.6,
         transforms=[dict(type='RandomChoice', transforms=[[o] for o in occluders],
                          prob=[0.375, 0.25, 0.25, 0.125])]),
    dict(type='mmoaml.FaceAugmenter', crop_prob=0.0, lowres_prob=0.0, photometric_prob=0.0),
    dict(type='mmoaml.PackFaceInputs'),
]
train_indices = [i for i in range(num_classes * images_per_id)
                 if i % images_per_id < images_per_id - held_out]
test_indices = [i for i in range(num_classes * images_per_id)
                if i % images_per_id >= images_per_id - held_out]
train_dataloader = dict(
    batch_size=64,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='mmoaml.FaceFolderDataset', data_root=data_root,
                 data_prefix=dict(img_path='train'), indices=train_indices,
                 pipeline=train_pipeline))

test_sets = [
    ('clean', []),
    ('mask', [dict(type='mmoaml.MedicalMaskOcclusion', prob=1.0, styles='test', seed=0)]),
]
test_dataloader = [
    dict(batch_size=100, num_workers=1, persistent_workers=True, drop_last=False,
         sampler=dict(type='DefaultSampler', shuffle=False),
         dataset=dict(type='mmoaml.FaceFolderDataset', data_root=data_root,
                      data_prefix=dict(img_path='train'), indices=test_indices,
                      metainfo=dict(name=name),
                      pipeline=[*occluder, dict(type='mmoaml.PackFaceInputs')]))
    for name, occluder in test_sets
]
test_evaluator = dict(type='Accuracy', topk=(1, 5))
test_cfg = dict(type='mmoaml.MultiTestLoop', fp16=True)
val_dataloader = test_dataloader[0]
val_evaluator = test_evaluator
val_cfg = dict(type='ValLoop')

# Schedule of config A (AdamW 2e-3, warm-up, cosine decay) under bf16 autocast.
max_epochs = 10
optim_wrapper = dict(
    type='mmoaml.AutocastOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.02, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
         eta_min=0.0, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=42, deterministic=False)
