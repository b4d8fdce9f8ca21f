# CASIA-WebFace as image files, one folder per identity (<data_root>/<identity>/<image>.jpg),
# e.g. as written by AdaFace's convert.py --make_image_files (imgs/<label>/<idx>.jpg, quality 95).
# Identity folders are numbered in sorted name order. Everything else (10,572 identities, PK
# batches of 64 x 4 per GPU, medical masks on half the faces, AdaFace's augmentation) is
# casia_webface_rec.py's.
_base_ = ['./casia_webface_rec.py']
dataset_type = 'FaceFolderDataset'
data_root = 'data/casia_webface_imgs'
train_dataloader = dict(
    dataset=dict(
        _delete_=True, type=dataset_type, data_root=data_root,
        pipeline=_base_.train_pipeline))
