# AdaFace-only baseline on the small IR variant of oaml_ir_small.py (same backbone, neck and
# AdaFace head; no QAConv, no occlusion head): the loss is AdaFace's cross-entropy at full weight.
# AdaFace scale s 32, not the reference 64: a 128-d embedding over a few hundred identities
# needs less scale, and in a 5-epoch run from scratch the smaller scale shortens the initial
# plateau of the margin softmax (chosen, not measured against 64 on its own).
# num_classes is the data set's identity count; configs/_base_/datasets/synthface.py sets it.
model = dict(
    type='OAML',
    data_preprocessor=dict(
        type='FaceDataPreprocessor', mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5],
        to_rgb=False, channels_last=True),
    backbone=dict(
        type='IResNet', depth=18, se=False, input_size=112, out_indices=(3, ),
        stem_channels=16, stage_channels=(16, 32, 64, 128), stage_units=(1, 2, 2, 1)),
    neck=dict(type='FaceEmbeddingNeck', in_channels=128, feat_size=7, embed_dim=128,
              dropout=0.0),
    adaface_head=dict(
        type='AdaFaceHead', embed_dim=128, num_classes=400, m=0.4, h=0.333, s=32.,
        t_alpha=0.01),
    qaconv_head=None,
    occlusion_head=None,
    occlusion_supervision=None,
    loss_weights=dict(adaface=1.0),
)
