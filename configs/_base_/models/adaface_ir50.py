# AdaFace-only baseline on IR-50 (Kim et al., CVPR 2022; reference-facts 1-3): the same OAML
# recognizer, backbone, neck and AdaFace head as oaml_ir50.py, without QAConv and the occlusion
# head; the loss is AdaFace's cross-entropy alone. Input: 112x112 crops, BGR,
# (x - 127.5) / 127.5. num_classes = 10,572 identities of CASIA-WebFace.
model = dict(
    type='OAML',
    data_preprocessor=dict(
        type='FaceDataPreprocessor', mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5],
        to_rgb=False),
    backbone=dict(type='IResNet', depth=50, se=False, input_size=112, out_indices=(3, )),
    neck=dict(type='FaceEmbeddingNeck', in_channels=512, feat_size=7, embed_dim=512,
              dropout=0.4),
    adaface_head=dict(
        type='AdaFaceHead', embed_dim=512, num_classes=10572, m=0.4, h=0.333, s=64.,
        t_alpha=0.01),
    qaconv_head=None,
    occlusion_head=None,
    occlusion_supervision=None,
    # The whole loss is AdaFace's, at full weight (0.1 is OAML's share of a three-part loss).
    loss_weights=dict(adaface=1.0),
)
