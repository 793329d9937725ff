"""Sequential: modules applied in order, mirroring ``torch.nn.Sequential``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .module import Module


class Sequential(Module):
    """Calls its modules in order; child ``i`` is registered as ``str(i)``, so state-dict
    keys (``"0.weight"``, ``"2.bias"``) match torch's.
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: argument {i} is a {type(m).__name__}, not a Module")
            self.add_module(str(i), m)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index: int | slice) -> Module:
        mods = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*mods[index])
        if not isinstance(index, int) or not -len(mods) <= index < len(mods):
            raise IndexError(f"Sequential: index {index!r} out of range for {len(mods)} modules")
        return mods[index]

    def append(self, module: Module) -> Sequential:
        """Adds ``module`` at the end."""
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.append: expected a Module, got {type(module).__name__}")
        self.add_module(str(len(self)), module)
        return self

    def forward(self, input: Any) -> Any:
        for m in self._modules.values():
            input = m(input)
        return input
