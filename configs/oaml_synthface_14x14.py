# OAML on SynthFace with QAConv and the occlusion head on the 14x14x64 stage-2 map of the small
# IR variant (a finer grid: the eye slit of a niqab covers a few cells at 7x7, more at 14x14);
# the AdaFace embedding still comes from the 7x7x128 body map. Everything else as in
# oaml_synthface.py (`make demo DEMO_ARGS="--full"` trains and tests it next to it).
#
#   python tools/train.py configs/oaml_synthface_14x14.py --amp --no-validate
_base_ = ['./oaml_synthface.py']
model = dict(
    backbone=dict(out_indices=(2, 3)),
    feature_level=0,
    qaconv_head=dict(num_features=64, height=14, width=14),
    occlusion_head=dict(in_channels=64, mid_channels=32),
)
