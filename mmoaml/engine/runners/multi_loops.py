"""Validation and test loops over several data sets (LFW, CFP-FP, AgeDB-30, masked sets...)."""
import copy
from typing import Dict, List, Sequence, Tuple, Union

import torch
from mmengine.evaluator import Evaluator
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop
from mmengine.runner.amp import autocast
from torch.utils.data import DataLoader

from mmoaml.registry import LOOPS
from ..seeded_loaders import build_seeded_dataloader

_MEAN = 'mean'


class _MultiSetLoop(BaseLoop):
    """Shared body of :class:`MultiValLoop` and :class:`MultiTestLoop` (``stage`` 'val'/'test').

    Each set keeps its own loader and evaluator, so each evaluator sees exactly its set's
    length (the sampler's padding is trimmed per set, which pair protocols need).
    """

    stage: str

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict, Sequence[Union[DataLoader, Dict]]],
                 evaluator: Union[Evaluator, Dict, List],
                 fp16: bool = False) -> None:
        loader_cfgs, evaluator_cfgs = self._per_set(dataloader, evaluator)
        loaders = [build_seeded_dataloader(runner, cfg) for cfg in loader_cfgs]
        super().__init__(runner, loaders[0])
        self.dataloaders = loaders
        self.evaluators = [
            cfg if isinstance(cfg, Evaluator) else runner.build_evaluator(cfg)
            for cfg in evaluator_cfgs
        ]
        self.set_names = _set_names(loaders, self.stage)
        for loader, evaluator, name in zip(loaders, self.evaluators, self.set_names):
            evaluator.dataset_meta = dict(_metainfo(loader), name=name)
        self.evaluator = self.evaluators[0]
        self.fp16 = fp16

    def _per_set(self, dataloader, evaluator) -> Tuple[list, list]:
        """One loader config and one evaluator config per set."""
        if not isinstance(dataloader, (list, tuple)):
            return [dataloader], [evaluator]
        if not dataloader:
            raise ValueError(f'{self.stage}_dataloader is an empty list')
        num_sets = len(dataloader)
        if isinstance(evaluator, (list, tuple)):
            if len(evaluator) != num_sets:
                raise ValueError(
                    f'{self.stage}_evaluator must hold one entry per {self.stage}_dataloader '
                    f'({num_sets}), got {len(evaluator)}')
            return list(dataloader), list(evaluator)
        if isinstance(evaluator, Evaluator) and num_sets > 1:
            raise ValueError(f'one Evaluator instance cannot serve {num_sets} sets; give '
                             f'{self.stage}_evaluator as a config or one entry per set')
        return list(dataloader), [copy.deepcopy(evaluator) for _ in range(num_sets)]

    def run(self) -> Dict[str, float]:
        """Run every set in turn; the hooks of the stage are called once around all of them.

        Returns:
            dict: The sets' metrics under ``<set>/...`` and ``mean/<score>/accuracy``.
        """
        runner = self.runner
        runner.call_hook(f'before_{self.stage}')
        runner.call_hook(f'before_{self.stage}_epoch')
        runner.model.eval()
        self._bind_matcher()
        metrics: Dict[str, float] = {}
        for loader, evaluator, name in zip(self.dataloaders, self.evaluators, self.set_names):
            # Hooks and the log processor read the current loader through the runner.
            self.dataloader, self.evaluator = loader, evaluator
            runner.visualizer.dataset_meta = evaluator.dataset_meta
            for idx, data_batch in enumerate(loader):
                self.run_iter(idx, data_batch)
            results = evaluator.evaluate(len(loader.dataset))
            metrics.update({
                key if key.startswith(f'{name}/') else f'{name}/{key}': value
                for key, value in results.items()
            })
        metrics.update(_mean_accuracies(metrics, self.set_names))
        runner.call_hook(f'after_{self.stage}_epoch', metrics=metrics)
        runner.call_hook(f'after_{self.stage}')
        return metrics

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch: dict) -> None:
        """Predict one batch of the current set and feed its evaluator."""
        self.runner.call_hook(f'before_{self.stage}_iter', batch_idx=idx, data_batch=data_batch)
        with autocast(enabled=self.fp16):
            outputs = getattr(self.runner.model, f'{self.stage}_step')(data_batch)
        self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        self.runner.call_hook(
            f'after_{self.stage}_iter', batch_idx=idx, data_batch=data_batch, outputs=outputs)

    def _bind_matcher(self) -> None:
        """Give the model's QAConv head to every metric that scores with one."""
        model = self.runner.model
        model = model.module if is_model_wrapper(model) else model
        matcher = getattr(model, 'qaconv_head', None)
        if matcher is None:
            return
        for evaluator in self.evaluators:
            for metric in evaluator.metrics:
                if hasattr(metric, 'bind_matcher'):
                    metric.bind_matcher(matcher)


@LOOPS.register_module()
class MultiValLoop(_MultiSetLoop):
    """Validation loop over several data sets, each with its own evaluator.

    ``val_dataloader`` is a list of loaders (configs or objects); ``val_evaluator`` a list of
    the same length (each entry: a metric config, a list of them, or an ``Evaluator``) or one
    config used for every set (built once per set). A single loader behaves like MMEngine's
    ``ValLoop``. ``before_val``, ``before_val_epoch``, ``after_val_epoch`` and ``after_val`` are
    called once; iteration hooks per batch, ``batch_idx`` restarting with each set.

    Key scheme: every key of set ``s`` reads ``<s>/...`` (FaceVerificationMetric already
    writes ``<s>/<score type>/<name>`` from ``dataset_meta['name']``; other metrics' keys get
    the set level prepended), plus ``mean/<score type>/accuracy``: the mean over the sets of
    ``<s>/<score type>/accuracy``, for the score types that every set reports (like the
    reference's ``val_acc``). A set's name is its dataset's ``metainfo['name']`` (e.g.
    ``dataset=dict(..., metainfo=dict(name='lfw'))``), else ``set<i>``; names must be
    distinct, free of ``/`` and not ``mean``. Leave the metrics' ``prefix`` unset here.

    The model's ``qaconv_head`` (DDP wrapper unwrapped) is bound to every metric with a
    ``bind_matcher`` method. Validation losses returned by a model are not collected.

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader | dict | list): One loader per set.
        evaluator (Evaluator | dict | list): One evaluator per set, or one config for all.
        fp16 (bool): Run the model under autocast. Defaults to False.

    Examples:
        >>> val_dataloader = [dict(dataset=dict(type='VerificationBinDataset',
        ...                                     ann_file=f'data/{name}.bin', pipeline=...),
        ...                        sampler=dict(type='DefaultSampler', shuffle=False),
        ...                        batch_size=256) for name in ('lfw', 'cfp_fp', 'agedb_30')]
        >>> val_evaluator = dict(type='FaceVerificationMetric')
        >>> val_cfg = dict(type='MultiValLoop')
        >>> default_hooks = dict(checkpoint=dict(
        ...     type='CheckpointHook', save_best='mean/adaface/accuracy', rule='greater'))
    """

    stage = 'val'


@LOOPS.register_module()
class MultiTestLoop(_MultiSetLoop):
    """Test loop over several data sets: :class:`MultiValLoop` with the test hooks
    (``before_test``, ``before_test_epoch``, ``*_test_iter``, ``after_test_epoch``,
    ``after_test``), ``model.test_step`` and ``test_dataloader``/``test_evaluator``."""

    stage = 'test'


def _metainfo(loader: DataLoader) -> dict:
    return dict(getattr(loader.dataset, 'metainfo', None) or {})


def _set_names(loaders: List[DataLoader], stage: str) -> List[str]:
    names = [str(_metainfo(loader).get('name', f'set{i}')) for i, loader in enumerate(loaders)]
    bad = [n for n in names if not n or '/' in n or n == _MEAN]
    if bad or len(set(names)) != len(names):
        raise ValueError(f'the {stage} sets need distinct names without "/" other than '
                         f'"{_MEAN}" (dataset metainfo "name"), got {names}')
    return names


def _mean_accuracies(metrics: Dict[str, float], names: List[str]) -> Dict[str, float]:
    """``mean/<score>/accuracy`` over the sets, for scores reported by every set."""
    per_score: Dict[str, List[float]] = {}
    for name in names:
        for key, value in metrics.items():
            parts = key.split('/')
            if len(parts) == 3 and parts[0] == name and parts[2] == 'accuracy':
                per_score.setdefault(parts[1], []).append(value)
    return {
        f'{_MEAN}/{score}/accuracy': float(sum(values) / len(values))
        for score, values in per_score.items() if len(values) == len(names)
    }
