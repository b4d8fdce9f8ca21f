# SynthFace (mmoaml.datagen.synthface, docs/synthface.md; tools/demo_synthface.py writes it):
# procedural faces in
# the layouts of real face data under data/synthface.
# Train: train/<id>/<k>.jpg (FaceFolderDataset), 400 identities by default (num_classes must
# match the written identity count). PK batches of 16 identities x 4 images. Synthetic occluders
# (training styles only) on 30% of the faces: niqab, medical mask, sunglasses or a random patch;
# each writes the visibility mask that supervises OAML's occlusion head. AdaFace augmentation.
# (RandomChoice needs probabilities that sum to exactly 1, hence binary fractions.)
# Test: the clean pairs and their probe-occluded variants with held-out occluder styles
# (tools/dataset_converters/make_occluded_bin.py, protocols clean, mask_probe, niqab_probe,
# sunglasses_probe), each with its pixel masks (<name>_masks.npz) for the qaconv_gt score.
dataset_type = 'FaceFolderDataset'
data_root = 'data/synthface'
num_classes = 400
train_batch_size = 64

# Niqab fabrics: a uniformly random colour on 25 % of the niqabs (random_colour_prob), so the
# occlusion head cannot equate "covered" with the dark training fabrics. Chosen on the niqab
# validation styles (NiqabOcclusion styles='val', neither trained on nor tested) drawn on 400
# held-out faces of SynthFace seed 0, OAML trained with 0 / 0.25 / 0.5: mean predicted vs true
# visibility 0.194 / 0.176 / 0.184 vs 0.109, MSE 0.0288 / 0.0182 / 0.0215
# (tools/analysis_tools/visibility_by_style.py; docs/synthface.md).
occluders = [
    dict(type='NiqabOcclusion', random_colour_prob=0.25),
    dict(type='MedicalMaskOcclusion'),
    dict(type='SunglassesOcclusion'),
    dict(type='RandomOcclusion'),
]
train_pipeline = [
    # Occluders on 30 % of the faces, chosen on the AdaFace-only baseline (trait_jitter 0, 5-epoch
    # schedule at lr 2e-3 then): 73.2 % on clean pairs at 30 %, 63.9 % at 60 %.
    dict(type='RandomApply', prob=0.3,
         transforms=[dict(type='RandomChoice', transforms=[[o] for o in occluders],
                          prob=[0.375, 0.25, 0.25, 0.125])]),
    # Flips only: the generator already draws blur, noise, JPEG, illumination and pose for
    # every image; AdaFace's crop / low-resolution / photometric augmentations are meant for
    # long runs on real data and only slow a short run from scratch (a choice, not an A/B
    # measurement).
    dict(type='FaceAugmenter', crop_prob=0.0, lowres_prob=0.0, photometric_prob=0.0),
    dict(type='PackFaceInputs'),
]
# In-process loading (num_workers=0): decoding the 8,000 JPEGs takes about 1.4 s an epoch and the
# occluders a few ms a batch, while a worker process would compete with training for the two
# cores (about 18 % slower per step, measured with num_workers=1).
train_dataloader = dict(
    batch_size=train_batch_size,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='PKSampler', num_instances=4, batch_size=train_batch_size),
    dataset=dict(type=dataset_type, data_root=data_root, data_prefix=dict(img_path='train'),
                 pipeline=train_pipeline),
)

test_root = data_root + '/val'
test_sets = ['synthface_clean_clean', 'synthface_clean_mask_probe',
             'synthface_clean_niqab_probe', 'synthface_clean_sunglasses_probe']
test_set_names = ['clean', 'mask', 'niqab', 'sunglasses']
test_pipeline = [dict(type='PackFaceInputs')]
test_loader_common = dict(
    batch_size=128,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_dataloader = [
    dict(**test_loader_common,
         dataset=dict(type='VerificationBinDataset', data_root=test_root, ann_file=f'{stem}.bin',
                      name=name, pipeline=test_pipeline))
    for stem, name in zip(test_sets, test_set_names)
]
test_evaluator = dict(type='FaceVerificationMetric', score_types=('adaface', ))
# Validation (when training without --no-validate): the clean pairs once, at the end.
val_dataloader = test_dataloader[:1]
val_evaluator = test_evaluator
