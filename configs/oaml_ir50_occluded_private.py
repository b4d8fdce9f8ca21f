# Data: everything oaml_ir50.py reads (CASIA-WebFace RecordIO faces_webface_112x112 and the five
# .bin sets under data/faces_webface_112x112 from InsightFace's data zoo; the occluded LFW
# variants under data/occluded from tools/dataset_converters/make_occluded_bin.py) plus a
# private occluded-face set with masks under data/occluded_faces (images/<identity>/<name>.jpg,
# masks/<identity>/<name>.png, 255 = visible; no public source or tool provides it, see
# configs/_base_/datasets/occluded_faces_private.py and docs/data_preparation.md).
#
# OAML on IR-50 as oaml_ir50.py, with the occlusion stream's 32 occluded faces per batch taken
# from the private set (real occluders, annotated masks) instead of CASIA with synthetic
# occluders; the 8 clean faces stay CASIA's.
#
# Train: tools/dist_train.sh configs/oaml_ir50_occluded_private.py 8 [--amp] [--auto-scale-lr]
_base_ = ['oaml_ir50.py', '_base_/datasets/occluded_faces_private.py']
custom_hooks = [_base_.private_occlusion_hook, dict(type='IterationSeedHook')]
