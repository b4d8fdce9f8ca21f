# OAML on IR-101 (AdaFace's ir_101: IResNet depth 100, 3/13/30/3 units): oaml_ir50.py (data,
# occlusion stream, schedule, validation, hooks) with the deeper body.
#
# Train:  tools/dist_train.sh configs/oaml_ir101.py 8 [--amp] [--auto-scale-lr]
# Resume: tools/dist_train.sh configs/oaml_ir101.py 8 --resume
_base_ = ['oaml_ir50.py']
model = dict(backbone=dict(depth=100))
