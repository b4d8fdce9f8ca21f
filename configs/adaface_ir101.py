# AdaFace-only baseline on IR-101 (AdaFace's ir_101: IResNet depth 100): adaface_ir50.py with the
# deeper body, i.e. exactly the data and schedule of oaml_ir101.py.
#
# Train: tools/dist_train.sh configs/adaface_ir101.py 8 [--amp] [--auto-scale-lr]
_base_ = ['adaface_ir50.py']
model = dict(backbone=dict(depth=100))
