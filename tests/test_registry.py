"""Registry building in scope mmoaml and from a foreign scope via custom_imports."""
import subprocess
import sys
import textwrap

import torch.nn as nn
from mmengine.registry import DefaultScope

from mmoaml.registry import MODELS
from mmoaml.utils import register_all_modules


@MODELS.register_module(force=True)
class _ToyNet(nn.Module):

    def __init__(self, width: int = 3):
        super().__init__()
        self.fc = nn.Linear(width, 1)


def test_registries_are_children_in_mmoaml_scope():
    assert MODELS.scope == 'mmoaml'
    assert MODELS.parent.scope == 'mmpretrain'
    assert MODELS.parent.parent.scope == 'mmengine'


def test_build_from_config_dict_in_mmoaml_scope():
    register_all_modules(init_default_scope=True)
    assert DefaultScope.get_current_instance().scope_name == 'mmoaml'
    net = MODELS.build(dict(type='_ToyNet', width=5))
    assert isinstance(net, _ToyNet) and net.fc.in_features == 5
    # Components of the parent (mmpretrain) resolve by plain name in the mmoaml scope.
    loss = MODELS.build(dict(type='CrossEntropyLoss'))
    assert type(loss).__name__ == 'CrossEntropyLoss'


def test_build_from_foreign_scope_with_custom_imports():
    # A fresh interpreter whose default scope is mmpretrain imports mmoaml only through
    # custom_imports and builds an mmoaml component with _scope_.
    code = textwrap.dedent('''
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        from mmpretrain.registry import MODELS
        cfg = Config(dict(custom_imports=dict(imports=['mmoaml.models'],
                                              allow_failed_imports=False),
                          model=dict(type='OcclusionHead', _scope_='mmoaml')))
        init_default_scope('mmpretrain')
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
        head = MODELS.build(cfg.model)
        print(type(head).__module__)
    ''')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith('mmoaml.models.heads')
