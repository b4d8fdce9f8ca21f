# CASIA-WebFace from InsightFace's RecordIO pack (faces_webface_112x112: train.rec + train.idx,
# 112x112 crops aligned to the ArcFace template), read without MXNet by MXFaceDataset.
# 10,572 identities and 490,623 images (docs/reference.md#training-data): the model's adaface_head
# must
# have num_classes = 10572; the dataset's metainfo['classes'] has that length once loaded.
# Main stream: PK batches (P identities x K = 4 images; 256 = 64 x 4 per GPU), AdaFace's
# augmentation, synthetic medical masks on half the faces (docs/architecture.md#training-iteration).
dataset_type = 'MXFaceDataset'
data_root = 'data/faces_webface_112x112'
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
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        rec_file='train.rec',
        idx_file='train.idx',
        pipeline=train_pipeline),
)
