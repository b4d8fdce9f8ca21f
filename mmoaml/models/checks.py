"""When a data-dependent check of a tensor is affordable on the training path."""
import torch


def checkable_without_sync(tensor: torch.Tensor) -> bool:
    """Whether reading a value of ``tensor`` on the host needs no device synchronisation.

    Checks such as "labels lie in ``[0, num_classes)``" turn a tensor into a Python bool; on an
    accelerator that waits for every queued kernel, once per check and iteration. Components run
    such checks only on CPU tensors, where they cost nothing of the kind; on an accelerator an
    out-of-range label still fails in PyTorch's own kernels (a device-side assertion).
    """
    return tensor.device.type == 'cpu'
