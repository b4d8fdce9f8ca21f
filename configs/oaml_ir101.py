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
# OAML on IR-101 (AdaFace's ir_101: IResNet depth 100, 3/13/30/3 units): oaml_ir50.py (data,
# occlusion stream, schedule, validation, hooks) with the deeper body.
#
# Train:  tools/dist_train.sh configs/oaml_ir101.py 8 [--amp] [--auto-scale-lr]
# Resume: tools/dist_train.sh configs/oaml_ir101.py 8 --resume
_base_ = ['oaml_ir50.py']
model = dict(backbone=dict(depth=100))
