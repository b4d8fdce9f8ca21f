"""QAConv scores in NumPy from exported feature maps: ``QAConvHead.match`` / ``match_pairs``.

A deployment that runs the ONNX graph of ``tools/deployment/pytorch2onnx.py`` gets, per face,
a ``feature_map`` ``[C, h, w]`` (and a ``visibility`` ``[1, h, w]`` when the model has an
occlusion head). :func:`qaconv_scores` (all probes against all galleries) and
:func:`qaconv_pair_scores` (aligned pairs) score such maps without PyTorch, computing what
``QAConvHead.match`` and ``QAConvHead.match_pairs`` compute in **eval mode** (running BN
statistics; docs/qaconv.md):

1. every location's ``C``-vector is L2-normalised (``x / max(||x||, 1e-12)``; idempotent, so
   raw or already normalised maps may be passed);
2. correlations ``S[r, s] = <p_r, g_s>`` between probe location ``r`` and gallery location
   ``s``;
3. both maxima: ``u_r = max_s S[r, s]`` and ``v_s = max_r S[r, s]``;
4. visibility (``weighting='mask'``, the default): a location of visibility 0 is never a match
   candidate (its features, NaN included, are never read); each maximum carries the weight
   ``c = own visibility x visibility of the location it matched`` (``c_r = a_r b_{s*(r)}``,
   ``d_s = b_s a_{r*(s)}``); a maximum of weight 0 is set to 0. ``weighting='multiply'``
   (ablation) multiplies ``S`` by ``a_r b_s`` before the maxima and uses no weights;
5. ``bn`` with its running mean/variance on every maximum; with weights, the fc input of each
   direction is ``bn(u)_r * c_r / mean(c)`` (0 when ``mean(c) = 0``);
6. the shared ``fc`` (``Linear(hw, 1)``) on each direction, the two outputs summed (its bias
   counts twice), and ``logit_bn`` with its running statistics gives the score.

No visibility on either side means no weighting; one side missing means all visible there.
The computation runs in float64 (the head: float32), so scores agree with the head's float32
scores to about 1e-6; with soft visibility a score can differ more where two candidates of
different visibility tie for a maximum within float32 rounding (as the head's own scores can
between two float32 orderings).

``params`` are the head's parameters and buffers as NumPy arrays: :func:`qaconv_params` takes
them from a ``QAConvHead`` (or anything with the same ``state_dict`` keys and attributes),
:func:`save_qaconv_params` / :func:`load_qaconv_params` write and read them as ``.npz`` (the
export tool's ``--qaconv-params``). Keys: ``bn.weight``, ``bn.bias``, ``bn.running_mean``,
``bn.running_var``, ``bn.eps``, ``fc.weight`` (``[1, hw]``), ``fc.bias``, ``logit_bn.*`` as for
``bn``, ``height``, ``width``, ``num_features``, ``weighting`` (a string array).

Examples:
    >>> import numpy as np
    >>> from mmoaml.deployment import qaconv_pair_scores, qaconv_scores
    >>> hw = 4
    >>> params = {'bn.weight': np.ones(1), 'bn.bias': np.zeros(1), 'bn.eps': np.array(1e-5),
    ...           'bn.running_mean': np.zeros(1), 'bn.running_var': np.ones(1),
    ...           'fc.weight': np.full((1, hw), 1 / hw), 'fc.bias': np.zeros(1),
    ...           'logit_bn.weight': np.ones(1), 'logit_bn.bias': np.zeros(1),
    ...           'logit_bn.running_mean': np.zeros(1), 'logit_bn.running_var': np.ones(1),
    ...           'logit_bn.eps': np.array(1e-5), 'height': np.array(2), 'width': np.array(2),
    ...           'num_features': np.array(8), 'weighting': np.array('mask')}
    >>> rng = np.random.default_rng(0)
    >>> probe, gallery = rng.normal(size=(3, 8, 2, 2)), rng.normal(size=(5, 8, 2, 2))
    >>> vis = np.ones((5, 1, 2, 2))
    >>> vis[:, :, 1] = 0  # lower half hidden in every gallery map
    >>> qaconv_scores(probe, gallery, gallery_vis=vis, params=params).shape
    (3, 5)
    >>> qaconv_pair_scores(probe, gallery[:3], params=params).shape
    (3,)
"""
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from mmoaml.fileio import open_npz

__all__ = [
    'QACONV_PARAM_KEYS', 'qaconv_params', 'save_qaconv_params', 'load_qaconv_params',
    'qaconv_scores', 'qaconv_pair_scores'
]

_BN_KEYS = ('weight', 'bias', 'running_mean', 'running_var', 'eps')
#: Keys of a ``params`` mapping.
QACONV_PARAM_KEYS = tuple(
    [f'bn.{k}' for k in _BN_KEYS] + ['fc.weight', 'fc.bias'] +
    [f'logit_bn.{k}' for k in _BN_KEYS] + ['height', 'width', 'num_features', 'weighting'])
_WEIGHTINGS = ('mask', 'multiply')
# Bytes of correlations per block of qaconv_scores (float64).
_BLOCK_BYTES = 64 * 2**20


def qaconv_params(head: Any) -> Dict[str, np.ndarray]:
    """The parameters :func:`qaconv_scores` needs, as NumPy arrays, from a ``QAConvHead``.

    Args:
        head: A ``QAConvHead`` (``state_dict()`` with ``bn.*``, ``fc.*``, ``logit_bn.*``;
            attributes ``bn.eps``, ``logit_bn.eps``, ``height``, ``width``, ``num_features``,
            ``weighting``).

    Returns:
        dict[str, np.ndarray]: the keys of :data:`QACONV_PARAM_KEYS`.
    """
    state = head.state_dict()
    params = {}
    for key in QACONV_PARAM_KEYS:
        if key.endswith('.eps'):
            params[key] = np.array(float(getattr(head, key.split('.')[0]).eps))
        elif key in ('height', 'width', 'num_features'):
            params[key] = np.array(int(getattr(head, key)))
        elif key == 'weighting':
            params[key] = np.array(str(head.weighting))
        else:
            params[key] = state[key].detach().cpu().double().numpy()
    return _checked(params, 'qaconv_params')


def save_qaconv_params(path: str, params: Mapping[str, np.ndarray]) -> None:
    """Write ``params`` (see :func:`qaconv_params`) to an ``.npz`` file (no pickled objects)."""
    params = _checked(params, path)
    with open(path, 'wb') as f:  # exactly ``path`` (np.savez would append '.npz' to a name)
        np.savez(f, **{key: np.asarray(params[key]) for key in QACONV_PARAM_KEYS})


def load_qaconv_params(path: str) -> Dict[str, np.ndarray]:
    """Read the ``.npz`` of :func:`save_qaconv_params` (``allow_pickle=False``), checked."""
    with open_npz(path, 'QAConv parameters') as data:
        params = {key: data[key] for key in data.files if key in QACONV_PARAM_KEYS}
    return _checked(params, path)


def _checked(params: Mapping[str, Any], source: str) -> Dict[str, np.ndarray]:
    missing = [key for key in QACONV_PARAM_KEYS if key not in params]
    if missing:
        raise KeyError(f'{source}: QAConv parameters lack {missing}')
    params = {key: np.asarray(params[key]) for key in QACONV_PARAM_KEYS}
    hw = int(params['height']) * int(params['width'])
    if params['fc.weight'].shape != (1, hw):
        raise ValueError(f'{source}: fc.weight must be [1, {hw}] (height * width), got '
                         f'{list(params["fc.weight"].shape)}')
    if str(params['weighting']) not in _WEIGHTINGS:
        raise ValueError(f'{source}: weighting must be one of {_WEIGHTINGS}, got '
                         f'{str(params["weighting"])!r}')
    return params


def qaconv_scores(probe: np.ndarray,
                  gallery: np.ndarray,
                  probe_vis: Optional[np.ndarray] = None,
                  gallery_vis: Optional[np.ndarray] = None,
                  params: Optional[Mapping[str, np.ndarray]] = None) -> np.ndarray:
    """Every probe against every gallery map: ``QAConvHead.match`` in eval mode.

    Args:
        probe (np.ndarray): ``[P, C, h, w]`` feature maps (raw or L2-normalised per location,
            any float dtype; e.g. the ONNX graph's ``feature_map``).
        gallery (np.ndarray): ``[G, C, h, w]``.
        probe_vis (np.ndarray, optional): ``[P, 1, h, w]`` or ``[P, h*w]`` in ``[0, 1]``,
            indexed by probe location; None = all visible.
        gallery_vis (np.ndarray, optional): ``[G, 1, h, w]`` or ``[G, h*w]``; None = all
            visible.
        params (Mapping[str, np.ndarray]): The head's parameters (module docstring).

    Returns:
        np.ndarray: float32 ``[P, G]`` scores, higher = more similar.
    """
    params = _checked(params if params is not None else {}, 'qaconv_scores: params')
    p, pv = _prepare(probe, probe_vis, params, 'probe')
    g, gv = _prepare(gallery, gallery_vis, params, 'gallery')
    hw = p.shape[1]
    pv, gv = _both_sides(pv, gv, len(p), len(g), hw)
    scores = np.empty((len(p), len(g)), dtype=np.float32)
    step = max(1, _BLOCK_BYTES // max(1, len(g) * hw * hw * 8))
    g_t = np.swapaxes(g, 1, 2)[None]  # [1, G, C, hw(s)]
    for i in range(0, len(p), step):
        corr = p[i:i + step, None] @ g_t  # [p, G, hw(r), hw(s)]
        pv_i = None if pv is None else pv[i:i + step, None]  # [p, 1, hw]
        gv_i = None if gv is None else gv[None]  # [1, G, hw]
        scores[i:i + step] = _scores(corr, pv_i, gv_i, params)
    return scores


def qaconv_pair_scores(probe: np.ndarray,
                       gallery: np.ndarray,
                       probe_vis: Optional[np.ndarray] = None,
                       gallery_vis: Optional[np.ndarray] = None,
                       params: Optional[Mapping[str, np.ndarray]] = None) -> np.ndarray:
    """Aligned pairs ``(probe[k], gallery[k])``: ``QAConvHead.match_pairs`` in eval mode.

    Args:
        probe (np.ndarray): ``[N, C, h, w]``.
        gallery (np.ndarray): ``[N, C, h, w]``.
        probe_vis (np.ndarray, optional): ``[N, 1, h, w]`` or ``[N, h*w]``; None = all visible.
        gallery_vis (np.ndarray, optional): ``[N, 1, h, w]`` or ``[N, h*w]``.
        params (Mapping[str, np.ndarray]): The head's parameters (module docstring).

    Returns:
        np.ndarray: float32 ``[N]`` scores, the diagonal of :func:`qaconv_scores`.
    """
    params = _checked(params if params is not None else {}, 'qaconv_pair_scores: params')
    p, pv = _prepare(probe, probe_vis, params, 'probe')
    g, gv = _prepare(gallery, gallery_vis, params, 'gallery')
    if len(p) != len(g):
        raise ValueError(f'qaconv_pair_scores: {len(p)} probes for {len(g)} galleries (pairs '
                         'are aligned)')
    pv, gv = _both_sides(pv, gv, len(p), len(g), p.shape[1])
    scores = np.empty(len(p), dtype=np.float32)
    step = max(1, _BLOCK_BYTES // (p.shape[1]**2 * 8))
    for i in range(0, len(p), step):
        corr = p[i:i + step] @ np.swapaxes(g[i:i + step], 1, 2)  # [n, hw(r), hw(s)]
        scores[i:i + step] = _scores(corr, None if pv is None else pv[i:i + step],
                                     None if gv is None else gv[i:i + step], params)
    return scores


def _prepare(maps: np.ndarray, vis: Optional[np.ndarray], params: Mapping[str, np.ndarray],
             name: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """``[N, C, h, w]`` -> float64 unit descriptors ``[N, hw, C]`` and visibility ``[N, hw]``.

    With ``'mask'`` weighting the descriptors of hidden locations (visibility <= 0) are zeros,
    so that their values (NaN included) reach no correlation.
    """
    c, h, w = (int(params[k]) for k in ('num_features', 'height', 'width'))
    maps = np.asarray(maps)
    if maps.ndim != 4 or maps.shape[1:] != (c, h, w):
        raise ValueError(f'{name} must be [N, {c}, {h}, {w}] (num_features, height, width), '
                         f'got {list(maps.shape)}')
    n = maps.shape[0]
    x = maps.reshape(n, c, h * w).astype(np.float64)
    with np.errstate(invalid='ignore', over='ignore'):
        x = x / np.maximum(np.sqrt((x * x).sum(axis=1, keepdims=True)), 1e-12)
    x = np.ascontiguousarray(np.swapaxes(x, 1, 2))
    if vis is None:
        return x, None
    vis = np.asarray(vis)
    if vis.shape not in ((n, 1, h, w), (n, h * w)):
        raise ValueError(f'{name}_vis must be [{n}, 1, {h}, {w}] or [{n}, {h * w}], got '
                         f'{list(vis.shape)}')
    v = vis.reshape(n, h * w).astype(np.float64)
    if not bool(((v >= 0) & (v <= 1)).all()):
        raise ValueError(f'{name}_vis must lie in [0, 1] (1 = visible)')
    if str(params['weighting']) == 'mask':
        x = np.where((v <= 0)[..., None], 0.0, x)
    return x, v


def _both_sides(pv: Optional[np.ndarray], gv: Optional[np.ndarray], num_p: int, num_g: int,
                hw: int) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """Both None stay None; a single missing side is all visible."""
    if pv is None and gv is None:
        return None, None
    return (np.ones((num_p, hw)) if pv is None else pv, np.ones((num_g, hw)) if gv is None else gv)


def _scores(corr: np.ndarray, pv: Optional[np.ndarray], gv: Optional[np.ndarray],
            params: Mapping[str, np.ndarray]) -> np.ndarray:
    """Scores of correlations ``[..., hw(r), hw(s)]``; ``pv`` / ``gv`` broadcast to
    ``[..., hw(r)]`` / ``[..., hw(s)]`` (both None: no visibility)."""
    weights = None
    if pv is None:
        values = np.stack((corr.max(axis=-1), corr.max(axis=-2)), axis=-2)
    elif str(params['weighting']) == 'multiply':
        corr = corr * pv[..., :, None] * gv[..., None, :]
        values = np.stack((corr.max(axis=-1), corr.max(axis=-2)), axis=-2)
    else:
        hidden = (pv <= 0)[..., :, None] | (gv <= 0)[..., None, :]
        if hidden.any():  # a hidden location is never a candidate
            corr = np.where(hidden, -np.inf, corr)
        batch = corr.shape[:-2]
        pv_full = np.broadcast_to(pv, batch + pv.shape[-1:])
        gv_full = np.broadcast_to(gv, batch + gv.shape[-1:])
        s_star = corr.argmax(axis=-1)  # [..., r]: best gallery location of each r
        r_star = corr.argmax(axis=-2)  # [..., s]: best probe location of each s
        u = np.take_along_axis(corr, s_star[..., None], axis=-1)[..., 0]
        v = np.take_along_axis(corr, r_star[..., None, :], axis=-2)[..., 0, :]
        c = pv_full * np.take_along_axis(gv_full, s_star, axis=-1)
        d = gv_full * np.take_along_axis(pv_full, r_star, axis=-1)
        weights = np.stack((c, d), axis=-2)
        values = np.where(weights > 0, np.stack((u, v), axis=-2), 0.0)
    x = _batch_norm(values, params, 'bn')
    if weights is not None:
        mean_w = weights.mean(axis=-1, keepdims=True)
        seen = mean_w > 0
        x = x * np.where(seen, weights / np.where(seen, mean_w, 1.0), 0.0)
    fc_w = params['fc.weight'].astype(np.float64)[0]
    fc_b = float(params['fc.bias'].reshape(-1)[0])
    logits = (x @ fc_w).sum(axis=-1) + 2 * fc_b
    return _batch_norm(logits, params, 'logit_bn')


def _batch_norm(x: np.ndarray, params: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    """Eval-mode ``BatchNorm1d(1)``: ``(x - running_mean) / sqrt(running_var + eps) * w + b``."""
    mean, var, weight, bias = (float(np.asarray(params[f'{name}.{k}']).reshape(-1)[0])
                               for k in ('running_mean', 'running_var', 'weight', 'bias'))
    return (x - mean) / np.sqrt(var + float(params[f'{name}.eps'])) * weight + bias
