# OAML on IR-50 with QAConv and the occlusion head on the 14x14x256 stage-3 map (a finer grid:
# a niqab's eye slit covers only about 4-5 of the 49 cells at 7x7;
# docs/architecture.md#feature-level). The AdaFace
# embedding still comes from the 7x7x512 body map (the neck reads the last backbone output).
# Everything else as in oaml_ir50.py.
_base_ = ['./oaml_ir50.py']
model = dict(
    backbone=dict(out_indices=(2, 3)),
    feature_level=0,
    qaconv_head=dict(num_features=256, height=14, width=14),
    occlusion_head=dict(in_channels=256),
)
