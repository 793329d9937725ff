"""What the recipes' configs share: named presets, overrides by field name, and an error
that lists the known names when a name is unknown.

A recipe's config is a frozen dataclass that also derives from :class:`PresetConfig`;
its presets are a ``{name: config}`` dict read through :func:`named_preset`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, fields, replace
from typing import Any, ClassVar, TypeVar

C = TypeVar("C", bound="PresetConfig")


class PresetConfig:
    """Mixin of a frozen config dataclass: :meth:`with_overrides`, :meth:`to_dict` and
    :meth:`from_dict`.

    Class attributes:
        settings_name: what the settings are called in errors (``"code LM"``: "unknown
            code LM settings [...]").
        tuple_fields: fields held as tuples, given as any sequence and written to
            dicts (TOML, JSON) as lists.
    """

    settings_name: ClassVar[str] = "model"
    tuple_fields: ClassVar[tuple[str, ...]] = ()

    def check_positive_ints(self, names: Iterable[str]) -> None:
        """Raises ValueError naming the first of ``names`` that is not an integer >= 1."""
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def normalise(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """The overrides in the types the fields hold (sequences of :attr:`tuple_fields`
        as tuples); configs with nested fields extend it."""
        for key in self.tuple_fields:
            if overrides.get(key) is not None:
                overrides[key] = tuple(overrides[key])
        return overrides

    def with_overrides(self: C, **overrides: Any) -> C:
        """A copy with some fields replaced; unknown names raise TypeError listing the known ones."""
        known = {f.name for f in fields(self)}  # type: ignore[arg-type]
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown {self.settings_name} settings {unknown}; known: {sorted(known)}")
        return replace(self, **self.normalise(overrides))  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data (tuples as lists), as ``config.toml`` stores them."""
        d = asdict(self)  # type: ignore[call-overload]
        for key in self.tuple_fields:
            if d.get(key) is not None:
                d[key] = [list(v) if isinstance(v, tuple) else v for v in d[key]]
        return d

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any]) -> C:
        """The config of a :meth:`to_dict` (names this version does not know are ignored)."""
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls().with_overrides(**{k: v for k, v in d.items() if k in known})


def named_preset(presets: Mapping[str, C], name: str, overrides: Mapping[str, Any], what: str = "") -> C:
    """``presets[name]`` with ``overrides`` applied.

    Raises:
        ValueError: ``name`` is not a preset (the message lists them; ``what`` names the
            kind of preset, as in "unknown code LM preset 'huge'").
        TypeError: an override is not a field of the config.
    """
    if name not in presets:
        kind = f"{what} preset" if what else "preset"
        raise ValueError(f"unknown {kind} {name!r}; choose one of {list(presets)}")
    return presets[name].with_overrides(**overrides)
