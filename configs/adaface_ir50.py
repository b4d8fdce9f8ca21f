# Data (tools/train.py checks these files first and names what is missing;
# docs/data_preparation.md):
# - data/faces_webface_112x112/train.rec + train.idx: CASIA-WebFace RecordIO
#   (faces_webface_112x112 from InsightFace's data zoo; own identity folders:
#   python tools/dataset_converters/folder_to_rec.py FOLDER data/faces_webface_112x112).
# - data/faces_webface_112x112/{lfw,cfp_fp,agedb_30,calfw,cplfw}.bin: the five verification sets,
#   shipped in the same faces_webface_112x112 pack.
# - data/occluded/lfw_{mask_probe,mask_both,niqab_probe,sunglasses_probe}.bin (+ _masks.npz):
#   python tools/dataset_converters/make_occluded_bin.py data/faces_webface_112x112/lfw.bin \
#       --out-dir data/occluded --protocols mask_probe mask_both niqab_probe sunglasses_probe
#
# AdaFace-only baseline on IR-50 (Kim et al., CVPR 2022) with exactly the data and schedule of
# oaml_ir50.py, so the two differ only by QAConv and the occlusion head:
# - model: IResNet-50 + neck + AdaFaceHead (m 0.4, h 0.333, s 64, t_alpha 0.01); the loss is
#   AdaFace's cross-entropy at full weight.
# - main stream: CASIA-WebFace RecordIO, PK batches of 64 identities x 4 images (256 per GPU),
#   synthetic medical masks with probability 0.5, AdaFace augmentation (the same images the
#   OAML runs see). No occlusion stream: nothing in this model would learn from it.
# - schedule: SGD momentum 0.9, lr 0.1 at a total batch of 256, weight decay 5e-4 except BN
#   parameters, linear warm-up over the first epoch, x0.1 at epochs 14, 22, 26 of 28;
#   `tools/train.py --auto-scale-lr` scales the lr by (GPUs x batch per GPU) / 256.
# - validation on the five standard sets and the occluded LFW variants, AdaFace scores only;
#   the best checkpoint is chosen on their mean accuracy.
#
# Train: tools/dist_train.sh configs/adaface_ir50.py 8 [--amp] [--auto-scale-lr]
# Processes per rank: 8 persistent training workers, plus at most 2 validation workers while a
# set is evaluated (val_loader_common; not persistent). With num_workers=0 for a loader,
# tools/train.py and tools/test.py turn its persistent_workers off; --no-persistent-workers /
# --no-pin-memory apply to every loader.
_base_ = [
    '_base_/models/adaface_ir50.py',
    '_base_/datasets/casia_webface_rec.py',
    '_base_/datasets/verification_bins.py',
    '_base_/schedules/sgd_multistep_28e.py',
    '_base_/default_runtime.py',
]

occluded_val_root = 'data/occluded'
occluded_val_names = ['lfw_mask_probe', 'lfw_mask_both', 'lfw_niqab_probe', 'lfw_sunglasses_probe']
val_dataloader = [
    *_base_.val_dataloader,
    *[
        dict(**_base_.val_loader_common,
             dataset=dict(type='VerificationBinDataset', data_root=occluded_val_root,
                          ann_file=f'{name}.bin', pipeline=_base_.val_pipeline))
        for name in occluded_val_names
    ],
]
val_evaluator = dict(type='FaceVerificationMetric', score_types=('adaface', ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3,
                    save_best='mean/adaface/accuracy', rule='greater'))
# IterationSeedHook: a run resumed from a checkpoint draws the same dropout masks and
# in-process augmentations as an uninterrupted one (see its docstring for the scope).
custom_hooks = [dict(type='IterationSeedHook')]
