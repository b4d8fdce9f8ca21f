# AdaFace-only baseline on the small IR variant of oaml_ir_small.py (same backbone, neck and
# AdaFace head; no QAConv, no occlusion head): the loss is AdaFace's cross-entropy at full weight.
_base_ = ['./oaml_ir_small.py']
model = dict(
    adaface_head=dict(loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    qaconv_head=None,
    occlusion_head=None,
    occlusion_supervision=None,
)
