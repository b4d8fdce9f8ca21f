# Short CPU schedule of the SynthFace demo (shared by OAML and its AdaFace baselines): SGD
# momentum 0.9, lr 0.025 at a batch of 64 (the reference 0.1 at 256, scaled linearly; 0.1 at 64
# left the AdaFace loss flat and the embeddings collapsed in this schedule), weight decay 5e-4
# except BN parameters, linear warm-up
# over the first epoch, then cosine decay to zero at the last epoch (a multi-step schedule
# wastes a few-epoch run at a high lr).
max_epochs = 5
optim_wrapper = dict(
    type='FiniteLossOptimWrapper',
    optimizer=dict(type='SGD', lr=0.025, momentum=0.9, weight_decay=5e-4),
    paramwise_cfg=dict(norm_decay_mult=0.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs, T_max=max_epochs - 1,
         eta_min=0.0, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
# Evaluation under autocast too (bf16 on the CPU: about 3x faster than float32 there).
val_cfg = dict(type='MultiValLoop', fp16=True)
test_cfg = dict(type='MultiTestLoop', fp16=True)
auto_scale_lr = dict(base_batch_size=64, enable=False)
