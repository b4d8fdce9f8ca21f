# AdaFace-only on SynthFace: the fair baseline of oaml_synthface.py. Same small IR backbone, neck
# and AdaFace head, same data (synthetic occluders on 60% of the training faces), same schedule;
# no QAConv and no occlusion head.
#
#   python tools/train.py configs/adaface_synthface.py --amp --no-validate
_base_ = [
    '_base_/models/adaface_ir_small.py',
    '_base_/datasets/synthface.py',
    '_base_/schedules/synthface_cosine.py',
    '_base_/default_runtime.py',
]
model = dict(adaface_head=dict(num_classes=_base_.num_classes))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=25),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1))
