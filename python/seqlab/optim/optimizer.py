"""Optimizer base: parameter groups over one flat parameter/gradient buffer.

Subclasses describe one update over a contiguous range of the flat buffers
(:meth:`Optimizer._update_range`); the base class groups parameters that share a
group and a per-parameter state key (e.g. Adam's step count) into ranges, so in the
common case (every parameter has a gradient and the same step) a step is one C++ call
over the whole buffer.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..autograd import Tensor
from ..nn.utils.flat_buffer import FlatParameters, flatten_parameters


def check_lr(lr: Any) -> float:
    """``lr`` as a float, or ValueError naming it when negative or not finite."""
    try:
        value = float(lr)
    except (TypeError, ValueError) as e:
        raise TypeError(f"lr: expected a number, got {type(lr).__name__}") from e
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"lr: expected a finite value >= 0, got {lr}")
    return value


def check_nonnegative(name: str, value: Any) -> float:
    v = float(value)
    if not math.isfinite(v) or v < 0.0:
        raise ValueError(f"{name}: expected a finite value >= 0, got {value}")
    return v


class Optimizer(ABC):
    """Base class with torch's ``param_groups`` / ``step`` / ``zero_grad`` / ``state_dict``.

    Args:
        params: an iterable of parameters, or of dicts ``{"params": [...], **options}``
            (parameter groups with their own hyperparameters).
        defaults: the hyperparameters of groups that do not set them.

    All parameters are packed into one flat buffer (``self.flat``); afterwards each
    parameter's ``.data`` and ``.grad`` are views into it.
    """

    #: names of flat per-element state buffers (e.g. ``exp_avg``), allocated on first use
    state_names: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        if isinstance(params, Tensor):
            raise TypeError("params: expected an iterable of parameters, got a single Tensor")
        items = list(params)
        if not items:
            raise ValueError("params: the optimizer got an empty parameter list")
        groups_in = items if isinstance(items[0], Mapping) else [{"params": items}]
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        ordered: list[Tensor] = []
        for gi, g in enumerate(groups_in):
            if not isinstance(g, Mapping) or "params" not in g:
                raise TypeError(f"params[{gi}]: expected a dict with a 'params' key")
            plist = [g["params"]] if isinstance(g["params"], Tensor) else list(g["params"])
            unknown = set(g) - set(defaults) - {"params"}
            if unknown:
                raise ValueError(f"params[{gi}]: unknown options {sorted(unknown)}")
            group = {**defaults, **{k: v for k, v in g.items() if k != "params"}}
            self._check_group(group)
            group["params"] = plist
            self.param_groups.append(group)
            ordered.extend(plist)
        self.flat: FlatParameters = flatten_parameters(ordered)
        self._group_bounds: list[tuple[int, int]] = []
        start = 0
        for group in self.param_groups:
            self._group_bounds.append((start, start + len(group["params"])))
            start += len(group["params"])
        n = len(ordered)
        #: per-parameter number of updates applied (torch's ``state[p]["step"]``)
        self.steps = np.zeros(n, dtype=np.int64)
        self.buffers: dict[str, np.ndarray] = {}
        #: per-parameter flags kept with the state (e.g. whether SGD's momentum buffer exists)
        self.flags: dict[str, np.ndarray] = {}

    # -------------------------------------------------------- for subclasses
    def _check_group(self, group: dict[str, Any]) -> None:
        """Validates one group's hyperparameters (raises ValueError naming the bad one)."""
        group["lr"] = check_lr(group["lr"])

    def _buffer(self, name: str) -> np.ndarray:
        """The flat state buffer ``name`` (zeros on first use)."""
        buf = self.buffers.get(name)
        if buf is None:
            buf = np.zeros(self.flat.data.size, dtype=np.float32)
            self.buffers[name] = buf
        return buf

    def _range_key(self, i: int) -> tuple[Any, ...]:
        """Parameters merged into one kernel call must share this key (default: the step
        count they reach with this update)."""
        return (int(self.steps[i]) + 1,)

    @abstractmethod
    def _update_range(
        self, group: dict[str, Any], first: int, last: int, begin: int, end: int, step: int
    ) -> None:
        """Updates parameters ``first..last - 1`` of one group, flat elements [begin, end),
        all of which reach update number ``step`` with this call (each optimizer's kernel)."""

    # ------------------------------------------------------------ public API
    def step(self) -> None:
        """Updates every parameter that has a gradient (those with ``grad is None`` are skipped)."""
        active = self.flat.sync()
        offsets, sizes = self.flat.offsets, self.flat.sizes
        for group, (g0, g1) in zip(self.param_groups, self._group_bounds, strict=True):
            group["lr"] = check_lr(group["lr"])
            i = g0
            while i < g1:
                if not active[i]:
                    i += 1
                    continue
                key = self._range_key(i)
                step = int(self.steps[i]) + 1
                j = i
                while j + 1 < g1 and active[j + 1] and self._range_key(j + 1) == key:
                    j += 1
                begin, end = offsets[i], offsets[j] + sizes[j]
                if end > begin:
                    self._update_range(group, i, j + 1, begin, end, step)
                self.steps[i : j + 1] += 1
                i = j + 1

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zeroes the flat gradient buffer in place; every ``p.grad`` becomes (or stays) a
        view of it. With ``set_to_none``, sets every ``p.grad`` to None instead (torch's
        default; parameters then get fresh gradient arrays that the next ``step`` copies in).
        """
        self.flat.zero_grad(set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """The optimizer state: per-parameter step counts, flat state buffers (copies) and
        each group's hyperparameters with its parameter indices."""
        groups = []
        for group, (g0, g1) in zip(self.param_groups, self._group_bounds, strict=True):
            entry = {k: v for k, v in group.items() if k != "params"}
            entry["params"] = list(range(g0, g1))
            groups.append(entry)
        return {
            "state": {
                "step": self.steps.copy(),
                "buffers": {k: v.copy() for k, v in self.buffers.items()},
                "flags": {k: v.copy() for k, v in self.flags.items()},
                "sizes": list(self.flat.sizes),
            },
            "param_groups": groups,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores a :meth:`state_dict` of an optimizer over parameters of the same shapes.

        Raises:
            ValueError: the number of groups or parameters, or a buffer's size, differs.
        """
        if not isinstance(state_dict, Mapping) or "state" not in state_dict:
            raise TypeError("load_state_dict: expected a dict returned by Optimizer.state_dict()")
        state, groups = state_dict["state"], state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"load_state_dict: state has {len(groups)} parameter groups, "
                f"the optimizer has {len(self.param_groups)}"
            )
        sizes = list(state["sizes"])
        if sizes != list(self.flat.sizes):
            raise ValueError(
                f"load_state_dict: parameter sizes {sizes} differ from the optimizer's "
                f"{list(self.flat.sizes)}"
            )
        for gi, (g, own) in enumerate(zip(groups, self.param_groups, strict=True)):
            if len(g["params"]) != len(own["params"]):
                raise ValueError(
                    f"load_state_dict: group {gi} has {len(g['params'])} parameters, "
                    f"expected {len(own['params'])}"
                )
        buffers = {}
        for name, arr in state["buffers"].items():
            a = np.asarray(arr, dtype=np.float32)
            if name not in self.state_names or a.shape != (self.flat.data.size,):
                raise ValueError(
                    f"load_state_dict: buffer '{name}' of shape {a.shape} does not fit "
                    f"(expected one of {self.state_names} of shape ({self.flat.data.size},))"
                )
            buffers[name] = a.copy()
        steps = np.asarray(state["step"], dtype=np.int64)
        if steps.shape != self.steps.shape:
            raise ValueError(
                f"load_state_dict: step has shape {steps.shape}, expected {self.steps.shape}"
            )
        flags = {}
        for name, arr in state.get("flags", {}).items():
            f = np.asarray(arr, dtype=bool)
            if f.shape != self.steps.shape:
                raise ValueError(
                    f"load_state_dict: flag '{name}' has shape {f.shape}, "
                    f"expected {self.steps.shape}"
                )
            flags[name] = f.copy()
        for g, own in zip(groups, self.param_groups, strict=True):
            for k, v in g.items():
                if k != "params":
                    own[k] = v
            self._check_group(own)
        self.steps = steps.copy()
        self.buffers = buffers
        self.flags = flags

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params")
        return "\n".join([*lines, ")"])
