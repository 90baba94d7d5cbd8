"""The search-space language: swept parameters, their values, the grid and trial names (pure)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from pipelines.dataset import DatasetError


@dataclass(frozen=True)
class Param:
    """A swept parameter: its flag, value type and allowed range (inclusive)."""

    name: str
    kind: type
    low: float
    high: float = math.inf

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, raw, where: str):
        """One value from a flag's text or a YAML item; a DatasetError naming `where`."""
        if isinstance(raw, bool):
            raise DatasetError(f"{where}: {raw!r} is not a number")
        text = str(raw).strip()
        if not text:
            raise DatasetError(f"{where}: an empty value")
        try:
            number = float(text)
        except ValueError:
            raise DatasetError(f"{where}: {text!r} is not a number") from None
        if not math.isfinite(number):
            raise DatasetError(f"{where}: {text!r} is not a finite number")
        if self.kind is int:
            if number != int(number):
                raise DatasetError(f"{where}: {text!r} is not a whole number")
            number = int(number)
        if not self.low <= number <= self.high:
            high = "" if self.high == math.inf else f" and {self.high:g}"
            what = f"between {self.low:g}{high}" if high else f"at least {self.low:g}"
            raise DatasetError(f"{where}: {text} must be {what}")
        return number


def parse_values(param: Param, raw, where: str | None = None) -> list:
    """A flag's comma-separated text (or a YAML list / scalar) -> distinct values, in order."""
    where = where or param.flag
    if isinstance(raw, (list, tuple)):
        items = list(raw)
    elif isinstance(raw, str):
        items = raw.split(",")
    else:
        items = [raw]
    if not items or (isinstance(raw, str) and not raw.strip()):
        raise DatasetError(f"{where}: no values (give e.g. {param.flag} 10,30,50)")
    values = []
    for item in items:
        value = param.parse(item, f"{where} {raw if isinstance(raw, str) else item!r}")
        if value not in values:
            values.append(value)
    return values


def short_value(value) -> str:
    """A parameter value as trial names and plot legends show it (`1.5`, `30`, `3`)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def trial_name(params: dict) -> str:
    """A trial's stable name from its parameter values (`threshold=30,cfg_scale=1.5`)."""
    return ",".join(f"{k}={short_value(v)}" for k, v in params.items())


def grid(space: dict[str, list]) -> list[dict]:
    """Every combination of the swept values, in the order Tune's grid search runs them."""
    keys = list(space)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*space.values())]
