"""OAML: occlusion-aware face recognition (AdaFace + QAConv + occlusion head on one backbone)."""
import logging
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmpretrain.structures import DataSample

from mmoaml.registry import MODELS

ModuleCfg = Union[dict, nn.Module]

#: Sources of occlusion supervision (see :class:`OAML`, ``occlusion_supervision``).
SUPERVISION_MODES = ('occ_batch', 'main', 'both', 'auto', None)
#: Loss weights of the OAML report: 0.1 AdaFace, 0.9 QAConv, 0.1 occlusion.
DEFAULT_LOSS_WEIGHTS = dict(adaface=0.1, qaconv=0.9, occlusion=0.1)
#: QAConv losses of the OAML report; the keys name the logged terms ``loss_qaconv_<key>``.
DEFAULT_QACONV_LOSSES = dict(
    pair=dict(type='PairwiseMatchingLoss'),
    triplet=dict(type='SoftmaxTripletLoss', margin=1.0, triplet_weight=0.5))


def _build(cfg: Optional[ModuleCfg], name: str) -> Optional[nn.Module]:
    """Build a submodule config in the mmoaml scope (modules and None pass through).

    The scope is set explicitly because nested builds otherwise follow whatever default scope is
    current, and an OAML config embedded in another project would not find mmoaml's types.
    """
    if cfg is None or isinstance(cfg, nn.Module):
        return cfg
    if not isinstance(cfg, Mapping):
        raise TypeError(f'OAML: {name} must be a config dict or an nn.Module, got '
                        f'{type(cfg).__name__}')
    cfg = dict(cfg)
    cfg.setdefault('_scope_', 'mmoaml')
    return MODELS.build(cfg)


@MODELS.register_module()
class OAML(BaseModel):
    """Occlusion-aware face recognizer: AdaFace embedding, QAConv matching, visibility head.

    One backbone feeds three branches (OAML technical report; ``docs/design.md``):

    - ``neck`` turns the backbone's last map into a unit embedding and its norm, classified by
      ``adaface_head`` (CrossEntropy over margin logits);
    - ``qaconv_head`` matches the chosen feature map ``F`` (``feature_level``) of every pair of
      the batch; the pairwise and softmax-triplet losses on that ``[B, B]`` score matrix train
      the matcher *and* the backbone (the predecessor detached ``F`` twice, so they trained
      neither);
    - ``occlusion_head`` predicts a visibility map ``V`` (1 = visible face) from ``F.detach()``;
      its MSE loss against the area-averaged ground-truth mask trains it alone. ``V.detach()``
      weights QAConv's local matches.

    ``total = w_ada * L_ada + w_qa * (sum of QAConv losses) + w_occ * L_occ``. Gradient rules:
    the AdaFace and QAConv losses reach the backbone; nothing from QAConv reaches the occlusion
    head; the occlusion loss reaches only the occlusion head.

    **Occlusion supervision** (``occlusion_supervision``):

    - ``'occ_batch'``: the separate occlusion batch (``OcclusionBatchHook``, passed as
      ``occ_inputs``/``occ_data_samples``); its maps come from a backbone pass without gradient.
      Iterations without that batch compute no occlusion loss (a warning is logged once).
    - ``'main'``: the main batch's ``gt_visibility`` (written by the synthetic occluders of the
      main pipeline, the face prior for unoccluded faces).
    - ``'both'``: both, averaged per sample.
    - ``'auto'`` (default): the occlusion batch when it arrives, else the main batch, so OAML
      trains without a private occluded set.
    - ``None``: no occlusion loss; the head (if any) stays untrained.

    **Visibility weighting** (``visibility_weighting``): an occlusion head that no loss trains
    must never weight QAConv (the predecessor weighted it with an untrained head). ``'auto'``
    weights exactly when a QAConv head and a supervised occlusion head exist, and logs the
    decision; ``True`` raises an error when that is not the case; ``False`` never weights.

    **Feature level**: ``feature_level`` indexes the backbone's output tuple for the map that
    QAConv and the occlusion head read; ``-1`` with ``IResNet(out_indices=(3,))`` is the 7x7x512
    body map (report default), ``0`` with ``out_indices=(2, 3)`` the 14x14x256 stage-3 map
    (finer grid). The neck always reads the last map. Head sizes must match the level; a mismatch
    is reported naming the config keys.

    Non-finite losses are not patched here (no NaN-to-zero): use ``FiniteLossOptimWrapper``,
    which skips such updates. Under DDP, set ``find_unused_parameters=True`` when the occlusion
    head can miss its loss in some iterations (``'occ_batch'`` without the batch) or is
    unsupervised.

    Args:
        backbone (dict | nn.Module): Returns a tuple of maps, e.g. ``IResNet``.
        neck (dict | nn.Module): ``maps -> (embedding [B, D], norm [B, 1])``, e.g.
            ``FaceEmbeddingNeck``.
        adaface_head (dict | nn.Module): ``(embedding, norm, labels) -> logits``, e.g.
            ``AdaFaceHead`` (also ``ArcFaceHead``/``CosFaceHead``).
        qaconv_head (dict | nn.Module, optional): ``QAConvHead``; ``forward(F, vis) -> [B, B]``.
            Defaults to None (AdaFace only).
        occlusion_head (dict | nn.Module, optional): ``OcclusionHead``; ``F -> [B, 1, h, w]``.
            Defaults to None.
        qaconv_losses (dict): ``{name: loss cfg}``, each ``(scores [B, B], labels [B]) ->
            scalar``, logged as ``loss_qaconv_<name>``; a loss with an ``accuracy`` method also
            gives ``qaconv_acc``. Defaults to ``PairwiseMatchingLoss`` (``pair``) and
            ``SoftmaxTripletLoss(margin=1.0, triplet_weight=0.5)`` (``triplet``), OAML report.
        occlusion_loss (dict | nn.Module): ``(pred [B, 1, h, w], gt [B, 1, H, W]) -> scalar``.
            Defaults to ``OcclusionLoss`` (MSE on area-averaged masks).
        loss_weights (dict): ``adaface``, ``qaconv``, ``occlusion``; missing keys take the
            defaults 0.1 / 0.9 / 0.1 (OAML report).
        feature_level (int): Index into the backbone's outputs of the map for QAConv and the
            occlusion head. Defaults to -1.
        occlusion_supervision (str, optional): One of ``'occ_batch'``, ``'main'``, ``'both'``,
            ``'auto'``, None (see above). Defaults to ``'auto'``.
        visibility_weighting (bool | str): ``'auto'``, True or False (see above). Defaults to
            ``'auto'``.
        data_preprocessor (dict | nn.Module, optional): Defaults to None:
            ``FaceDataPreprocessor()`` (BGR, ``(x - 127.5) / 127.5``). With its
            ``channels_last=True`` the model's 4-D weights are converted to that layout too.
        init_cfg (dict | list[dict], optional): MMEngine initialisation config. Defaults to None.

    Examples:
        >>> from mmoaml.models import OAML
        >>> model = OAML(
        ...     backbone=dict(type='IResNet', depth=18, input_size=32),
        ...     neck=dict(type='FaceEmbeddingNeck', feat_size=2, embed_dim=64),
        ...     adaface_head=dict(type='AdaFaceHead', embed_dim=64, num_classes=10),
        ...     qaconv_head=dict(type='QAConvHead', num_features=512, height=2, width=2),
        ...     occlusion_head=dict(type='OcclusionHead', in_channels=512))
        >>> model.visibility_weighting
        True
    """

    def __init__(self,
                 backbone: ModuleCfg,
                 neck: ModuleCfg,
                 adaface_head: ModuleCfg,
                 qaconv_head: Optional[ModuleCfg] = None,
                 occlusion_head: Optional[ModuleCfg] = None,
                 qaconv_losses: Mapping[str, ModuleCfg] = DEFAULT_QACONV_LOSSES,
                 occlusion_loss: ModuleCfg = dict(type='OcclusionLoss'),
                 loss_weights: Mapping[str, float] = DEFAULT_LOSS_WEIGHTS,
                 feature_level: int = -1,
                 occlusion_supervision: Optional[str] = 'auto',
                 visibility_weighting: Union[bool, str] = 'auto',
                 data_preprocessor: Optional[ModuleCfg] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type='FaceDataPreprocessor')
        super().__init__(
            data_preprocessor=_build(data_preprocessor, 'data_preprocessor'), init_cfg=init_cfg)
        for name, cfg in (('backbone', backbone), ('neck', neck), ('adaface_head', adaface_head)):
            if cfg is None:
                raise ValueError(f'OAML: {name} is required')
        self.backbone = _build(backbone, 'backbone')
        self.neck = _build(neck, 'neck')
        self.adaface_head = _build(adaface_head, 'adaface_head')
        self.qaconv_head = _build(qaconv_head, 'qaconv_head')
        self.occlusion_head = _build(occlusion_head, 'occlusion_head')

        self.loss_weights = self._check_loss_weights(loss_weights)
        self.feature_level = self._check_feature_level(feature_level)
        self.occlusion_supervision = self._check_supervision(occlusion_supervision)
        self.visibility_weighting = self._resolve_weighting(visibility_weighting)

        if self.qaconv_head is not None:
            self.qaconv_losses = self._build_qaconv_losses(qaconv_losses)
        if self.occlusion_supervision is not None:
            self.occlusion_loss = _build(occlusion_loss, 'occlusion_loss')
        self._warned: Set[str] = set()
        if getattr(self.data_preprocessor, 'channels_last', False):
            # Inputs arrive channels-last; 4-D weights in the same layout spare every
            # convolution a per-call conversion (in-place init and loading keep the layout).
            self.to(memory_format=torch.channels_last)

    # ------------------------------------------------------------------ configuration checks

    @staticmethod
    def _check_loss_weights(loss_weights: Mapping[str, float]) -> Dict[str, float]:
        unknown = set(loss_weights) - set(DEFAULT_LOSS_WEIGHTS)
        if unknown:
            raise ValueError(f'OAML: unknown loss_weights keys {sorted(unknown)}; expected '
                             f'{sorted(DEFAULT_LOSS_WEIGHTS)}')
        weights = {**DEFAULT_LOSS_WEIGHTS, **loss_weights}
        for key, value in weights.items():
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f'OAML: loss_weights.{key} must be a number >= 0, got {value!r}')
        return {key: float(value) for key, value in weights.items()}

    def _check_feature_level(self, feature_level: int) -> int:
        """Check the level against the backbone's declared outputs and the head sizes."""
        if not isinstance(feature_level, int):
            raise TypeError(f'OAML: feature_level must be an int, got {feature_level!r}')
        out_indices = getattr(self.backbone, 'out_indices', None)
        if out_indices is None:
            return feature_level
        num_maps = len(out_indices)
        if not -num_maps <= feature_level < num_maps:
            raise ValueError(f'OAML: feature_level={feature_level} is not an index into the '
                             f'{num_maps} backbone output(s) of backbone.out_indices='
                             f'{tuple(out_indices)}')
        out_channels = getattr(self.backbone, 'out_channels', None)
        if out_channels is not None:
            self._check_level_channels(out_channels[feature_level], feature_level)
        return feature_level

    def _check_level_channels(self, channels: int, feature_level: int) -> None:
        expectations = (('qaconv_head', 'num_features'), ('occlusion_head', 'in_channels'))
        for head_name, key in expectations:
            expected = getattr(getattr(self, head_name), key, None)
            if expected is not None and expected != channels:
                raise ValueError(
                    f'OAML: feature_level={feature_level} selects a backbone map with {channels} '
                    f'channels, but {head_name}.{key}={expected}; set {head_name}.{key}='
                    f'{channels} or change feature_level / backbone.out_indices')

    def _check_supervision(self, mode: Optional[str]) -> Optional[str]:
        if mode not in SUPERVISION_MODES:
            raise ValueError(f'OAML: occlusion_supervision must be one of {SUPERVISION_MODES}, '
                             f'got {mode!r}')
        if self.occlusion_head is None:
            if mode not in ('auto', None):
                raise ValueError(f'OAML: occlusion_supervision={mode!r} needs an occlusion_head; '
                                 "set occlusion_head or occlusion_supervision=None")
            return None
        if mode is None:
            print_log(
                'OAML: occlusion_head is set but occlusion_supervision=None, so no loss trains '
                'it; it does not weight QAConv and its parameters get no gradient (DDP needs '
                'find_unused_parameters=True)',
                logger='current',
                level=logging.WARNING)
        return mode

    def _resolve_weighting(self, weighting: Union[bool, str]) -> bool:
        if weighting not in (True, False, 'auto'):
            raise ValueError(f"OAML: visibility_weighting must be True, False or 'auto', got "
                             f'{weighting!r}')
        if self.qaconv_head is None:
            reason = 'no qaconv_head'
        elif self.occlusion_head is None:
            reason = 'no occlusion_head'
        elif self.occlusion_supervision is None:
            reason = 'occlusion_supervision=None (an untrained head must not weight QAConv)'
        else:
            reason = None
        if weighting is True and reason is not None:
            raise ValueError(f'OAML: visibility_weighting=True is impossible: {reason}')
        active = weighting is not False and reason is None
        if active:
            print_log('OAML: QAConv matches are weighted by the occlusion head '
                      f'(supervision: {self.occlusion_supervision})', logger='current')
        else:
            print_log(f'OAML: QAConv visibility weighting is off ({reason or "disabled"})',
                      logger='current')
        return active

    @staticmethod
    def _build_qaconv_losses(losses: Mapping[str, ModuleCfg]) -> nn.ModuleDict:
        if not isinstance(losses, Mapping) or not losses:
            raise TypeError('OAML: qaconv_losses must be a non-empty dict {name: loss cfg}, got '
                            f'{losses!r}')
        for name in losses:
            if not str(name).isidentifier():
                raise ValueError(f'OAML: qaconv_losses keys name the logged terms '
                                 f'loss_qaconv_<name> and must be identifiers, got {name!r}')
        return nn.ModuleDict(
            {name: _build(cfg, f'qaconv_losses.{name}')
             for name, cfg in losses.items()})

    # ------------------------------------------------------------------ features

    def _feature_map(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """Pick the configured level from the backbone outputs and check it fits the heads."""
        if not isinstance(maps, (tuple, list)):
            raise TypeError('OAML: the backbone must return a tuple of feature maps, got '
                            f'{type(maps).__name__}')
        if not -len(maps) <= self.feature_level < len(maps):
            raise ValueError(f'OAML: feature_level={self.feature_level} is out of range for the '
                             f'{len(maps)} map(s) the backbone returns (backbone.out_indices)')
        feature_map = maps[self.feature_level]
        shape = tuple(feature_map.shape[1:])
        if self.qaconv_head is not None:
            head = self.qaconv_head
            expected = (getattr(head, 'num_features', None), getattr(head, 'height', None),
                        getattr(head, 'width', None))
            if None not in expected and shape != expected:
                raise ValueError(
                    f'OAML: feature_level={self.feature_level} selects a map of shape '
                    f'{list(shape)} (C, h, w), but qaconv_head has num_features={expected[0]}, '
                    f'height={expected[1]}, width={expected[2]}; set qaconv_head.num_features/'
                    'height/width (and occlusion_head.in_channels) to match, or change '
                    'feature_level / backbone.out_indices')
        if self.occlusion_head is not None:
            expected_c = getattr(self.occlusion_head, 'in_channels', None)
            if expected_c is not None and shape[0] != expected_c:
                raise ValueError(
                    f'OAML: feature_level={self.feature_level} selects a map with {shape[0]} '
                    f'channels, but occlusion_head.in_channels={expected_c}')
        return feature_map

    def extract_feat(self, inputs: torch.Tensor) -> Dict[str, Optional[torch.Tensor]]:
        """Embedding, norm, matching map and visibility of a batch.

        Args:
            inputs (Tensor): Preprocessed images ``[B, 3, H, W]``.

        Returns:
            dict: ``embedding`` ``[B, D]`` (unit), ``norm`` ``[B, 1]``, ``feature_map`` (the
            configured level, raw, e.g. ``[B, 512, 7, 7]``) and ``visibility`` (occlusion head
            output ``[B, 1, h, w]`` on the detached map, or None without an occlusion head).
        """
        maps = self.backbone(inputs)
        feature_map = self._feature_map(maps)
        embedding, norm = self.neck(maps)
        visibility = None
        if self.occlusion_head is not None:
            visibility = self.occlusion_head(feature_map.detach())
        return dict(
            embedding=embedding, norm=norm, feature_map=feature_map, visibility=visibility)

    # ------------------------------------------------------------------ modes

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor',
                occ_inputs: Optional[torch.Tensor] = None,
                occ_data_samples: Optional[List[DataSample]] = None):
        """Dispatch on ``mode`` (MMEngine ``BaseModel`` contract).

        Args:
            inputs (Tensor): Preprocessed images ``[B, 3, H, W]``.
            data_samples (list[DataSample], optional): With ``gt_label`` (and ``gt_visibility``
                for main-stream occlusion supervision) in ``'loss'`` mode.
            mode (str): ``'loss'`` -> dict of losses and diagnostics, ``'predict'`` -> list of
                data samples, ``'tensor'`` -> :meth:`extract_feat`'s dict.
            occ_inputs (Tensor, optional): Occlusion batch ``[B', 3, H, W]`` (``'loss'`` only).
            occ_data_samples (list[DataSample], optional): Its samples with ``gt_visibility``.
        """
        if mode == 'loss':
            return self.loss(inputs, data_samples, occ_inputs, occ_data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.extract_feat(inputs)
        raise RuntimeError(f"OAML: invalid mode {mode!r}; expected 'loss', 'predict' or 'tensor'")

    def loss(self,
             inputs: torch.Tensor,
             data_samples: List[DataSample],
             occ_inputs: Optional[torch.Tensor] = None,
             occ_data_samples: Optional[List[DataSample]] = None) -> Dict[str, torch.Tensor]:
        """Weighted losses of one training batch, plus diagnostics.

        Args:
            inputs (Tensor): Main batch ``[B, 3, H, W]`` (PK-sampled identities).
            data_samples (list[DataSample]): ``gt_label`` for each image; ``gt_visibility``
                ``[1, H, W]`` when the main stream supervises the occlusion head.
            occ_inputs (Tensor, optional): Occlusion batch ``[B', 3, H, W]``.
            occ_data_samples (list[DataSample], optional): ``gt_visibility`` for each image.

        Returns:
            dict[str, Tensor]: weighted terms ``loss_adaface``, ``loss_qaconv_<name>``,
            ``loss_occlusion`` (each present only when computed) and unweighted diagnostics
            without "loss" in the name: ``feat_norm`` (mean feature norm), ``qaconv_acc``
            (batch-hard accuracy), ``occ_mse`` (occlusion MSE), ``visible_fraction`` (mean
            predicted visibility of the main batch).
        """
        labels = self._labels(data_samples, inputs.shape[0])
        maps = self.backbone(inputs)
        feature_map = self._feature_map(maps)
        embedding, norm = self.neck(maps)
        weights = self.loss_weights

        logits = self.adaface_head(embedding, norm, labels)
        losses = dict(loss_adaface=weights['adaface'] * F.cross_entropy(logits, labels))
        losses['feat_norm'] = norm.detach().float().mean()

        sources = self._supervision_sources(occ_inputs is not None)
        visibility = None
        if self.visibility_weighting or 'main' in sources:
            visibility = self.occlusion_head(feature_map.detach())
            losses['visible_fraction'] = visibility.detach().float().mean()

        if self.qaconv_head is not None:
            match_vis = visibility.detach() if self.visibility_weighting else None
            losses.update(self._qaconv_losses(feature_map, match_vis, labels))

        if sources:
            occ = self._occlusion_loss(sources, visibility, data_samples, occ_inputs,
                                       occ_data_samples)
            losses['loss_occlusion'] = weights['occlusion'] * occ
            losses['occ_mse'] = occ.detach()
        return losses

    def predict(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None) -> List[DataSample]:
        """Per-image embedding (flip-fused), normalised matching map and visibility.

        The embedding is AdaFace's flip fusion (reference-facts 3.5, ``pre_norm_vector_add``):
        ``f = l2norm(e(x) * n(x) + e(flip(x)) * n(flip(x)))`` with ``e`` the unit embedding and
        ``n`` its norm, ``flip`` a horizontal flip. Both views go through the network as one
        batch (identical per-image results in eval mode).

        Args:
            inputs (Tensor): Preprocessed images ``[B, 3, H, W]``.
            data_samples (list[DataSample], optional): Updated in place (ground truth and
                metainfo such as ``pair_idx``/``issame`` are kept); created when None.

        Returns:
            list[DataSample]: each with, on the CPU, ``embedding`` float32 ``[D]`` (unit),
            ``feature_map`` float16 ``[C, h, w]`` of the unflipped image, every location's
            ``C``-vector L2-normalised (only with a QAConv head), and ``visibility`` float32
            ``[1, h, w]`` (only when QAConv is visibility-weighted).
        """
        batch = inputs.shape[0]
        if data_samples is None:
            data_samples = [DataSample() for _ in range(batch)]
        if len(data_samples) != batch:
            raise ValueError(f'OAML.predict: {len(data_samples)} data_samples for {batch} images')
        feats = self.extract_feat(torch.cat([inputs, inputs.flip(3)]))
        weighted = feats['embedding'].float() * feats['norm'].float()
        embedding = F.normalize(weighted[:batch] + weighted[batch:], dim=1).cpu()
        feature_map = visibility = None
        if self.qaconv_head is not None:
            feature_map = F.normalize(feats['feature_map'][:batch].float(), dim=1).half().cpu()
        if self.visibility_weighting:
            visibility = feats['visibility'][:batch].float().cpu()
        for i, sample in enumerate(data_samples):
            sample.set_field(embedding[i], 'embedding')
            if feature_map is not None:
                sample.set_field(feature_map[i], 'feature_map')
            if visibility is not None:
                sample.set_field(visibility[i], 'visibility')
        return data_samples

    # ------------------------------------------------------------------ loss helpers

    @staticmethod
    def _labels(data_samples: Optional[List[DataSample]], batch: int) -> torch.Tensor:
        if data_samples is None or len(data_samples) != batch:
            raise ValueError(f'OAML.loss needs one data sample with gt_label per image ({batch}), '
                             f'got {None if data_samples is None else len(data_samples)}')
        for i, sample in enumerate(data_samples):
            if 'gt_label' not in sample:
                raise ValueError(f'OAML.loss: data_samples[{i}] has no gt_label')
        labels = torch.cat([sample.gt_label.view(-1) for sample in data_samples])
        if labels.shape != (batch, ):
            raise ValueError(f'OAML.loss: each data sample needs a single gt_label, got '
                             f'{labels.numel()} labels for {batch} images')
        return labels.long()

    @staticmethod
    def _gt_visibility(data_samples: Optional[List[DataSample]], batch: int,
                       name: str) -> torch.Tensor:
        if data_samples is None or len(data_samples) != batch:
            raise ValueError(f'OAML.loss: {name} must hold one data sample per image ({batch}) '
                             'for occlusion supervision')
        for i, sample in enumerate(data_samples):
            if 'gt_visibility' not in sample:
                raise ValueError(f'OAML.loss: {name}[{i}] has no gt_visibility, needed for '
                                 'occlusion supervision (PackFaceInputs writes it)')
        return torch.stack([sample.gt_visibility for sample in data_samples])

    def _supervision_sources(self, has_occ_batch: bool) -> Set[str]:
        """Which batches supervise the occlusion head in this iteration."""
        mode = self.occlusion_supervision
        if mode is None:
            return set()
        if mode == 'auto':
            return {'occ_batch'} if has_occ_batch else {'main'}
        sources = {'main'} if mode in ('main', 'both') else set()
        if has_occ_batch and mode in ('occ_batch', 'both'):
            sources.add('occ_batch')
        elif has_occ_batch:
            self._warn_once('unused_occ', "OAML: occlusion_supervision='main' ignores the "
                            'occlusion batch that arrived (remove OcclusionBatchHook or use '
                            "'both'/'auto')")
        elif mode == 'occ_batch':
            self._warn_once('missing_occ', "OAML: occlusion_supervision='occ_batch' but no "
                            'occlusion batch arrived; the occlusion head gets no loss in such '
                            'iterations (configure OcclusionBatchHook or use \'auto\')')
        return sources

    def _qaconv_losses(self, feature_map: torch.Tensor, visibility: Optional[torch.Tensor],
                       labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Weighted QAConv terms of the batch matched against itself, plus ``qaconv_acc``."""
        weight = self.loss_weights['qaconv']
        if visibility is not None and not bool(torch.isfinite(visibility).all()):
            # Non-finite visibility means non-finite features (e.g. a transient fp16
            # overflow), which make the AdaFace loss non-finite too. QAConvHead rejects such
            # weights with an error; report the terms as NaN instead, so that
            # FiniteLossOptimWrapper skips this update and training goes on.
            nan = feature_map.new_full((), float('nan'), dtype=torch.float32)
            return {f'loss_qaconv_{name}': nan for name in self.qaconv_losses}
        scores = self.qaconv_head(feature_map, visibility)
        terms = {
            f'loss_qaconv_{name}': weight * loss_fn(scores, labels)
            for name, loss_fn in self.qaconv_losses.items()
        }
        for loss_fn in self.qaconv_losses.values():
            if hasattr(loss_fn, 'accuracy'):
                terms['qaconv_acc'] = loss_fn.accuracy(scores.detach(), labels)
                break
        return terms

    def _occlusion_loss(self, sources: Set[str], main_visibility: Optional[torch.Tensor],
                        data_samples: List[DataSample], occ_inputs: Optional[torch.Tensor],
                        occ_data_samples: Optional[List[DataSample]]) -> torch.Tensor:
        """Per-sample mean of the occlusion loss over the supervising batches."""
        terms: List[Tuple[torch.Tensor, int]] = []
        if 'main' in sources:
            gt = self._gt_visibility(data_samples, main_visibility.shape[0], 'data_samples')
            terms.append((self.occlusion_loss(main_visibility, gt), gt.shape[0]))
        if 'occ_batch' in sources:
            # The occlusion loss must reach only the occlusion head: no graph through the
            # backbone for the occlusion batch (this also saves its activations).
            with torch.no_grad():
                occ_map = self._feature_map(self.backbone(occ_inputs))
            gt = self._gt_visibility(occ_data_samples, occ_inputs.shape[0], 'occ_data_samples')
            terms.append((self.occlusion_loss(self.occlusion_head(occ_map), gt), gt.shape[0]))
        total = sum(count for _, count in terms)
        return sum(loss * (count / total) for loss, count in terms)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            print_log(message, logger='current', level=logging.WARNING)
