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
#   The occlusion stream reads the same CASIA RecordIO (synthetic occluders): nothing else.
#
# OAML on IR-50, trained on CASIA-WebFace (10,572 identities) with the occlusion stream
# (OAML technical report; docs/architecture.md#training-iteration). Everything comes from one level
# of bases:
# - model: IResNet-50 body -> AdaFace embedding, QAConv matcher and occlusion head on the 7x7x512
#   map; loss 0.1 * AdaFace + 0.9 * QAConv (pairwise + softmax-triplet) + 0.1 * occlusion MSE.
# - main stream: CASIA-WebFace RecordIO (faces_webface_112x112), PK batches of 64 identities x 4
#   images (256 per GPU), synthetic medical masks with probability 0.5, AdaFace augmentation.
# - occlusion stream (OcclusionBatchHook): 32 occluded faces with ground-truth masks + 8 clean
#   faces per batch (80/20); the occluded faces are CASIA faces with a synthetic occluder
#   (niqab, medical mask, sunglasses or a random patch) drawn first, which writes their mask
#   (_base_/datasets/occluded_faces.py). With a private occluded-face set with annotated masks:
#   oaml_ir50_occluded_private.py.
# - schedule: SGD momentum 0.9, lr 0.1 at a total batch of 256, weight decay 5e-4 except BN
#   parameters, linear warm-up over the first epoch, x0.1 at epochs 14, 22, 26 of 28.
#   `tools/train.py --auto-scale-lr` scales the lr by (GPUs x batch per GPU) / 256.
# - validation after every epoch on LFW, CFP-FP, AgeDB-30, CALFW, CPLFW and on occluded LFW
#   variants (tools/dataset_converters/make_occluded_bin.py --out-dir data/occluded, held-out
#   occluder styles); the best checkpoint is chosen on the mean combined-score accuracy.
#
# Train:  tools/dist_train.sh configs/oaml_ir50.py 8 [--amp] [--auto-scale-lr]
# Resume: tools/dist_train.sh configs/oaml_ir50.py 8 --resume
# Faster convolutions: --cfg-options model.data_preprocessor.channels_last=True
# Processes per rank: 8 training workers and 2 occluded + 1 clean (occlusion stream), all
# persistent, plus at most 2 validation workers while a set is evaluated (val_loader_common; not
# persistent). With num_workers=0 for a loader, tools/train.py and tools/test.py turn its
# persistent_workers off; --no-persistent-workers / --no-pin-memory apply to every loader.
_base_ = [
    '_base_/models/oaml_ir50.py',
    '_base_/datasets/casia_webface_rec.py',
    '_base_/datasets/occluded_faces.py',
    '_base_/datasets/verification_bins.py',
    '_base_/schedules/sgd_multistep_28e.py',
    '_base_/default_runtime.py',
]

# Occluded protocol variants of LFW: medical mask on the probe or on both images, niqab and
# sunglasses on the probe. Their pixel masks (<name>_masks.npz, found by the dataset) also give
# the oracle score qaconv_gt (QAConv weighted by ground-truth visibility).
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
val_evaluator = [
    *[dict(type='FaceVerificationMetric')] * len(_base_.val_dataloader),
    *[
        dict(type='FaceVerificationMetric',
             score_types=('adaface', 'qaconv', 'qaconv_gt', 'combined'))
    ] * len(occluded_val_names),
]
test_dataloader = val_dataloader
test_evaluator = val_evaluator

default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3,
                    save_best='mean/combined/accuracy', rule='greater'))
# IterationSeedHook: a run resumed from a checkpoint draws the same dropout masks and
# in-process augmentations as an uninterrupted one (see its docstring for the scope).
custom_hooks = [*_base_.custom_hooks, dict(type='IterationSeedHook')]
