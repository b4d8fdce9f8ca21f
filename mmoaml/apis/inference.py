"""Inference on your own photos: build a model from a config and checkpoint, embed, verify, search.

Usage (docs/getting_started.md)::

    from mmoaml.apis import FaceVerifier
    verifier = FaceVerifier('oaml_synthface', 'epoch_7.pth')
    result = verifier.verify(['a.jpg'], ['b.jpg'])[0]

Inputs are aligned crops of the model's input size (112x112 for every shipped config) or photos
with five landmarks each, given as file paths, numpy arrays (``H x W x 3``, BGR unless
``rgb=True``) or torch tensors (``[3, H, W]`` or ``[N, 3, H, W]``, BGR unless ``rgb=True``),
uint8 or float in ``[0, 255]``. They are read, aligned and run ``batch_size`` at a time, so a
long list of files takes bounded memory.
"""
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config

from mmoaml.fileio import (checkpoint_state_dict, load_checkpoint_file, load_model_state, open_npz,
                           read_image)
from mmoaml.structures import EMBEDDING, FEATURE_MAP, VISIBILITY, align_face
from mmoaml.utils import register_all_modules
from mmoaml.visualization import overlay_visibility

__all__ = ['init_model', 'find_config', 'FaceVerifier', 'Gallery', 'SCORE_TYPES',
           'GALLERY_FORMAT', 'fixed_score_stats']

#: Pair score types of :meth:`FaceVerifier.verify`, in the order an automatic decision prefers.
SCORE_TYPES = ('combined', 'qaconv', 'adaface')
#: Format tag written into gallery files.
GALLERY_FORMAT = 'mmoaml-gallery-v1'
#: Checkpoint meta keys: thresholds per score type, the FAR they were set at, and the fixed
#: standardisation of single pair scores for the combined score.
THRESHOLD_KEY, FAR_KEY, STATS_KEY = ('verification_threshold', 'verification_far',
                                     'verification_score_stats')

ImageInput = Union[str, os.PathLike, np.ndarray, torch.Tensor, Sequence[Any]]


# ---------------------------------------------------------------------------------- model


def _config_dirs() -> List[str]:
    """``<repo>/configs`` of a checkout, then ``mmoaml/.mim/configs`` of an installed wheel."""
    package = osp.dirname(osp.dirname(osp.abspath(__file__)))
    return [osp.join(osp.dirname(package), 'configs'), osp.join(package, '.mim', 'configs')]


def find_config(name: str) -> str:
    """Path of a config: an existing file, or the name of a shipped config (``'oaml_synthface'``
    or ``'oaml_synthface.py'``) in ``<repo>/configs`` or ``mmoaml/.mim/configs``."""
    if osp.isfile(name):
        return name
    base = name if name.endswith('.py') else f'{name}.py'
    tried = [osp.join(d, base) for d in _config_dirs()]
    for path in tried:
        if osp.isfile(path):
            return path
    raise FileNotFoundError(f'config {name!r} is neither a file nor a shipped config; looked '
                            f'for {tried}')


def init_model(config: Union[str, os.PathLike, Config],
               checkpoint: Optional[str] = None,
               device: Union[str, torch.device] = 'cpu',
               cfg_options: Optional[dict] = None) -> torch.nn.Module:
    """Build a recognizer from a config, load its checkpoint strictly, put it in eval mode.

    Args:
        config (str | Config): a config file, a shipped config's name (``'oaml_synthface'``:
            :func:`find_config`) or a :class:`~mmengine.config.Config`.
        checkpoint (str, optional): weights, read without running code
            (:func:`mmoaml.fileio.load_checkpoint_file`) and loaded strictly: missing,
            unexpected or mis-shaped keys are an error. Defaults to None (random weights).
        device (str | torch.device): Defaults to ``'cpu'``.
        cfg_options (dict, optional): merged into the config first (e.g.
            ``{'model.adaface_head.num_classes': 10}``).

    Returns:
        nn.Module: the model, with ``cfg`` (the config), ``checkpoint_meta`` (the checkpoint's
        ``meta`` dict, ``{}`` without) and ``model_name`` (the config's and checkpoint's names,
        for messages).
    """
    register_all_modules()
    from mmoaml.registry import MODELS
    if isinstance(config, (str, os.PathLike)):
        name = str(config)
        cfg = Config.fromfile(find_config(name))
    elif isinstance(config, Config):
        cfg, name = config, osp.basename(config.filename or '') or 'config'
    else:
        raise TypeError(f'init_model: config must be a path, a config name or a Config, got '
                        f'{type(config).__name__}')
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if 'model' not in cfg:
        raise KeyError(f'init_model: config {name} has no "model"')
    model_cfg = cfg.model.copy()
    model_cfg.pop('init_cfg', None)  # no pretrained download at inference time
    model = MODELS.build(model_cfg)
    meta: Dict[str, Any] = {}
    if checkpoint is not None:
        loaded = load_checkpoint_file(str(checkpoint), map_location='cpu')
        checkpoint_state_dict(loaded, str(checkpoint))
        load_model_state(model, loaded, str(checkpoint), strict=True)
        if isinstance(loaded, dict) and isinstance(loaded.get('meta'), dict):
            meta = dict(loaded['meta'])
        name = f'{name} + {checkpoint}'
    model.cfg = cfg
    model.checkpoint_meta = meta
    model.model_name = name
    return model.to(device).eval()


# ---------------------------------------------------------------------------------- inputs


class _Inputs:
    """Indexable view of the caller's images: items are read and aligned one chunk at a time."""

    def __init__(self, images: ImageInput, landmarks, rgb: bool, size, what: str) -> None:
        self.what, self.rgb, self.size = what, rgb, tuple(size)
        if isinstance(images, (str, os.PathLike)):
            items: Sequence[Any] = [images]
        elif isinstance(images, np.ndarray):
            items = [images] if images.ndim == 3 else images
            if images.ndim not in (3, 4):
                raise ValueError(f'{what}: a numpy array must be H x W x 3 or N x H x W x 3, '
                                 f'got shape {images.shape}')
        elif isinstance(images, torch.Tensor):
            items = [images] if images.dim() == 3 else images
            if images.dim() not in (3, 4):
                raise ValueError(f'{what}: a tensor must be [3, H, W] or [N, 3, H, W], got '
                                 f'{list(images.shape)}')
        elif isinstance(images, Sequence):
            items = images
        else:
            raise TypeError(f'{what}: images must be a path, an array, a tensor or a list of '
                            f'them, got {type(images).__name__}')
        self.items = items
        self.landmarks = self._check_landmarks(landmarks, len(items))
        if len(items) == 0:
            raise ValueError(f'{what}: no images')

    def _check_landmarks(self, landmarks, n: int):
        if landmarks is None:
            return [None] * n
        if isinstance(landmarks, (np.ndarray, torch.Tensor)) or (
                isinstance(landmarks, Sequence) and len(landmarks) and
                all(x is not None for x in landmarks)):
            arr = np.asarray(landmarks, dtype=np.float64)
            if arr.shape == (5, 2) and n == 1:
                arr = arr[None]
            if arr.ndim != 3 or arr.shape[1:] != (5, 2) or arr.shape[0] != n:
                raise ValueError(f'{self.what}: landmarks must be [N, 5, 2] (x, y) with N = {n} '
                                 f'images, got shape {arr.shape}')
            return list(arr)
        if not isinstance(landmarks, Sequence) or len(landmarks) != n:
            raise ValueError(f'{self.what}: landmarks must be [N, 5, 2] or a list of N [5, 2] '
                             f'entries (None for aligned crops) with N = {n}')
        return [None if x is None else np.asarray(x, dtype=np.float64) for x in landmarks]

    def __len__(self) -> int:
        return len(self.items)

    def name(self, i: int) -> str:
        item = self.items[i]
        if isinstance(item, (str, os.PathLike)):
            return f'{self.what}[{i}] ({item})'
        return f'{self.what}[{i}]'

    def crop(self, i: int) -> np.ndarray:
        """Item ``i`` as an aligned ``H x W x 3`` float32 BGR crop on the 0-255 scale."""
        item, name = self.items[i], self.name(i)
        if isinstance(item, (str, os.PathLike)):
            image = read_image(str(item)).astype(np.float32)
        else:
            if isinstance(item, torch.Tensor):
                if item.dim() != 3 or item.shape[0] != 3:
                    raise ValueError(f'{name}: a tensor image must be [3, H, W], got '
                                     f'{list(item.shape)}')
                item = item.detach().cpu().permute(1, 2, 0).numpy()
            elif not isinstance(item, np.ndarray):
                raise TypeError(f'{name}: expected a path, a numpy array or a tensor, got '
                                f'{type(item).__name__}')
            elif item.ndim != 3 or item.shape[2] != 3:
                raise ValueError(f'{name}: a numpy image must be H x W x 3, got shape '
                                 f'{item.shape}')
            if item.dtype != np.uint8 and not np.issubdtype(item.dtype, np.floating):
                raise TypeError(f'{name}: images must be uint8 or float in [0, 255], got '
                                f'{item.dtype}')
            image = np.ascontiguousarray(item, dtype=np.float32)
            if item.dtype != np.uint8 and (not np.isfinite(image).all() or image.min() < 0 or
                                           image.max() > 255):
                raise ValueError(f'{name}: float images must be finite and in [0, 255] '
                                 f'(not normalised), got range [{np.nanmin(image)}, '
                                 f'{np.nanmax(image)}]')
            if self.rgb:
                image = np.ascontiguousarray(image[..., ::-1])
        if min(image.shape[:2]) == 0:
            raise ValueError(f'{name}: empty image {image.shape}')
        points = self.landmarks[i]
        if points is not None:
            if points.shape != (5, 2) or not np.isfinite(points).all():
                raise ValueError(f'{name}: landmarks must be 5 finite (x, y) points, got '
                                 f'{points.tolist()}')
            try:
                return align_face(image, points, self.size)
            except ValueError as error:
                raise ValueError(f'{name}: {error}') from error
        if image.shape[:2] != self.size:
            raise ValueError(f'{name}: a {image.shape[0]}x{image.shape[1]} image needs its five '
                             f'landmarks (landmarks=...) to be aligned; only '
                             f'{self.size[0]}x{self.size[1]} aligned crops go in as they are')
        return image

    def chunks(self, batch_size: int):
        """``(start, [B, 3, H, W] float32 tensor)`` for consecutive chunks."""
        for start in range(0, len(self), batch_size):
            crops = [self.crop(i) for i in range(start, min(start + batch_size, len(self)))]
            yield start, torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()


# ---------------------------------------------------------------------------------- gallery


class Gallery:
    """Enrolled faces for :meth:`FaceVerifier.search`: embeddings, matching maps, visibility.

    Built once by :meth:`FaceVerifier.build_gallery`; :meth:`save` writes a pickle-free
    ``.npz`` that :meth:`load` reads back with :func:`mmoaml.fileio.open_npz`.

    Attributes:
        embeddings (np.ndarray): ``[G, D]`` float32 unit embeddings.
        labels (np.ndarray): ``[G]`` int64 identities.
        feature_maps (np.ndarray, optional): ``[G, C, h, w]`` float16 maps (QAConv models).
        visibility (np.ndarray, optional): ``[G, 1, h, w]`` float32 predicted visibility
            (models whose QAConv is visibility-weighted).
        names (np.ndarray, optional): ``[G]`` unicode names (e.g. file paths).
    """

    def __init__(self, embeddings, labels, feature_maps=None, visibility=None,
                 names=None) -> None:
        self.embeddings = np.asarray(embeddings, dtype=np.float32)
        self.labels = np.asarray(labels)
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] == 0:
            raise ValueError(f'Gallery: embeddings must be [G, D] with G > 0, got '
                             f'{self.embeddings.shape}')
        g = self.embeddings.shape[0]
        if self.labels.shape != (g, ) or not np.issubdtype(self.labels.dtype, np.integer):
            raise ValueError(f'Gallery: labels must be {g} integers, got {self.labels.dtype} '
                             f'{self.labels.shape}')
        self.labels = self.labels.astype(np.int64)
        self.feature_maps = None if feature_maps is None else np.asarray(feature_maps,
                                                                         dtype=np.float16)
        if self.feature_maps is not None and (self.feature_maps.ndim != 4 or
                                              self.feature_maps.shape[0] != g):
            raise ValueError(f'Gallery: feature_maps must be [{g}, C, h, w], got '
                             f'{self.feature_maps.shape}')
        self.visibility = None if visibility is None else np.asarray(visibility,
                                                                     dtype=np.float32)
        if self.visibility is not None and (self.feature_maps is None or
                                            self.visibility.shape != (g, 1) +
                                            self.feature_maps.shape[2:]):
            raise ValueError(f'Gallery: visibility must be [{g}, 1, h, w] on the maps\' grid, '
                             f'got {self.visibility.shape}')
        self.names = None if names is None else np.asarray([str(n) for n in names])
        if self.names is not None and self.names.shape != (g, ):
            raise ValueError(f'Gallery: names must be {g} strings, got {self.names.shape}')

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def save(self, path: str) -> str:
        """Write the gallery to ``path`` (``.npz``, no pickled objects); returns the path."""
        arrays = dict(format=np.array(GALLERY_FORMAT), embeddings=self.embeddings,
                      labels=self.labels)
        for key in ('feature_maps', 'visibility', 'names'):
            if getattr(self, key) is not None:
                arrays[key] = getattr(self, key)
        directory = osp.dirname(osp.abspath(path))
        os.makedirs(directory, exist_ok=True)
        with open(path, 'wb') as f:
            np.savez(f, **arrays)
        return path

    @classmethod
    def load(cls, path: str) -> 'Gallery':
        """Read a gallery written by :meth:`save` (``allow_pickle=False``, headers checked)."""
        with open_npz(path, 'gallery') as data:
            keys = set(data.files)
            if 'format' not in keys or str(data['format']) != GALLERY_FORMAT:
                raise ValueError(f'{path}: not an mmoaml gallery file (format '
                                 f'{GALLERY_FORMAT!r} expected, keys {sorted(keys)})')
            missing = {'embeddings', 'labels'} - keys
            if missing:
                raise ValueError(f'{path}: gallery file lacks {sorted(missing)}')
            try:
                return cls(**{k: data[k] for k in ('embeddings', 'labels', 'feature_maps',
                                                    'visibility', 'names') if k in keys})
            except ValueError as error:
                raise ValueError(f'{path}: {error}') from error


# ---------------------------------------------------------------------------------- verifier


class FaceVerifier:
    """Embeddings, visibility maps, pair verification and gallery search with one model.

    **Scores of a pair** (:meth:`verify`): ``adaface`` is the cosine of the flip-fused
    embeddings; ``qaconv`` is ``model.qaconv_head.match_pairs`` of the two matching maps,
    weighted by the predicted visibility when the model's QAConv is visibility-weighted (as
    the ``qaconv`` score type of ``FaceVerificationMetric``), else unweighted; ``combined``
    is ``w_a * (adaface - m_a) / s_a + w_q * (qaconv - m_q) / s_q``. The test metric
    standardises over a whole set of pairs; a single pair has no set, so the means and standard
    deviations are fixed values read from the checkpoint meta ``verification_score_stats``
    (``{'adaface': {'mean': m, 'std': s}, 'qaconv': {...}}``) or given as ``score_stats``.
    Without them the combined score is ``None`` and cannot decide.

    **Decision**: ``same = score > threshold`` on one score type. Thresholds come from the call
    (``threshold=``), else the constructor, else the checkpoint meta
    ``verification_threshold`` (a dict score type -> threshold, written by ``tools/test.py``
    with ``verification_far``). A single number applies to the decision score type. The type is
    ``score_type`` if given, else the first of ``combined``, ``qaconv``, ``adaface`` that has a
    score and a threshold. With no threshold, ``same`` and ``threshold`` are ``None``.

    Args:
        model_or_config: a model from :func:`init_model`, or a config for it (path, shipped
            name or ``Config``).
        checkpoint (str, optional): with a config, the weights. Defaults to None.
        device (str): with a config, the device. Defaults to ``'cpu'``.
        threshold (float | dict, optional): default thresholds (see above).
        batch_size (int): images per forward pass (bounds memory). Defaults to 64.
        score_type (str, optional): the default decision score type.
        score_stats (dict, optional): fixed standardisation for ``combined`` (see above).
        combine_weights (tuple[float, float]): ``(w_a, w_q)``. Defaults to ``(0.5, 0.5)``.
    """

    def __init__(self,
                 model_or_config,
                 checkpoint: Optional[str] = None,
                 device: Union[str, torch.device] = 'cpu',
                 threshold: Union[None, float, Dict[str, float]] = None,
                 batch_size: int = 64,
                 score_type: Optional[str] = None,
                 score_stats: Optional[Dict[str, Dict[str, float]]] = None,
                 combine_weights: Sequence[float] = (0.5, 0.5)) -> None:
        if isinstance(model_or_config, torch.nn.Module):
            if checkpoint is not None:
                raise ValueError('FaceVerifier: pass the checkpoint to init_model, not with a '
                                 'built model')
            self.model = model_or_config.eval()
        else:
            self.model = init_model(model_or_config, checkpoint, device)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f'FaceVerifier: batch_size must be a positive int, got {batch_size!r}')
        self.batch_size = batch_size
        self.meta = dict(getattr(self.model, 'checkpoint_meta', {}) or {})
        self.name = getattr(self.model, 'model_name', type(self.model).__name__)
        self.threshold = threshold
        self.score_type = self._check_type(score_type)
        self.score_stats = score_stats if score_stats is not None else self.meta.get(STATS_KEY)
        self.combine_weights = tuple(float(w) for w in combine_weights)
        backbone = getattr(self.model, 'backbone', None)
        self.crop_size = tuple(getattr(backbone, 'input_size', (112, 112)))
        self.qaconv_head = getattr(self.model, 'qaconv_head', None)
        self.weighted = bool(getattr(self.model, 'visibility_weighting', False))

    @property
    def far(self) -> Optional[float]:
        """The false accept rate the stored thresholds were set at (meta ``verification_far``)."""
        return self.meta.get(FAR_KEY)

    @staticmethod
    def _check_type(score_type: Optional[str]) -> Optional[str]:
        if score_type is not None and score_type not in SCORE_TYPES:
            raise ValueError(f'score_type must be one of {SCORE_TYPES}, got {score_type!r}')
        return score_type

    # ------------------------------------------------------------------ features

    def _inputs(self, images, landmarks, rgb, what) -> _Inputs:
        return _Inputs(images, landmarks, rgb, self.crop_size, what)

    @torch.no_grad()
    def _features(self, inputs: _Inputs):
        """Per chunk: ``(start, crops, embeddings [B, D], maps or None, visibility or None)``."""
        for start, batch in inputs.chunks(self.batch_size):
            samples = self.model.test_step(dict(inputs=batch))
            emb = torch.stack([s.get(EMBEDDING) for s in samples]).float()
            maps = vis = None
            if self.qaconv_head is not None:
                maps = torch.stack([s.get(FEATURE_MAP) for s in samples])
            if self.weighted:
                vis = torch.stack([s.get(VISIBILITY) for s in samples]).float()
            yield start, batch, emb, maps, vis

    def _to_matcher(self, *tensors):
        """Move maps and visibility (on the CPU after ``predict``) to the QAConv head."""
        param = next(self.qaconv_head.parameters(), None)
        device = param.device if param is not None else torch.device('cpu')
        return [None if t is None else t.float().to(device) for t in tensors]

    def embed(self, images: ImageInput, landmarks=None, rgb: bool = False) -> np.ndarray:
        """Unit embeddings ``[N, D]`` float32, flip-fused as ``OAML.predict`` computes them."""
        inputs = self._inputs(images, landmarks, rgb, 'images')
        return np.concatenate([e.numpy() for _, _, e, _, _ in self._features(inputs)])

    def _need_visibility(self, what: str) -> None:
        if getattr(self.model, 'occlusion_head', None) is None or not self.weighted:
            reason = ('has no occlusion head' if getattr(self.model, 'occlusion_head', None)
                      is None else 'does not weight QAConv by visibility (an untrained '
                      'occlusion head)')
            raise ValueError(f'{what}: model {self.name} {reason}, so it predicts no '
                             'visibility map')

    def visibility(self, images: ImageInput, size=None, landmarks=None,
                   rgb: bool = False) -> np.ndarray:
        """Predicted visibility ``[N, h, w]`` float32 (1 = visible face) of the aligned crops,
        on the model's grid (e.g. 7x7) or bilinearly upsampled to ``size = (H, W)``."""
        self._need_visibility('FaceVerifier.visibility')
        inputs = self._inputs(images, landmarks, rgb, 'images')
        maps = []
        for _, _, _, _, vis in self._features(inputs):
            if size is not None:
                vis = F.interpolate(vis, size=tuple(size), mode='bilinear', align_corners=False)
            maps.append(vis[:, 0].clamp(0, 1).numpy())
        return np.concatenate(maps)

    def aligned(self, images: ImageInput, landmarks=None, rgb: bool = False) -> List[np.ndarray]:
        """The aligned crops the model sees: a list of ``H x W x 3`` uint8 BGR images."""
        inputs = self._inputs(images, landmarks, rgb, 'images')
        return [np.clip(np.rint(inputs.crop(i)), 0, 255).astype(np.uint8)
                for i in range(len(inputs))]

    def overlay(self, images: ImageInput, landmarks=None, rgb: bool = False,
                alpha: float = 0.45) -> List[np.ndarray]:
        """Aligned crops tinted by their predicted visibility (green visible, red hidden)."""
        self._need_visibility('FaceVerifier.overlay')
        crops = self.aligned(images, landmarks, rgb)
        vis = self.visibility(images, landmarks=landmarks, rgb=rgb)
        return [overlay_visibility(c, v, alpha) for c, v in zip(crops, vis)]

    # ------------------------------------------------------------------ verification

    def _thresholds(self, threshold, score_type: Optional[str]) -> Dict[str, float]:
        stored = self.meta.get(THRESHOLD_KEY)
        chosen: Dict[str, float] = dict(stored) if isinstance(stored, dict) else {}
        for given in (self.threshold, threshold):
            if isinstance(given, dict):
                chosen.update(given)
            elif given is not None:
                target = score_type or self.score_type
                if target is None:
                    raise ValueError('a single threshold number needs score_type= (which score '
                                     f'it applies to: one of {SCORE_TYPES}); or pass a dict')
                chosen[target] = float(given)
        return {k: float(v) for k, v in chosen.items()}

    def verify(self, a: ImageInput, b: ImageInput, landmarks_a=None, landmarks_b=None,
               rgb: bool = False, threshold: Union[None, float, Dict[str, float]] = None,
               score_type: Optional[str] = None) -> List[Dict[str, Any]]:
        """Compare ``a[k]`` with ``b[k]`` for every ``k``.

        Returns:
            list[dict]: per pair ``adaface``, ``qaconv`` (None without a QAConv head),
            ``combined`` (None without fixed statistics), ``score_type`` (the deciding type),
            ``threshold`` and ``same`` (None without a threshold).
        """
        score_type = self._check_type(score_type) or self.score_type
        inputs_a = self._inputs(a, landmarks_a, rgb, 'a')
        inputs_b = self._inputs(b, landmarks_b, rgb, 'b')
        if len(inputs_a) != len(inputs_b):
            raise ValueError(f'verify: a has {len(inputs_a)} images and b {len(inputs_b)}; '
                             'pairs need equal numbers')
        thresholds = self._thresholds(threshold, score_type)
        ada, qa = [], []
        for (_, _, ea, ma, va), (_, _, eb, mb, vb) in zip(self._features(inputs_a),
                                                          self._features(inputs_b)):
            ada.append((ea * eb).sum(1).double().numpy())
            if ma is not None:
                with torch.no_grad():
                    qa.append(self.qaconv_head.match_pairs(
                        *self._to_matcher(ma, mb, va, vb)).double().cpu().numpy())
        adaface = np.concatenate(ada)
        qaconv = np.concatenate(qa) if qa else None
        combined = self._combined(adaface, qaconv)
        results = []
        for k in range(adaface.size):
            scores = dict(adaface=float(adaface[k]),
                          qaconv=None if qaconv is None else float(qaconv[k]),
                          combined=None if combined is None else float(combined[k]))
            results.append(self._decide(scores, thresholds, score_type))
        return results

    def _combined(self, adaface: np.ndarray, qaconv: Optional[np.ndarray]):
        stats = self.score_stats
        if qaconv is None or not isinstance(stats, dict):
            return None
        try:
            z = [(s - float(stats[k]['mean'])) / float(stats[k]['std'])
                 for k, s in (('adaface', adaface), ('qaconv', qaconv))]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f'score_stats of model {self.name} must be {{"adaface": {{"mean", '
                             f'"std"}}, "qaconv": {{...}}}}, got {stats!r}') from error
        return self.combine_weights[0] * z[0] + self.combine_weights[1] * z[1]

    def _decide(self, scores: Dict[str, Optional[float]], thresholds: Dict[str, float],
                score_type: Optional[str]) -> Dict[str, Any]:
        if score_type is not None:
            if scores[score_type] is None:
                raise ValueError(f'verify: model {self.name} gives no {score_type} score '
                                 + ('(no fixed score statistics: pass score_stats= or store '
                                    f'meta["{STATS_KEY}"])' if score_type == 'combined' else
                                    '(no QAConv head)'))
            chosen = score_type
        else:
            usable = [t for t in SCORE_TYPES if scores[t] is not None and t in thresholds]
            chosen = usable[0] if usable else next(t for t in SCORE_TYPES
                                                   if scores[t] is not None)
        limit = thresholds.get(chosen)
        same = None if limit is None else bool(scores[chosen] > limit)
        return dict(scores, score_type=chosen, threshold=limit, same=same)

    # ------------------------------------------------------------------ search

    def build_gallery(self, images: ImageInput, labels, landmarks=None, rgb: bool = False,
                      names=None) -> Gallery:
        """Embed and describe the gallery images once (see :class:`Gallery`)."""
        inputs = self._inputs(images, landmarks, rgb, 'gallery')
        labels = np.asarray(labels)
        if labels.shape != (len(inputs), ):
            raise ValueError(f'build_gallery: {len(inputs)} images need {len(inputs)} labels, '
                             f'got shape {labels.shape}')
        if names is None and all(isinstance(x, (str, os.PathLike)) for x in inputs.items):
            names = [str(x) for x in inputs.items]
        emb, maps, vis = [], [], []
        for _, _, e, m, v in self._features(inputs):
            emb.append(e.numpy())
            if m is not None:
                maps.append(m.numpy())
            if v is not None:
                vis.append(v.numpy())
        return Gallery(np.concatenate(emb), labels, np.concatenate(maps) if maps else None,
                       np.concatenate(vis) if vis else None, names)

    def search(self, probes: ImageInput, gallery: Union[Gallery, str], top_k: int = 5,
               shortlist_k: int = 20, landmarks=None,
               rgb: bool = False) -> List[List[Dict[str, Any]]]:
        """Find each probe's best gallery identities.

        As ``FaceIdentificationMetric``: each probe's ``shortlist_k`` gallery images with the
        highest AdaFace cosine are re-scored by QAConv (visibility-weighted when the model's
        QAConv is) and ranked by that score; an identity scores as its best image. A model
        without a QAConv head ranks by the cosine.

        Returns:
            list[list[dict]]: per probe up to ``top_k`` identities, best first, each with
            ``label``, ``index`` (its best gallery image), ``name`` (or None), ``score`` (the
            ranking score), ``adaface`` and ``qaconv`` (None without QAConv).
        """
        if isinstance(gallery, (str, os.PathLike)):
            gallery = Gallery.load(str(gallery))
        if not isinstance(top_k, int) or not isinstance(shortlist_k, int) or not (
                1 <= top_k <= shortlist_k):
            raise ValueError(f'search: need integers 1 <= top_k <= shortlist_k, got top_k={top_k!r}'
                             f' and shortlist_k={shortlist_k!r}')
        use_qaconv = self.qaconv_head is not None
        if use_qaconv and gallery.feature_maps is None:
            raise ValueError(f'search: the gallery has no feature maps but model {self.name} '
                             'ranks by QAConv; rebuild the gallery with this model')
        if use_qaconv and self.weighted != (gallery.visibility is not None):
            raise ValueError(f'search: model {self.name} ' +
                             ('weights QAConv by visibility but the gallery has none'
                              if self.weighted else 'does not weight QAConv by visibility but '
                              'the gallery has visibility maps') + '; rebuild the gallery with '
                             'this model')
        inputs = self._inputs(probes, landmarks, rgb, 'probes')
        g_emb = torch.from_numpy(gallery.embeddings)
        if g_emb.shape[1] != self.embed_dim():
            raise ValueError(f'search: gallery embeddings have {g_emb.shape[1]} dimensions, '
                             f'model {self.name} gives {self._dim}; rebuild the gallery')
        k = min(shortlist_k, len(gallery))
        results = []
        for _, _, emb, maps, vis in self._features(inputs):
            cosines, candidates = (emb @ g_emb.t()).topk(k, dim=1)
            scores = cosines.double()
            qaconv = None
            if use_qaconv:
                idx = candidates.reshape(-1).numpy()
                with torch.no_grad():
                    qaconv = self.qaconv_head.match_pairs(*self._to_matcher(
                        maps.repeat_interleave(k, 0),
                        torch.from_numpy(gallery.feature_maps[idx]),
                        None if vis is None else vis.repeat_interleave(k, 0),
                        None if vis is None else torch.from_numpy(gallery.visibility[idx]),
                    )).double().cpu().reshape(-1, k)
                scores = qaconv
            for row in range(emb.shape[0]):
                results.append(self._rank(gallery, candidates[row].numpy(),
                                          scores[row].numpy(), cosines[row].double().numpy(),
                                          None if qaconv is None else qaconv[row].numpy(),
                                          top_k))
        return results

    def embed_dim(self) -> int:
        """Dimension of the model's embeddings."""
        if not hasattr(self, '_dim'):
            neck = getattr(self.model, 'neck', None)
            dim = getattr(neck, 'embed_dim', None)
            if dim is None:
                probe = np.zeros(self.crop_size + (3, ), np.float32)
                dim = self.embed(probe).shape[1]
            self._dim = int(dim)
        return self._dim

    @staticmethod
    def _rank(gallery: Gallery, candidates, scores, cosines, qaconv, top_k):
        order = np.argsort(-scores, kind='stable')
        found, seen = [], set()
        for j in order:
            label = int(gallery.labels[candidates[j]])
            if label in seen:
                continue
            seen.add(label)
            index = int(candidates[j])
            found.append(dict(
                label=label, index=index,
                name=None if gallery.names is None else str(gallery.names[index]),
                score=float(scores[j]), adaface=float(cosines[j]),
                qaconv=None if qaconv is None else float(qaconv[j])))
            if len(found) == top_k:
                break
        return found


def fixed_score_stats(adaface, qaconv) -> Dict[str, Dict[str, float]]:
    """Means and population standard deviations of a set of pair scores, as ``score_stats``
    (the z-score ``mmoaml.evaluation.functional.standardise`` applies to a whole set, frozen)."""
    stats = {}
    for key, values in (('adaface', adaface), ('qaconv', qaconv)):
        v = np.asarray(values, dtype=np.float64)
        if v.size < 2 or not np.isfinite(v).all():
            raise ValueError(f'fixed_score_stats: {key} needs >= 2 finite scores')
        stats[key] = dict(mean=float(v.mean()), std=float(v.std()) or 1.0)
    return stats
