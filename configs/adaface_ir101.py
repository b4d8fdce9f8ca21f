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
# AdaFace-only baseline on IR-101 (AdaFace's ir_101: IResNet depth 100): adaface_ir50.py with the
# deeper body, i.e. exactly the data and schedule of oaml_ir101.py.
#
# Train: tools/dist_train.sh configs/adaface_ir101.py 8 [--amp] [--auto-scale-lr]
_base_ = ['adaface_ir50.py']
model = dict(backbone=dict(depth=100))
