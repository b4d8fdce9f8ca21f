# CASIA-WebFace as image files, one folder per identity (<data_root>/<identity>/<image>.jpg),
# e.g. as written by AdaFace's convert.py --make_image_files (imgs/<label>/<idx>.jpg, quality 95).
# Identity folders are numbered in sorted name order. 10,572 identities (reference-facts 3.3):
# the model's adaface_head must have num_classes = 10572.
# Same main stream as casia_webface_rec.py: PK batches of 64 identities x 4 images per GPU,
# synthetic medical masks on half the faces, AdaFace's augmentation.
dataset_type = 'FaceFolderDataset'
data_root = 'data/casia_webface_imgs'
num_classes = 10572
train_batch_size = 256

train_pipeline = [
    dict(type='MedicalMaskOcclusion', prob=0.5),
    dict(type='FaceAugmenter'),
    dict(type='PackFaceInputs'),
]

train_dataloader = dict(
    batch_size=train_batch_size,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='PKSampler', num_instances=4, batch_size=train_batch_size),
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=train_pipeline),
)
