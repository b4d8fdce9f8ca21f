import os

import torch.distributed as dist

from mmoaml.engine import close_distributed


def _gloo_threads():
    """Names of this process's gloo worker and transport threads (Linux ``/proc``)."""
    names = (open(f'/proc/self/task/{tid}/comm').read().strip()
             for tid in os.listdir('/proc/self/task'))
    return sorted(n for n in names if 'gloo' in n)


class _Holder:
    """Keeps a process group the way a finished run's objects do: inside a reference cycle,
    which only the garbage collector frees."""

    def __init__(self, group):
        self.group = group
        self.itself = self


def test_close_distributed_joins_the_gloo_threads_of_groups_still_referenced(tmp_path):
    before = _gloo_threads()
    store = dist.FileStore(str(tmp_path / 'store'), 1)
    dist.init_process_group('gloo', store=store, rank=0, world_size=1)
    try:
        holder = _Holder(dist.new_group(backend='gloo'))
        dist.broadcast_object_list(['payload'], src=0, group=holder.group)
        del holder
        assert len(_gloo_threads()) > len(before)
        close_distributed()
        assert not dist.is_initialized()
        # destroy_process_group alone leaves the held group's threads running
        assert _gloo_threads() == before
    finally:  # never leave a group to the other tests of this process
        if dist.is_initialized():
            dist.destroy_process_group()
    close_distributed()  # nothing to close: returns quietly
    assert not dist.is_initialized()
