# OAML on IR-50 (OAML technical report; docs/architecture.md#training-iteration): one IResNet-50
# body feeds the
# AdaFace embedding (neck + AdaFaceHead), the QAConv matcher and the occlusion head, both on the
# 7x7x512 body map (feature_level=-1). Each head owns its loss, weighted in its loss config:
# 0.1 * AdaFace CE + 0.9 * (pairwise + softmax-triplet) + 0.1 * occlusion MSE (report weights).
# Input: 112x112 aligned crops, BGR, (x - 127.5) / 127.5 like AdaFace's released models.
# num_classes = 10,572 identities of CASIA-WebFace (docs/reference.md#training-data).
# For the finer 14x14x256 stage-3 grid use oaml_ir50_14x14.py.
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
        t_alpha=0.01, loss=dict(type='CrossEntropyLoss', loss_weight=0.1)),
    qaconv_head=dict(
        type='QAConvHead', num_features=512, height=7, width=7,
        losses=dict(
            pair=dict(type='PairwiseMatchingLoss', loss_weight=0.9),
            triplet=dict(type='SoftmaxTripletLoss', margin=1.0, triplet_weight=0.5,
                         loss_weight=0.9))),
    occlusion_head=dict(
        type='OcclusionHead', in_channels=512, mid_channels=128,
        loss=dict(type='OcclusionLoss', loss_weight=0.1)),
    feature_level=-1,
    # Occlusion batch (OcclusionBatchHook) when present, else the main stream's gt_visibility.
    occlusion_supervision='auto',
    # QAConv is weighted by the occlusion head only when a loss supervises that head.
    visibility_weighting='auto',
)
