# OAML on a small IR variant that trains on 2 CPU cores (SynthFace demo): the IResNet unit design
# with a 16-channel input layer, stages of 16/32/64/128 channels and 1/2/2/1 units (not a
# reference depth: `depth` only selects the basic unit; channels and units are overridden).
# The 7x7x128 body map feeds the 128-d AdaFace embedding, the QAConv matcher and the occlusion
# head; loss 0.1 * AdaFace + 0.9 * QAConv (pairwise + softmax-triplet) + 0.1 * occlusion MSE
# (OAML report weights). Without an occlusion batch the head is supervised by the main stream's
# gt_visibility (the synthetic occluders' masks, the face prior on unoccluded faces).
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
    qaconv_head=dict(type='QAConvHead', num_features=128, height=7, width=7),
    occlusion_head=dict(type='OcclusionHead', in_channels=128, mid_channels=64),
    qaconv_losses=dict(
        pair=dict(type='PairwiseMatchingLoss'),
        triplet=dict(type='SoftmaxTripletLoss', margin=1.0, triplet_weight=0.5)),
    occlusion_loss=dict(type='OcclusionLoss'),
    loss_weights=dict(adaface=0.1, qaconv=0.9, occlusion=0.1),
    feature_level=-1,
    occlusion_supervision='auto',
    visibility_weighting='auto',
)
