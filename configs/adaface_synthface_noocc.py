# AdaFace-only on SynthFace without synthetic occluders: adaface_synthface.py with the occluders
# removed from the training pipeline (everything else equal), to show what the occlusion
# augmentation alone gives (tools/demo_synthface.py --with-noocc).
_base_ = [
    '_base_/models/adaface_ir_small.py',
    '_base_/datasets/synthface.py',
    '_base_/schedules/synthface_cosine.py',
    '_base_/default_runtime.py',
]
model = dict(adaface_head=dict(num_classes=_base_.num_classes))
train_dataloader = dict(
    dataset=dict(pipeline=_base_.train_pipeline[1:]))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=25),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1))
