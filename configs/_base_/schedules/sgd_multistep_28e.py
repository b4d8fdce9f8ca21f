# AdaFace/OAML recipe on CASIA-WebFace (docs/reference.md#optimiser-and-schedule; OAML report): SGD
# momentum 0.9,
# lr 0.1 at total batch 256, weight decay 5e-4 except BN parameters, linear warm-up over the
# first epoch, x0.1 at epochs 14, 22, 26 of 28 (the third-party OAML CASIA schedule).
optim_wrapper = dict(
    type='FiniteLossOptimWrapper',
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4),
    paramwise_cfg=dict(norm_decay_mult=0.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='MultiStepLR', by_epoch=True, milestones=[14, 22, 26], gamma=0.1),
]
train_cfg = dict(by_epoch=True, max_epochs=28, val_interval=1)
val_cfg = dict(type='MultiValLoop')
test_cfg = dict(type='MultiTestLoop')
# lr follows the total batch (world size x per-GPU batch) when --auto-scale-lr is given.
auto_scale_lr = dict(base_batch_size=256, enable=False)
