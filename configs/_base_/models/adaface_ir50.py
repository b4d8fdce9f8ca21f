# AdaFace-only baseline on IR-50 (Kim et al., CVPR 2022; docs/reference.md#adaface): the model
# of oaml_ir50.py without QAConv and the occlusion head (same recognizer, backbone, neck and
# AdaFace head); the loss is AdaFace's cross-entropy alone, at full weight (0.1 is OAML's share
# of a three-part loss).
_base_ = ['./oaml_ir50.py']
model = dict(
    adaface_head=dict(loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    qaconv_head=None,
    occlusion_head=None,
    occlusion_supervision=None,
)
