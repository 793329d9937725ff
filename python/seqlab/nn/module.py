"""Module: the base of every layer and model, mirroring ``torch.nn.Module``."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ..autograd import Tensor
from .parameter import Parameter


class Module:
    """Base class for layers and models.

    Assigning a :class:`Parameter` or a Module to an attribute registers it, so
    ``named_parameters()`` and ``state_dict()`` see it under the attribute's name
    (nested with dots, as in PyTorch: ``"encoder.weight_ih_l0"``).
    """

    training: bool
    _parameters: OrderedDict[str, Parameter]
    _modules: OrderedDict[str, Module]
    _buffers: OrderedDict[str, Any]

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)

    # --------------------------------------------------------- registration
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        for store in (self._parameters, self._modules, self._buffers):
            store.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._modules, self._buffers):
            store.pop(name, None)
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Registers ``param`` under ``name`` (None registers nothing but sets the attribute)."""
        if param is None:
            object.__setattr__(self, name, None)
            self._parameters.pop(name, None)
        else:
            setattr(self, name, param)

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """Registers a non-trainable array that is saved in the state dict."""
        setattr(self, name, value)
        self._buffers[name] = value

    def add_module(self, name: str, module: Module) -> None:
        setattr(self, name, module)

    # ------------------------------------------------------------- traversal
    def named_children(self) -> Iterator[tuple[str, Module]]:
        yield from self._modules.items()

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        """(name, parameter) pairs in registration order, each parameter once."""
        seen: set[int] = set()
        modules = self.named_modules(prefix) if recurse else iter([(prefix, self)])
        for mod_prefix, mod in modules:
            for name, p in mod._parameters.items():
                if id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), p

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for mod_prefix, mod in self.named_modules(prefix):
            for name, b in mod._buffers.items():
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), b

    # ----------------------------------------------------------------- modes
    def train(self, mode: bool = True) -> Module:
        """Sets training mode (dropout active) on this module and its children."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Sets evaluation mode (dropout off)."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Sets every parameter's gradient to zero in place (kept allocated for the optimizer)."""
        for p in self.parameters():
            if p.grad is not None:
                p.grad.fill(0.0)

    def num_parameters(self) -> int:
        """Total number of trainable values."""
        return sum(p.size for p in self.parameters())

    # ------------------------------------------------------------ state dict
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of every parameter and buffer as float32 ndarrays, keyed by PyTorch's names."""
        state: OrderedDict[str, np.ndarray] = OrderedDict()
        for name, p in self.named_parameters():
            state[name] = p.data.copy()
        for name, b in self.named_buffers():
            state[name] = np.array(b, copy=True)
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> None:
        """Copies values into the parameters in place.

        Values may be ndarrays or anything ``np.asarray`` accepts (e.g. torch tensors via
        ``.numpy()``). With ``strict``, missing or unexpected keys raise ValueError listing
        them; a value of the wrong shape always raises ValueError naming the key and shapes.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"load_state_dict: expected a mapping of name -> array, got {type(state_dict).__name__}"
            )
        own: dict[str, Any] = dict(self.named_parameters())
        own.update(dict(self.named_buffers()))
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys {missing}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected}")
            raise ValueError(f"load_state_dict for {type(self).__name__}: " + "; ".join(parts))
        values: dict[str, np.ndarray] = {}
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            if hasattr(value, "detach") and hasattr(value, "numpy") and not isinstance(value, Tensor):
                value = value.detach().cpu().numpy()  # a torch tensor
            elif isinstance(value, Tensor):
                value = value.data
            arr = np.asarray(value)
            shape = target.shape
            if arr.shape != tuple(shape):
                raise ValueError(
                    f"load_state_dict for {type(self).__name__}: '{key}' has shape {arr.shape}, "
                    f"expected {tuple(shape)}"
                )
            if arr.dtype.kind not in "fiub":
                raise TypeError(f"load_state_dict: '{key}' has dtype {arr.dtype}, expected a number array")
            if isinstance(target, Parameter) and not np.all(np.isfinite(arr)):
                raise ValueError(f"load_state_dict: '{key}' contains NaN or infinite values")
            values[key] = arr
        # All checks passed: copy (nothing is half-loaded after an error).
        for key, arr in values.items():
            target = own[key]
            if isinstance(target, Parameter):
                target.data[...] = arr
            else:
                target[...] = arr

    # --------------------------------------------------------------- calling
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The layer's computation; every subclass defines it (as in ``torch.nn.Module``,
        calling a Module that does not is an error naming the class)."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        if len(lines) == 1:
            return lines[0] + ")"
        return "\n".join(lines) + "\n)"
