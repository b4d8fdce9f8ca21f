"""Data-parallel training over gloo on CPU processes.

MMEngine 0.10.7 assumes an accelerator for distributed runs: its pytorch launcher calls
``torch.cuda.set_device`` and the Runner passes ``device_ids=[LOCAL_RANK]`` to DDP, which
torch rejects for a CPU module. On a machine without CUDA, ``tools/train.py`` and
``tools/test.py`` therefore initialise the process group themselves with gloo (the Runner then
skips its own initialisation) and wrap the model with :class:`CPUDistributedDataParallel`.
Both tools end every distributed run, on any backend, with :func:`close_distributed`.
"""
import gc
import os

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel

from mmoaml.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """:class:`MMDistributedDataParallel` that accepts the Runner's ``device_ids`` for a
    module living on the CPU, where torch requires ``device_ids=None``."""

    def __init__(self, module: torch.nn.Module, device_ids=None, **kwargs):
        on_cpu = all(p.device.type == 'cpu' for p in module.parameters())
        super().__init__(module=module, device_ids=None if on_cpu else device_ids, **kwargs)


def setup_cpu_distributed(cfg: Config) -> None:
    """Prepare ``cfg`` for a gloo run on CPU processes started by ``torchrun``/slurm.

    Initialises the default process group from the launcher's environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``; slurm variables are translated) and makes
    the Runner wrap the model with :class:`CPUDistributedDataParallel`.
    """
    if cfg.launcher == 'slurm':
        os.environ.setdefault('RANK', os.environ['SLURM_PROCID'])
        os.environ.setdefault('WORLD_SIZE', os.environ['SLURM_NTASKS'])
        os.environ.setdefault('LOCAL_RANK', os.environ.get('SLURM_LOCALID', '0'))
        os.environ.setdefault('MASTER_PORT', '29500')
        os.environ.setdefault('MASTER_ADDR', '127.0.0.1')
    elif cfg.launcher != 'pytorch':
        raise ValueError(f'launcher={cfg.launcher!r} is not supported without CUDA; '
                         "use 'pytorch' (torchrun) or 'slurm'")
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(
            backend='gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']))
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    # The Runner looks the type up with mmengine's root MODEL_WRAPPERS.get, which does not
    # search mmoaml's registry (a grandchild): a plain or 'mmoaml.'-scoped name resolves to
    # None there, the full import path resolves.
    wrapper['type'] = (f'{CPUDistributedDataParallel.__module__}.'
                       f'{CPUDistributedDataParallel.__qualname__}')
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper


def close_distributed() -> None:
    """Destroy every process group and collect the objects that still hold one.

    The tools call it when ``main`` returns or raises; without a process group it only runs the
    garbage collector. ``destroy_process_group`` stops a group's gloo worker threads only when
    nothing else references the group, but a finished run's objects still do (DDP's reducer,
    a metric's gloo group) until they are collected, which otherwise happens during interpreter
    shutdown. A worker thread that then frees the last collective's tensors needs the
    interpreter being torn down and aborts the process after a finished run ("terminate called
    without an active exception", SIGABRT). Collecting here, while the interpreter is whole,
    joins those threads first; torch documents the explicit destroy as the way to end a
    distributed program.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
    gc.collect()
