"""OAML: occlusion-aware face recognition (AdaFace + QAConv + occlusion head on one backbone)."""
import copy
import logging
from typing import Dict, List, Optional, Sequence, Set, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmpretrain.structures import DataSample

from mmoaml.registry import MODELS
from mmoaml.structures import stack_gt_visibility
from ..builder import ModuleCfg, build_component

#: Sources of occlusion supervision (see :class:`OAML`, ``occlusion_supervision``).
SUPERVISION_MODES = ('occ_batch', 'main', 'both', 'auto', None)
#: Losses of the heads when their configs set none: the OAML report's weights 0.1 (AdaFace),
#: 0.9 (each QAConv loss) and 0.1 (occlusion).
REPORT_HEAD_LOSSES = dict(
    adaface_head=dict(loss=dict(type='CrossEntropyLoss', loss_weight=0.1)),
    qaconv_head=dict(losses=dict(
        pair=dict(type='PairwiseMatchingLoss', loss_weight=0.9),
        triplet=dict(type='SoftmaxTripletLoss', margin=1.0, triplet_weight=0.5,
                     loss_weight=0.9))),
    occlusion_head=dict(loss=dict(type='OcclusionLoss', loss_weight=0.1)))


def with_report_losses(cfg: Optional[ModuleCfg], head: str) -> Optional[ModuleCfg]:
    """``cfg`` with the report's loss configs of ``head`` where it sets none."""
    if not isinstance(cfg, dict):
        return cfg
    return {**copy.deepcopy(REPORT_HEAD_LOSSES[head]), **cfg}


@MODELS.register_module()
class OAML(BaseModel):
    """Occlusion-aware face recognizer: AdaFace embedding, QAConv matching, visibility head.

    One backbone feeds three branches (OAML technical report;
    docs/architecture.md#training-iteration):

    - ``neck`` turns the backbone's last map into a unit embedding and its norm, classified by
      ``adaface_head`` (CrossEntropy over margin logits);
    - ``qaconv_head`` matches the chosen feature map ``F`` (``feature_level``) of every pair of
      the batch; the pairwise and softmax-triplet losses on that ``[B, B]`` score matrix train
      the matcher *and* the backbone (the predecessor detached ``F`` twice, so they trained
      neither);
    - ``occlusion_head`` predicts a visibility map ``V`` (1 = visible face) from ``F.detach()``;
      its MSE loss against the area-averaged ground-truth mask trains it alone. ``V.detach()``
      weights QAConv's local matches.

    OAML only wires: :meth:`loss` extracts the features once and asks each head for its loss
    dict (``adaface_head.loss``, ``qaconv_head.loss``, ``occlusion_head.loss_by_visibility``);
    each head owns its loss and the loss's weight lives in that loss's config
    (``adaface_head.loss.loss_weight``, ``qaconv_head.losses.<name>.loss_weight``,
    ``occlusion_head.loss.loss_weight``). A head given as a config without a loss gets the OAML
    report's: ``0.1 * CE`` for AdaFace, ``0.9 *`` each QAConv loss (pairwise and
    softmax-triplet), ``0.1 *`` the occlusion MSE (:data:`REPORT_HEAD_LOSSES`). Gradient rules:
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
    (finer grid). The neck always reads the last map. Head sizes must match the level: checked
    once, at construction when the backbone declares ``out_channels`` and ``out_sizes`` (as
    ``IResNet`` does), else at the first forward pass; a mismatch names the config keys.

    Non-finite losses are not patched here (no NaN-to-zero): use ``FiniteLossOptimWrapper``,
    which skips such updates. Under DDP, set ``find_unused_parameters=True`` when the occlusion
    head can miss its loss in some iterations (``'occ_batch'`` without the batch) or is
    unsupervised.

    Args:
        backbone (dict | nn.Module): Returns a tuple of maps, e.g. ``IResNet``.
        neck (dict | nn.Module): ``maps -> (embedding [B, D], norm [B, 1])``, e.g.
            ``FaceEmbeddingNeck``.
        adaface_head (dict | nn.Module): A margin head with ``loss((embedding, norm),
            data_samples) -> {'loss': ...}``: ``AdaFaceHead`` (also ``ArcFaceHead``,
            ``CosFaceHead``); its loss is logged as ``loss_adaface``.
        qaconv_head (dict | nn.Module, optional): ``QAConvHead``, with ``loss(F,
            data_samples, vis) -> {'loss_qaconv_<name>': ..., 'qaconv_acc': ...}``.
            Defaults to None (AdaFace only).
        occlusion_head (dict | nn.Module, optional): ``OcclusionHead``; ``F -> [B, 1, h, w]``,
            with ``loss_by_visibility(vis, gt) -> {'loss_occlusion': ..., 'occ_mse': ...}``.
            Defaults to None.
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
        >>> model.loss_weights['loss_adaface'], model.loss_weights['loss_qaconv_pair']
        (0.1, 0.9)
    """

    def __init__(self,
                 backbone: ModuleCfg,
                 neck: ModuleCfg,
                 adaface_head: ModuleCfg,
                 qaconv_head: Optional[ModuleCfg] = None,
                 occlusion_head: Optional[ModuleCfg] = None,
                 feature_level: int = -1,
                 occlusion_supervision: Optional[str] = 'auto',
                 visibility_weighting: Union[bool, str] = 'auto',
                 data_preprocessor: Optional[ModuleCfg] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type='FaceDataPreprocessor')
        super().__init__(
            data_preprocessor=build_component(data_preprocessor, 'OAML: data_preprocessor'),
            init_cfg=init_cfg)
        for name, cfg in (('backbone', backbone), ('neck', neck), ('adaface_head', adaface_head)):
            if cfg is None:
                raise ValueError(f'OAML: {name} is required')
        self.backbone = build_component(backbone, 'OAML: backbone')
        self.neck = build_component(neck, 'OAML: neck')
        self.adaface_head = build_component(
            with_report_losses(adaface_head, 'adaface_head'), 'OAML: adaface_head')
        self.qaconv_head = build_component(
            with_report_losses(qaconv_head, 'qaconv_head'), 'OAML: qaconv_head')
        self.occlusion_head = build_component(
            with_report_losses(occlusion_head, 'occlusion_head'), 'OAML: occlusion_head')

        if not isinstance(feature_level, int):
            raise TypeError(f'OAML: feature_level must be an int, got {feature_level!r}')
        self.feature_level = feature_level
        self._wiring_checked = self._check_declared_wiring()
        self.occlusion_supervision = self._check_supervision(occlusion_supervision)
        self.visibility_weighting = self._resolve_weighting(visibility_weighting)
        self._warned: Set[str] = set()
        if getattr(self.data_preprocessor, 'channels_last', False):
            # Inputs arrive channels-last; 4-D weights in the same layout spare every
            # convolution a per-call conversion (in-place init and loading keep the layout).
            self.to(memory_format=torch.channels_last)

    @property
    def loss_weights(self) -> Dict[str, float]:
        """Weight of each logged loss term, read from the heads' loss configs."""
        weights = {'loss_adaface': _weight_of(self.adaface_head.loss_module)}
        if self.qaconv_head is not None:
            weights.update({f'loss_qaconv_{name}': _weight_of(loss)
                            for name, loss in self.qaconv_head.losses.items()})
        if self.occlusion_supervision is not None:
            weights['loss_occlusion'] = _weight_of(self.occlusion_head.loss_module)
        return weights

    # ------------------------------------------------------------------ configuration checks

    def _check_declared_wiring(self) -> bool:
        """Check the heads against the level's declared map; False when nothing is declared."""
        out_indices = getattr(self.backbone, 'out_indices', None)
        if out_indices is None:
            return False
        num_maps = len(out_indices)
        if not -num_maps <= self.feature_level < num_maps:
            raise ValueError(f'OAML: feature_level={self.feature_level} is not an index into '
                             f'the {num_maps} backbone output(s) of backbone.out_indices='
                             f'{tuple(out_indices)}')
        channels = getattr(self.backbone, 'out_channels', None)
        sizes = getattr(self.backbone, 'out_sizes', None)
        if channels is None:
            return False
        grid = None if sizes is None else tuple(sizes[self.feature_level])
        self._check_wiring(channels[self.feature_level], grid)
        return grid is not None

    def _check_wiring(self, channels: int, grid: Optional[Sequence[int]]) -> None:
        """The QAConv and occlusion heads must read a ``channels x grid`` map."""
        level = f'feature_level={self.feature_level} selects a backbone map'
        for head_name, key in (('qaconv_head', 'num_features'),
                               ('occlusion_head', 'in_channels')):
            expected = getattr(getattr(self, head_name), key, None)
            if expected is not None and expected != channels:
                raise ValueError(
                    f'OAML: {level} with {channels} channels, but {head_name}.{key}={expected}; '
                    f'set {head_name}.{key}={channels} or change feature_level / '
                    'backbone.out_indices')
        head = self.qaconv_head
        if grid is None or head is None or getattr(head, 'height', None) is None:
            return
        if (head.height, head.width) != tuple(grid):
            raise ValueError(
                f'OAML: {level} of {channels} x {grid[0]} x {grid[1]} (C, h, w), but qaconv_head '
                f'has num_features={head.num_features}, height={head.height}, '
                f'width={head.width}; set qaconv_head.num_features/height/width to match, or '
                'change feature_level / backbone.out_indices / backbone.input_size')

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
        # The usual outcome is logged at debug level; `visibility_weighting` states it too.
        if active:
            print_log('OAML: QAConv matches are weighted by the occlusion head '
                      f'(supervision: {self.occlusion_supervision})', logger='current',
                      level=logging.DEBUG)
        else:
            print_log(f'OAML: QAConv visibility weighting is off ({reason or "disabled"})',
                      logger='current', level=logging.DEBUG)
        return active

    # ------------------------------------------------------------------ features

    def _feature_map(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """Pick the configured level; the first call checks it when the build could not."""
        feature_map = maps[self.feature_level]
        if not self._wiring_checked:
            if not isinstance(maps, (tuple, list)):
                raise TypeError('OAML: the backbone must return a tuple of feature maps, got '
                                f'{type(maps).__name__}')
            self._check_wiring(feature_map.shape[1], tuple(feature_map.shape[2:]))
            self._wiring_checked = True
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
        maps = self.backbone(inputs)
        feature_map = self._feature_map(maps)
        embedding, norm = self.neck(maps)

        adaface = self.adaface_head.loss((embedding, norm), data_samples)
        losses = dict(loss_adaface=adaface.pop('loss'), **adaface)
        losses['feat_norm'] = norm.detach().float().mean()

        sources = self._supervision_sources(occ_inputs is not None)
        visibility = None
        if self.visibility_weighting or 'main' in sources:
            visibility = self.occlusion_head(feature_map.detach())
            losses['visible_fraction'] = visibility.detach().float().mean()

        if self.qaconv_head is not None:
            match_vis = visibility.detach() if self.visibility_weighting else None
            losses.update(self.qaconv_head.loss(feature_map, data_samples, match_vis))

        if sources:
            losses.update(self._occlusion_losses(sources, visibility, data_samples, occ_inputs,
                                                 occ_data_samples))
        return losses

    def predict(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None) -> List[DataSample]:
        """Per-image embedding (flip-fused), normalised matching map and visibility.

        The embedding is AdaFace's flip fusion
        (docs/reference.md#input-preprocessing-and-flip-fusion, ``pre_norm_vector_add``):
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

    def _occlusion_losses(self, sources: Set[str], main_visibility: Optional[torch.Tensor],
                          data_samples: List[DataSample], occ_inputs: Optional[torch.Tensor],
                          occ_data_samples: Optional[List[DataSample]]) -> Dict[str, torch.Tensor]:
        """The occlusion head's terms, averaged per sample over the supervising batches."""
        parts = []
        if 'main' in sources:
            gt = stack_gt_visibility(data_samples, main_visibility.shape[0])
            parts.append((main_visibility, gt))
        if 'occ_batch' in sources:
            gt = stack_gt_visibility(occ_data_samples, occ_inputs.shape[0], 'occ_data_samples')
            # The occlusion loss must reach only the occlusion head: no graph through the
            # backbone for the occlusion batch (this also saves its activations).
            with torch.no_grad():
                occ_map = self._feature_map(self.backbone(occ_inputs))
            parts.append((self.occlusion_head(occ_map), gt))
        total = sum(vis.shape[0] for vis, _ in parts)
        combined: Dict[str, torch.Tensor] = {}
        for vis, gt in parts:
            terms = self.occlusion_head.loss_by_visibility(vis, gt.to(vis.device))
            for key, value in terms.items():
                share = value * (vis.shape[0] / total)
                combined[key] = combined[key] + share if key in combined else share
        return combined

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            print_log(message, logger='current', level=logging.WARNING)


def _weight_of(loss: nn.Module) -> float:
    return float(getattr(loss, 'loss_weight', 1.0))
