# Data (docs/synthface.md, docs/data_preparation.md): SynthFace under data/synthface, generated,
# no download: train/<id>/<k>.jpg and val/synthface_clean_{clean,mask_probe,niqab_probe,
# sunglasses_probe}.bin (+ _masks.npz). python tools/demo_synthface.py writes all of it; by hand:
#   python tools/dataset_converters/make_synthface.py data/synthface --num-train-ids 400 \
#       --num-pairs 1500 --occluded-per-id 0 --trait-jitter 0.3   (the demo's data)
#   python tools/dataset_converters/make_occluded_bin.py data/synthface/val/synthface_clean.bin \
#       --out-dir data/synthface/val --protocols clean mask_probe niqab_probe sunglasses_probe
#
# AdaFace-only on SynthFace: the fair baseline of oaml_synthface.py. Same small IR backbone, neck
# and AdaFace head, same data (synthetic occluders on 30% of the training faces), same schedule;
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
