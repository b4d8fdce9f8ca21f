# OAML on a small IR variant that trains on 2 CPU cores (SynthFace demo): oaml_ir50.py with the
# IResNet unit design at a 16-channel input layer, stages of 16/32/64/128 channels and 1/2/2/1
# units (not a reference depth: `depth` only selects the basic unit), channels-last, each
# stage's stride on the first conv of its first unit (stride_position='first': training steps
# 1.65x (AdaFace-only) and 1.53x (OAML) faster than at the reference position, bf16, batch 64,
# one thread; tools/benchmarks/synthface_train_step.py). The 7x7x128
# body map feeds the 128-d AdaFace embedding, the QAConv matcher and the occlusion head; loss
# weights as in oaml_ir50.py (report). Without an occlusion batch the head is supervised by the
# main stream's gt_visibility (the synthetic occluders' masks, the face prior elsewhere).
# AdaFace scale s 32, not the reference 64: a 128-d embedding over a few hundred identities
# needs less scale, and in a short run from scratch the smaller scale shortens the initial
# plateau of the margin softmax (chosen, not measured against 64 on its own).
# num_classes is the data set's identity count; configs/_base_/datasets/synthface.py sets it.
_base_ = ['./oaml_ir50.py']
model = dict(
    data_preprocessor=dict(channels_last=True),
    backbone=dict(
        depth=18, stem_channels=16, stage_channels=(16, 32, 64, 128), stage_units=(1, 2, 2, 1),
        stride_position='first'),
    neck=dict(in_channels=128, embed_dim=128, dropout=0.0),
    adaface_head=dict(embed_dim=128, num_classes=400, s=32.),
    qaconv_head=dict(num_features=128),
    occlusion_head=dict(in_channels=128, mid_channels=64),
)
