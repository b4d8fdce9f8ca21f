# Short CPU schedule of the SynthFace demo (shared by OAML and its AdaFace baselines): AdamW,
# lr 4e-3, weight decay 0.05 except norm parameters, linear warm-up over the first 50
# iterations, cosine decay to zero at the end of epoch 7 (875 iterations of 64 faces).
# Chosen on the AdaFace-only baseline with occluders (configs/adaface_synthface.py, 400 x 20
# faces, trait_jitter 0, occluders on 30 % of the faces, seed 0, clean pairs): 8 epochs at lr
# 2e-3 -> 93.1 %, 8 epochs at 4e-3 -> 96.9 %, 6 epochs at 4e-3 -> 92.9 %; 7 epochs keep the
# whole `make demo` within 15 minutes on 2 cores. The decay must end with the run: a 5-epoch
# decay inside 8 epochs (lr ~0 for the last 3) gave 73.2 %.
# Why not the reference SGD (lr 0.1 at 256, momentum 0.9, multi-step): in a 5-epoch run from
# scratch on 2 CPU cores, SGD left the margin-softmax in its initial plateau. Measured with the
# AdaFace-only small IR model on SynthFace (400 x 20, no occluders, batches of 64): SGD lr 0.025
# with AdaFace augmentation -> training top-1 1.3 % after 300 iterations; SGD lr 0.05, flips
# only -> 21 % after 625 iterations and 55.4 % on clean pairs (trait_jitter 0.6); AdamW 2e-3,
# flips only -> 44 % after 625 iterations and 76.7 % on clean pairs (trait_jitter 0.3, so the
# last two differ in data difficulty too).
max_epochs = 7
optim_wrapper = dict(
    type='FiniteLossOptimWrapper',
    optimizer=dict(type='AdamW', lr=4e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.02, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
         eta_min=0.0, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
# Evaluation under autocast too (bf16 on the CPU: about 3x faster than float32 there).
val_cfg = dict(type='MultiValLoop', fp16=True)
test_cfg = dict(type='MultiTestLoop', fp16=True)
auto_scale_lr = dict(base_batch_size=64, enable=False)
