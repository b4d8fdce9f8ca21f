"""QAConv: query-adaptive local matching of two feature maps, with visibility weighting."""
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmpretrain.structures import DataSample

from mmoaml.ops import aligned_pair_maxima
from mmoaml.registry import MODELS
from mmoaml.structures import stack_labels
from ..builder import build_component
from ..checks import checkable_without_sync
from ..first_maxima import first_maxima

# Default blocks of ``match`` (measured with tools/benchmarks/qaconv_throughput.py): on CPU the
# maxima reductions are memory-bound, so a block should stay near cache size, with 64 galleries
# as the contiguous inner axis; accelerators prefer large blocks.
_CPU_BLOCK_BYTES = 8 * 2**20
_CPU_GALLERY_CHUNK = 64
_DEVICE_BLOCK_BYTES = 128 * 2**20
# Correlation value of a pair of locations involving a hidden one in 'mask' weighting: below
# any cosine (>= -1) even after bfloat16 rounding, and exact in every compute dtype.
_HIDDEN = -4.0
_COMPUTE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_WEIGHTINGS = ('mask', 'multiply')
#: QAConv's in-batch losses (OAML report); the keys name the logged terms ``loss_qaconv_<key>``.
DEFAULT_QACONV_LOSSES = dict(
    pair=dict(type='PairwiseMatchingLoss', loss_weight=1.0),
    triplet=dict(type='SoftmaxTripletLoss', margin=1.0, triplet_weight=0.5, loss_weight=1.0))


@MODELS.register_module()
class QAConvHead(BaseModule):
    """QAConv matcher with visibility-aware local matching.

    Query-adaptive convolution (Liao and Shao, "Interpretable and Generalizable Person
    Re-Identification with Query-Adaptive Convolution and Temporal Lifting", ECCV 2020,
    https://arxiv.org/abs/1904.10424; version 2.1 of ShengcaiLiao/QAConv, CVPR 2022). Every
    location's ``C``-vector of a probe map ``P`` and a gallery map ``G`` (``C x h x w``,
    ``hw = h*w`` locations) is L2-normalised (idempotent: raw or normalised maps may be passed);
    ``S[r, s] = <P_r, G_s>`` for probe location ``r`` and gallery location ``s``; the maxima
    ``max_s S[r, s]`` (per probe location) and ``max_r S[r, s]`` (per gallery location) go
    through ``bn`` (BatchNorm1d(1)) and the shared ``fc`` (Linear(hw, 1)), the two directions
    are summed, and ``logit_bn`` (BatchNorm1d(1)) gives the score. 54 parameters at 7x7
    (reference count); ``score(P, G) = score(G, P)`` with the visibilities swapped.

    Visibility (``[N, 1, h, w]`` or ``[N, h*w]`` in ``[0, 1]``; 1 = visible face, 0 = occluder or
    not face) is indexed by the locations of its own map. ``weighting='mask'`` (default) never
    selects a visibility-0 location as a match and weights each maximum by the visibility of both
    locations it pairs; ``'multiply'`` is the OAML report's formula, kept for ablation. In eval
    mode a score depends only on its own pair, so chunking does not change it; in train mode both
    BN layers use statistics over all pairs scored together, so train-mode scoring is one block.

    Shapes: ``forward(feats [B, C, h, w], vis) -> [B, B]`` (the batch against itself),
    ``match(probe [P, C, h, w], gallery [G, C, h, w], probe_vis, gallery_vis) -> [P, G]``,
    ``match_pairs(probe [N, C, h, w], gallery [N, C, h, w], ...) -> [N]``; scores are float32,
    higher = more similar. ``loss(feature_map [B, C, h, w], data_samples, visibility)`` returns
    the configured losses on the batch's ``[B, B]`` scores and ``qaconv_acc``. Defaults: float32
    compute (``dtype`` may be bfloat16 or float16); eval blocks of 64 galleries and about 8 MB of
    correlations on CPU, about 128 MB on an accelerator.

    See docs/qaconv.md for the visibility weighting, the block layout and the reduced-precision
    error bound.

    Args:
        num_features (int): Channels ``C`` of the matched maps. Defaults to 512 (IR body map).
        height (int): Map height. Defaults to 7 (112x112 input).
        width (int): Map width. Defaults to 7.
        weighting (str): ``'mask'`` (default, described above) or ``'multiply'`` (report
            formula, ablation only).
        losses (dict): ``{name: loss config}`` of the in-batch losses :meth:`loss` computes on
            the ``[B, B]`` scores, each logged as ``loss_qaconv_<name>`` and scaled by its
            ``loss_weight``. Defaults to ``PairwiseMatchingLoss`` (``pair``) and
            ``SoftmaxTripletLoss(margin=1.0, triplet_weight=0.5)`` (``triplet``), both with
            ``loss_weight=1.0``.
        init_cfg (dict | list[dict], optional): MMEngine initialisation config. Defaults to None
            (reference initialisation at construction: BN weight 1 / bias 0, fc weight ``1/hw``,
            fc bias torch's default ``U(-1/sqrt(hw), 1/sqrt(hw))``).

    Examples:
        >>> import torch
        >>> from mmoaml.models import QAConvHead
        >>> head = QAConvHead(num_features=16, height=7, width=7).eval()
        >>> probe, gallery = torch.randn(3, 16, 7, 7), torch.randn(5, 16, 7, 7)
        >>> vis = torch.ones(5, 1, 7, 7)
        >>> vis[:, :, 4:] = 0  # lower face occluded in every gallery image
        >>> tuple(head.match(probe, gallery, gallery_vis=vis).shape)
        (3, 5)
        >>> # config: dict(type='QAConvHead', num_features=512, height=7, width=7)
    """

    def __init__(self,
                 num_features: int = 512,
                 height: int = 7,
                 width: int = 7,
                 weighting: str = 'mask',
                 losses: Mapping[str, dict] = DEFAULT_QACONV_LOSSES,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if min(num_features, height, width) <= 0:
            raise ValueError('num_features, height and width must be positive, got '
                             f'{num_features}, {height}, {width}')
        if weighting not in _WEIGHTINGS:
            raise ValueError(f'weighting must be one of {_WEIGHTINGS}, got {weighting!r}')
        self.num_features = num_features
        self.height = height
        self.width = width
        self.weighting = weighting
        self.bn = nn.BatchNorm1d(1)
        self.fc = nn.Linear(height * width, 1)
        self.logit_bn = nn.BatchNorm1d(1)
        self.losses = self._build_losses(losses)
        self.reset_parameters()

    @staticmethod
    def _build_losses(losses: Mapping[str, dict]) -> nn.ModuleDict:
        if not isinstance(losses, Mapping) or not losses:
            raise TypeError('QAConvHead: losses must be a non-empty dict {name: loss cfg}, got '
                            f'{losses!r}')
        for name in losses:
            if not str(name).isidentifier():
                raise ValueError('QAConvHead: losses keys name the logged terms '
                                 f'loss_qaconv_<name> and must be identifiers, got {name!r}')
        return nn.ModuleDict({name: build_component(cfg, f'QAConvHead: losses.{name}')
                              for name, cfg in losses.items()})

    @property
    def hw(self) -> int:
        """Number of locations ``h * w`` of a matched map."""
        return self.height * self.width

    def reset_parameters(self) -> None:
        """Reference initialisation (QAConv 2.1): fc averages the maxima, BN layers are fresh."""
        self.bn.reset_parameters()
        self.logit_bn.reset_parameters()
        self.fc.reset_parameters()
        nn.init.constant_(self.fc.weight, 1.0 / self.hw)

    def forward(self, feats: torch.Tensor, vis: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Score every pair of a batch against each other (the training-time matrix).

        Equal to ``match(feats, feats, vis, vis)`` but computes each correlation maximum once:
        the gallery-direction maxima of pair ``(i, j)`` are the probe-direction maxima of pair
        ``(j, i)``. Scored as one block, so in train mode the BN statistics cover all ``B x B``
        pairs, self-pairs included (reference behaviour).

        Args:
            feats (Tensor): ``[B, C, h, w]`` feature maps.
            vis (Tensor, optional): ``[B, 1, h, w]`` or ``[B, h*w]`` visibility, 1 = visible.

        Returns:
            Tensor: float32 ``[B, B]`` scores, row = probe, column = gallery.
        """
        x = self._local_descriptors(feats, 'feats', torch.float32)
        v = self._visibility(vis, x.shape[0], 'vis')
        probe, gallery = self._masked_descriptors(x, x, v, v)
        corr = self._correlation(probe, self._location_major(gallery))
        return self._block_scores(corr, *self._grid_vis(v, v), symmetric=True)

    def loss(self,
             feature_map: torch.Tensor,
             data_samples: Sequence[DataSample],
             visibility: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """In-batch losses of a PK batch matched against itself, plus ``qaconv_acc``.

        Args:
            feature_map (Tensor): ``[B, C, h, w]`` maps of the batch.
            data_samples (Sequence[DataSample]): ``gt_label`` of each image.
            visibility (Tensor, optional): ``[B, 1, h, w]`` visibility weighting the matches
                (detached by the caller when no gradient may reach its producer).

        Returns:
            dict[str, Tensor]: ``loss_qaconv_<name>`` per configured loss (weighted by its
            config) and ``qaconv_acc`` (batch-hard accuracy, from the first loss that has an
            ``accuracy`` method).
        """
        labels = stack_labels(data_samples, feature_map.shape[0]).to(feature_map.device)
        if (visibility is not None and checkable_without_sync(visibility)
                and not bool(torch.isfinite(visibility).all())):
            # Non-finite visibility means non-finite features (e.g. a transient fp16 overflow),
            # which make the other losses non-finite too. The range check of the matcher would
            # raise; report the terms as NaN instead, so that the optimizer wrapper skips this
            # update and training goes on.
            nan = feature_map.new_full((), float('nan'), dtype=torch.float32)
            return {f'loss_qaconv_{name}': nan for name in self.losses}
        scores = self(feature_map, visibility)
        terms = {f'loss_qaconv_{name}': loss_fn(scores, labels)
                 for name, loss_fn in self.losses.items()}
        for loss_fn in self.losses.values():
            if hasattr(loss_fn, 'accuracy'):
                terms['qaconv_acc'] = loss_fn.accuracy(scores.detach(), labels)
                break
        return terms

    def match(self,
              probe: torch.Tensor,
              gallery: torch.Tensor,
              probe_vis: Optional[torch.Tensor] = None,
              gallery_vis: Optional[torch.Tensor] = None,
              chunk_size: Optional[Union[int, Tuple[int, int]]] = None,
              dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """Score every probe against every gallery map.

        Args:
            probe (Tensor): ``[P, C, h, w]`` feature maps (raw or L2-normalised per location).
            gallery (Tensor): ``[G, C, h, w]``.
            probe_vis (Tensor, optional): ``[P, 1, h, w]`` or ``[P, h*w]`` in ``[0, 1]``,
                indexed by probe location; None = all visible.
            gallery_vis (Tensor, optional): ``[G, 1, h, w]`` or ``[G, h*w]``, indexed by gallery
                location; None = all visible.
            chunk_size (int | tuple[int, int], optional): Probes and galleries per block in eval
                mode (one int for both). Defaults to None: on CPU 64 galleries (the width the
                maxima reductions vectorise well) and as many probes as fit in 8 MB of
                correlations (cache-sized); on an accelerator square blocks of about 128 MB.
                Must be None in train mode (batch-statistics BN needs all pairs at once).
            dtype (torch.dtype, optional): Compute precision of the correlations and maxima:
                ``torch.float32`` (default), ``torch.bfloat16`` or ``torch.float16``; see the
                class docstring for the error bound.

        Returns:
            Tensor: float32 ``[P, G]`` scores.
        """
        compute = self._compute_dtype(dtype)
        p = self._local_descriptors(probe, 'probe', compute)
        g = self._local_descriptors(gallery, 'gallery', compute)
        pv = self._visibility(probe_vis, p.shape[0], 'probe_vis')
        gv = self._visibility(gallery_vis, g.shape[0], 'gallery_vis')
        p, g = self._masked_descriptors(p, g, pv, gv)
        if self.training:
            self._refuse_chunking(chunk_size, 'match')
            corr = self._correlation(p, self._location_major(g))
            return self._block_scores(corr, *self._grid_vis(pv, gv))
        p_step, g_step = self._chunk_sizes(chunk_size, compute, p.device)
        scores = torch.empty(p.shape[0], g.shape[0], dtype=torch.float32, device=p.device)
        for j in range(0, g.shape[0], g_step):
            columns = self._location_major(g[j:j + g_step])
            gv_j = None if gv is None else gv[j:j + g_step]
            for i in range(0, p.shape[0], p_step):
                pv_i = None if pv is None else pv[i:i + p_step]
                corr = self._correlation(p[i:i + p_step], columns)
                scores[i:i + p_step, j:j + g_step] = self._block_scores(
                    corr, *self._grid_vis(pv_i, gv_j))
        return scores

    def match_pairs(self,
                    probe: torch.Tensor,
                    gallery: torch.Tensor,
                    probe_vis: Optional[torch.Tensor] = None,
                    gallery_vis: Optional[torch.Tensor] = None,
                    chunk_size: Optional[int] = None,
                    dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """Score aligned pairs ``(probe[k], gallery[k])`` (verification pair lists).

        Same score as ``match(...)[k, k]``, at the cost of ``N`` pairs instead of ``N^2``. In
        eval mode on the CPU (float32 or bfloat16 compute, ``'mask'`` weighting or no
        visibility, no gradient to the maps) the correlations and their maxima come from the
        compiled kernel of :mod:`mmoaml.ops` (same scores to float rounding, about twice the
        speed; it sums bfloat16 products in float32 without rounding them to bfloat16 first);
        where it cannot be built, or with ``MMOAML_NATIVE=0``, from PyTorch.

        Args:
            probe (Tensor): ``[N, C, h, w]``.
            gallery (Tensor): ``[N, C, h, w]``.
            probe_vis (Tensor, optional): ``[N, 1, h, w]`` or ``[N, h*w]``.
            gallery_vis (Tensor, optional): ``[N, 1, h, w]`` or ``[N, h*w]``.
            chunk_size (int, optional): Pairs per block of the PyTorch path in eval mode
                (default: as many as one default block of :meth:`match` holds; the compiled
                kernel needs no blocks); must be None in train mode.
            dtype (torch.dtype, optional): Compute precision, as in :meth:`match`.

        Returns:
            Tensor: float32 ``[N]`` scores.
        """
        compute = self._compute_dtype(dtype)
        self._check_maps(probe, 'probe')
        self._check_maps(gallery, 'gallery')
        if probe.shape[0] != gallery.shape[0]:
            raise ValueError('QAConvHead.match_pairs: probe and gallery must hold the same '
                             f'number of maps, got {probe.shape[0]} and {gallery.shape[0]}')
        n = probe.shape[0]
        pv = self._visibility(probe_vis, n, 'probe_vis')
        gv = self._visibility(gallery_vis, n, 'gallery_vis')
        if self.training:
            self._refuse_chunking(chunk_size, 'match_pairs')
            step = max(n, 1)
        elif chunk_size is None:
            step = self._pair_chunk(compute, probe.device)
        else:
            step = self._chunk_sizes(chunk_size, compute, probe.device)[0]
        compiled = self._compiled_pair_scores(probe, gallery, pv, gv, compute)
        if compiled is not None:
            return compiled
        masked = self._any_hidden(pv, gv)
        scores = []
        for i in range(0, n, step):
            pv_i = None if pv is None else pv[i:i + step]
            gv_i = None if gv is None else gv[i:i + step]
            # Read block by block (each map is used once: the maps stream through the cache)
            # and channel-major [n, C, hw], the maps' own layout: a transposing copy would cost
            # more than the product; bmm reads the probe side as a transposed operand.
            p, g = self._pair_maps(probe[i:i + step], compute), self._pair_maps(
                gallery[i:i + step], compute)
            if masked:
                hidden_p, hidden_g = self._hidden(pv_i, p), self._hidden(gv_i, g)
                if self.training:  # non-finite features of hidden locations reach no gradient
                    p = p.masked_fill(hidden_p.unsqueeze(1), 0.0)
                    g = g.masked_fill(hidden_g.unsqueeze(1), 0.0)
            # The maxima in float32: exactly the maxima of the reduced-precision products, and
            # a 49-wide bfloat16 reduction costs more on CPU than converting the small block.
            corr = torch.bmm(p.transpose(1, 2).to(compute), g.to(compute)).float()
            if compute != torch.float16:
                # Normalised after the product: the hw x hw block is about 20 times smaller than
                # the maps, which normalising first would read and write once more.
                corr = corr * self._inverse_norms(p).unsqueeze(2) * self._inverse_norms(
                    g).unsqueeze(1)
            if masked:
                # The exclusion of _masked_descriptors applied to the block afterwards: an
                # aligned pair's block (hw x hw) is about 20 times smaller at 7x7x512 than its
                # descriptors, which the extra channels would copy.
                corr = corr.masked_fill(hidden_p.unsqueeze(2) | hidden_g.unsqueeze(1), _HIDDEN)
            scores.append(
                self._block_scores(corr.unsqueeze(3), *self._grid_vis(pv_i, gv_i,
                                                                      aligned=True)).view(-1))
        return torch.cat(scores) if scores else probe.new_zeros(0, dtype=torch.float32)

    def _compiled_pair_scores(self, probe: torch.Tensor, gallery: torch.Tensor,
                              pv: Optional[torch.Tensor], gv: Optional[torch.Tensor],
                              compute: torch.dtype) -> Optional[torch.Tensor]:
        """:meth:`match_pairs` scores from the compiled CPU kernel, or None where it does not
        apply (train mode, an accelerator, float16, ``'multiply'`` weighting of visibility, a
        gradient to the maps) or cannot be built."""
        if (self.training or probe.device.type != 'cpu' or compute == torch.float16
                or (self.weighting == 'multiply' and (pv is not None or gv is not None))
                or (torch.is_grad_enabled() and (probe.requires_grad or gallery.requires_grad))):
            return None
        hidden = self._any_hidden(pv, gv)
        maxima = aligned_pair_maxima(
            probe.flatten(2), gallery.flatten(2), compute == torch.bfloat16,
            None if pv is None or not hidden else pv <= 0,
            None if gv is None or not hidden else gv <= 0, _HIDDEN)
        if maxima is None:
            return None
        max_p, arg_p, max_g, arg_g = maxima
        values = torch.stack((max_p, max_g), dim=1).unsqueeze(1)  # [n, 1, 2, hw]
        if pv is None and gv is None:
            return self._aggregate(values, None).view(-1)
        ones = max_p.new_ones(1, self.hw).expand_as(max_p)
        pv = ones if pv is None else pv
        gv = ones if gv is None else gv
        # Each maximum weighted by the visibility of both locations it pairs (see _maxima).
        weights = torch.stack((pv * gv.gather(1, arg_p), gv * pv.gather(1, arg_g)),
                              dim=1).unsqueeze(1)
        return self._aggregate(torch.where(weights > 0, values, 0.0), weights).view(-1)

    def _pair_maps(self, maps: torch.Tensor, compute: torch.dtype) -> torch.Tensor:
        """``[n, C, h, w]`` -> float32 ``[n, C, hw]``, the maps' own layout: raw, to be
        normalised after the product, except for float16, whose range raw features may leave
        (unit descriptors, normalised first, cannot)."""
        x = maps.flatten(2).float()
        return self._unit(x) if compute == torch.float16 else x

    def _check_maps(self, maps: torch.Tensor, name: str) -> None:
        """Raise unless ``maps`` is ``[N, num_features, height, width]``."""
        expected = (self.num_features, self.height, self.width)
        if maps.dim() != 4 or tuple(maps.shape[1:]) != expected:
            raise ValueError(f'QAConvHead: {name} must be [N, {expected[0]}, {expected[1]}, '
                             f'{expected[2]}] (num_features, height, width), got '
                             f'{list(maps.shape)}')

    @classmethod
    def _unit(cls, x: torch.Tensor) -> torch.Tensor:
        """``[n, C, hw]`` scaled to unit norm over the channels (``F.normalize(x, dim=1)``)."""
        return x * cls._inverse_norms(x).unsqueeze(1)

    @staticmethod
    def _inverse_norms(x: torch.Tensor) -> torch.Tensor:
        """``1 / max(||x||, 1e-12)`` over the channels of ``[n, C, hw]`` (``F.normalize``'s
        divisor); a sum of squares reduces the strided channel axis about 5x faster than
        ``vector_norm``."""
        return (x * x).sum(dim=1).sqrt().clamp_min(1e-12).reciprocal()

    def _pair_chunk(self, dtype: torch.dtype, device: torch.device) -> int:
        """Default aligned pairs per block: on CPU as many as keep both float32 maps of every
        pair within the cache-sized budget; on an accelerator one default ``match`` block."""
        if device.type == 'cpu':
            return max(1, _CPU_BLOCK_BYTES // (2 * self.num_features * self.hw * 4))
        return math.prod(self._chunk_sizes(None, dtype, device))

    @staticmethod
    def _refuse_chunking(chunk_size, caller: str) -> None:
        if chunk_size is not None:
            raise ValueError(f'QAConvHead.{caller}: chunk_size must be None in train mode (the '
                             'BN layers use statistics over all pairs scored together)')

    @staticmethod
    def _compute_dtype(dtype: Optional[torch.dtype]) -> torch.dtype:
        if dtype is None:
            return torch.float32
        if dtype not in _COMPUTE_DTYPES:
            raise ValueError(f'QAConvHead: dtype must be one of {_COMPUTE_DTYPES}, got {dtype}')
        return dtype

    def _chunk_sizes(self, chunk_size: Optional[Union[int, Tuple[int, int]]],
                     dtype: torch.dtype, device: torch.device) -> Tuple[int, int]:
        """``(probes, galleries)`` per block."""
        if chunk_size is None:
            pair_bytes = self.hw * self.hw * torch.empty(0, dtype=dtype).element_size()
            if device.type == 'cpu':
                return max(1, _CPU_BLOCK_BYTES // (pair_bytes * _CPU_GALLERY_CHUNK)), \
                    _CPU_GALLERY_CHUNK
            side = max(1, math.isqrt(_DEVICE_BLOCK_BYTES // pair_bytes))
            return side, side
        sizes = (chunk_size, chunk_size) if isinstance(chunk_size, int) else tuple(chunk_size)
        if len(sizes) != 2 or not all(isinstance(n, int) and n > 0 for n in sizes):
            raise ValueError('QAConvHead: chunk_size must be a positive int or a pair of them, '
                             f'got {chunk_size!r}')
        return sizes

    def _local_descriptors(self, maps: torch.Tensor, name: str, dtype: torch.dtype,
                           channel_major: bool = False) -> torch.Tensor:
        """``[N, C, h, w]`` -> ``[N, hw, C]`` (``channel_major``: ``[N, C, hw]``) unit local
        descriptors in ``dtype``.

        The norms are reduced over the channel axis in the maps' own layout (contiguous inner
        axis, vectorised); ``F.normalize`` there and a transposing copy of 49-wide rows cost
        several times the correlation of an aligned pair.
        """
        self._check_maps(maps, name)
        x = self._unit(maps.flatten(2).float())
        if channel_major:
            return x.to(dtype)
        return x.transpose(1, 2).to(dtype).contiguous()

    def _visibility(self, vis: Optional[torch.Tensor], n: int,
                    name: str) -> Optional[torch.Tensor]:
        """Validate ``vis`` and return it as float32 ``[N, hw]`` (None stays None)."""
        if vis is None:
            return None
        shape = tuple(vis.shape)
        if shape not in ((n, 1, self.height, self.width), (n, self.hw)):
            raise ValueError(f'QAConvHead: {name} must be [{n}, 1, {self.height}, {self.width}] '
                             f'or [{n}, {self.hw}], got {list(shape)}')
        v = vis.reshape(n, self.hw).float()
        # A data-dependent check: only where it forces no device synchronisation.
        if checkable_without_sync(v) and not bool(((v >= 0) & (v <= 1)).all()):
            raise ValueError(f'QAConvHead: {name} must lie in [0, 1] (1 = visible)')
        return v

    def _masked_descriptors(
            self, probe: torch.Tensor, gallery: torch.Tensor, probe_vis: Optional[torch.Tensor],
            gallery_vis: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Fold the visibility-0 exclusion of ``'mask'`` weighting into the descriptors.

        A hidden location's descriptor is replaced by zeros (so its features, NaN included,
        cannot reach any correlation) and two extra channels ``[1, m]`` (probe) / ``[m, 1]``
        (gallery) with ``m = _HIDDEN`` at hidden and 0 at other locations make the matrix product
        itself return ``S + m_r + m_s``: exactly ``S`` between visible locations and at most
        ``_HIDDEN`` (below any cosine, even rounded) wherever a hidden location is involved. This
        costs no pass over the correlation block. On the CPU the two channels are all that is
        added (``K = C + 2``: 0-3 % slower products at 512 channels, where padding to a multiple
        of 32 cost 5-10 %); on an accelerator they are padded to a multiple of 32, the width
        its matrix kernels favour. Without any hidden location the descriptors pass
        through unchanged (so all-ones visibility runs the very same product as no visibility).
        Descriptors are ``[N, hw, K]``.
        """
        if not self._any_hidden(probe_vis, gallery_vis):
            return probe, gallery
        multiple = 1 if probe.device.type == 'cpu' else 32
        width = -(-(probe.shape[2] + 2) // multiple) * multiple
        return (self._append_mask_channels(probe, probe_vis, width, (0, 1)),
                self._append_mask_channels(gallery, gallery_vis, width, (1, 0)))

    def _any_hidden(self, probe_vis: Optional[torch.Tensor],
                    gallery_vis: Optional[torch.Tensor]) -> bool:
        """Whether 'mask' weighting has a hidden location to exclude (channels are appended)."""
        return self.weighting == 'mask' and any(
            vis is not None and bool((vis <= 0).any()) for vis in (probe_vis, gallery_vis))

    @staticmethod
    def _append_mask_channels(x: torch.Tensor, vis: Optional[torch.Tensor], width: int,
                              order: Tuple[int, int]) -> torch.Tensor:
        extra = x.new_zeros(*x.shape[:2], width - x.shape[2])
        extra[..., order[0]] = 1
        if vis is not None:
            hidden = (vis <= 0).unsqueeze(2)
            x = torch.where(hidden, 0.0, x)
            extra[..., order[1]] = torch.where(hidden[..., 0], _HIDDEN, 0.0)
        return torch.cat((x, extra), dim=2)

    def _hidden(self, vis: Optional[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Boolean ``[n, hw]``: the locations ``'mask'`` weighting excludes (None: none)."""
        if vis is None:
            return torch.zeros(x.shape[0], self.hw, dtype=torch.bool, device=x.device)
        return vis <= 0

    def _location_major(self, gallery: torch.Tensor) -> torch.Tensor:
        """``[g, hw, K]`` -> ``[hw*g, K]`` (row ``s*g + j``): the column operand of a block."""
        return gallery.transpose(0, 1).reshape(-1, gallery.shape[2])

    def _correlation(self, probe: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        """``[p, hw, K] x [hw*g, K]`` -> ``S`` ``[p, hw(r), hw(s), g]`` as one matrix product.

        The gallery is laid out location-major, so both maxima reduce over a middle axis with
        the gallery index innermost and contiguous, which CPU reductions vectorise (a reduction
        over 49 innermost values does not, and costs more than the product itself in bfloat16).
        """
        p, hw = probe.shape[0], self.hw
        corr = probe.reshape(p * hw, -1) @ columns.t()
        return corr.view(p, hw, hw, -1)

    def _grid_vis(self,
                  probe_vis: Optional[torch.Tensor],
                  gallery_vis: Optional[torch.Tensor],
                  aligned: bool = False) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """``[p, hw]``, ``[g, hw]`` -> broadcastable to ``S``: ``[p, hw, 1, 1]``, ``[1, 1, hw, g]``.

        ``aligned``: pair ``k`` of a ``match_pairs`` block sits on row ``k`` of ``S``
        (``[n, hw, hw, 1]``), so the gallery visibility becomes ``[n, 1, hw, 1]``. Both None stay
        None; a single missing side is all visible.
        """
        if probe_vis is None and gallery_vis is None:
            return None, None
        present = gallery_vis if probe_vis is None else probe_vis
        probe_vis = present.new_ones(1, self.hw) if probe_vis is None else probe_vis
        gallery_vis = present.new_ones(1, self.hw) if gallery_vis is None else gallery_vis
        if aligned:
            return probe_vis.view(-1, self.hw, 1, 1), gallery_vis.view(-1, 1, self.hw, 1)
        return probe_vis.view(-1, self.hw, 1, 1), gallery_vis.t().reshape(1, 1, self.hw, -1)

    def _block_scores(self,
                      corr: torch.Tensor,
                      probe_vis: Optional[torch.Tensor],
                      gallery_vis: Optional[torch.Tensor],
                      symmetric: bool = False) -> torch.Tensor:
        """Scores ``[p, g]`` of one block of correlations ``[p, hw(r), hw(s), g]``.

        ``probe_vis``/``gallery_vis`` are None together or both broadcastable to ``corr``
        (see :meth:`_grid_vis`). ``symmetric``: ``corr`` is a batch against itself with equal
        visibilities, so the gallery direction of pair ``(i, j)`` is the probe direction of
        ``(j, i)``.
        """
        return self._aggregate(*self._maxima(corr, probe_vis, gallery_vis, symmetric))

    def _maxima(self, corr: torch.Tensor, pv: Optional[torch.Tensor], gv: Optional[torch.Tensor],
                symmetric: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Both directions' maxima and their visibility weights.

        Returns:
            tuple: float32 ``values`` ``[p, g, 2, hw]`` (direction 0: per probe location,
            direction 1: per gallery location) and ``weights`` of the same shape (None when no
            visibility weighting applies). Values of weight 0 are set to 0.
        """
        if pv is None:
            return self._plain_maxima(corr, symmetric), None
        if self.weighting == 'multiply':
            return self._plain_maxima(corr * pv.to(corr.dtype) * gv.to(corr.dtype),
                                      symmetric), None
        # Hidden locations already score <= _HIDDEN (see _masked_descriptors): a maximum lands
        # on one only when no visible candidate exists, and then its weight is 0.
        # first_maxima: torch.max's maxima and first indices, without its slow indexed CPU
        # reduction over a middle axis
        maxima = first_maxima(corr, (2, ) if symmetric else (2, 1))
        values, index = maxima[0]  # [p, r, g]: best gallery location s*
        matched = gv.expand(corr.shape).gather(2, index.unsqueeze(2)).squeeze(2)
        weights = (pv.squeeze(3) * matched).transpose(1, 2)
        values = values.transpose(1, 2)
        if symmetric:
            values = torch.stack((values, values.transpose(0, 1)), dim=2)
            weights = torch.stack((weights, weights.transpose(0, 1)), dim=2)
        else:
            values_g, index_g = maxima[1]  # [p, s, g]: best probe location r*
            matched_g = pv.expand(corr.shape).gather(1, index_g.unsqueeze(1)).squeeze(1)
            weights_g = (gv.squeeze(1) * matched_g).transpose(1, 2)
            values = torch.stack((values, values_g.transpose(1, 2)), dim=2)
            weights = torch.stack((weights, weights_g), dim=2)
        values = torch.where(weights > 0, values.float(), 0.0)
        return values, weights

    @staticmethod
    def _plain_maxima(corr: torch.Tensor, symmetric: bool) -> torch.Tensor:
        probe_dir = corr.amax(dim=2).transpose(1, 2)
        gallery_dir = probe_dir.transpose(0, 1) if symmetric else corr.amax(dim=1).transpose(1, 2)
        return torch.stack((probe_dir, gallery_dir), dim=2).float()

    def _aggregate(self, values: torch.Tensor, weights: Optional[torch.Tensor]) -> torch.Tensor:
        """``[p, g, 2, hw]`` maxima -> ``[p, g]`` scores (bn, weighted fc, sum, logit_bn)."""
        x = self._normalise_maxima(values, weights)
        if weights is not None:
            mean_w = weights.mean(dim=3, keepdim=True)
            seen = mean_w > 0
            x = x * torch.where(seen, weights / torch.where(seen, mean_w, 1.0), 0.0)
        logits = self.fc(x).sum(dim=(2, 3))
        return self.logit_bn(logits.view(-1, 1)).view(values.shape[:2])

    def _normalise_maxima(self, values: torch.Tensor,
                          weights: Optional[torch.Tensor]) -> torch.Tensor:
        """Apply ``bn``: running statistics in eval mode, weighted batch statistics in train."""
        bn = self.bn
        if not self.training:
            return bn(values.view(-1, 1, self.hw)).view_as(values)
        w = torch.ones_like(values) if weights is None else weights
        v1 = w.sum()
        denom = torch.where(v1 > 0, v1, 1.0)
        mean = (w * values).sum() / denom
        centred = values - mean
        var = (w * centred * centred).sum() / denom
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            rate = bn.momentum if bn.momentum is not None else 1.0 / float(
                bn.num_batches_tracked)
            # Unbiased running variance with reliability weights, in float64 because V1^2 and
            # V1^2 - V2 differ only in the 7th digit for millions of unit weights.
            v1d, v2d = v1.double(), (w * w).sum().double()
            spread = v1d * v1d - v2d
            usable = spread > 0
            unbiased = (var.double() * v1d * v1d / torch.where(usable, spread, 1.0)).float()
            bn.running_mean.copy_(
                torch.where(usable, (1 - rate) * bn.running_mean + rate * mean, bn.running_mean))
            bn.running_var.copy_(
                torch.where(usable, (1 - rate) * bn.running_var + rate * unbiased,
                            bn.running_var))
        return centred * torch.rsqrt(var + bn.eps) * bn.weight + bn.bias
