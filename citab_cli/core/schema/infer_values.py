"""What the cells of one column say about it, for drafting a schema: numbers, censored bounds,
text tokens, dates, sentinel codes that sit apart from the column's bulk."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

#: Numeric codes cohorts use for "not collected / not applicable / refused / unknown". A value
#: from this list is proposed as missing only when it sits far outside the column's bulk.
SENTINELS = frozenset(
    [-1, -2, -3, -4, -5, -6, -7, -8, -9, -99, -999, -9999, 8, 9, 88, 95, 96, 97, 98, 99]
    + [888, 888.8, 995, 996, 997, 998, 999, 8888, 9999, 99999]
)
#: Text that means "no value" in any language an export is likely to use.
MISSING_WORDS = re.compile(
    r"^(n\.?\s?a\.?|n/a|na|nan|null|none|missing|unknown|unk|k\.?\s?a\.?|nicht\s.*|"
    r"not[\s_-]?(done|done_|available|assessed|applicable|collected|known)|nd|nv|"
    r"fehlt|unbekannt|keine?\s?angabe|-|\.|\?|refused|dk|don't know)$",
    re.IGNORECASE,
)
CENSORED = re.compile(r"^\s*([<>]=?)\s*(-?\d+(?:\.\d+)?)\s*$")
#: Dates as exports write them: ISO, European, American, year-month, ADNI's "/YYYY", with time.
DATES = [
    re.compile(p)
    for p in (
        r"^\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?$",
        r"^\d{4}/\d{1,2}/\d{1,2}$",
        r"^\d{1,2}[./-]\d{1,2}[./-]\d{2,4}$",
        r"^\d{4}-\d{1,2}$",
        r"^\d{1,2}/\d{4}$",
        r"^/\d{4}$",
        r"^\d{1,2}[ .-]?[A-Za-z]{3,9}[ .-]?\d{2,4}$",
        r"^[A-Za-z]{3,9}[ .-]\d{1,2},?[ .-]\d{4}$",
    )
]
#: A numeric cell is far from the bulk when it lies this many interquartile ranges beyond it.
FAR = 3.0


def number(text: str) -> float | None:
    """The cell as a finite number, or None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def is_date(text: str) -> bool:
    """Whether the cell looks like a date."""
    return any(p.match(text) for p in DATES)


@dataclass
class Cells:
    """One column's non-blank cells, sorted by kind."""

    count: int  # non-blank cells
    numbers: Counter = field(default_factory=Counter)  # value -> cells
    censored: dict = field(default_factory=dict)  # text -> (bound, cells)
    text: Counter = field(default_factory=Counter)  # text -> cells
    dates: int = 0

    @property
    def numeric_share(self) -> float:
        """Share of non-blank cells that are numbers (censored ones included)."""
        numeric = sum(self.numbers.values()) + sum(n for _, n in self.censored.values())
        return numeric / max(self.count, 1)


def read_cells(cells: list[str]) -> Cells:
    """Count a column's cells: blanks, numbers, censored values and text."""
    out = Cells(count=0)
    for raw in cells:
        text = raw.strip()
        if not text:
            continue
        out.count += 1
        value = number(text)
        if value is not None:
            out.numbers[value] += 1
            continue
        censored = CENSORED.match(text)
        if censored:
            bound, n = out.censored.get(text, (float(censored.group(2)), 0))
            out.censored[text] = (bound, n + 1)
            continue
        out.text[text] += 1
        out.dates += is_date(text)
    return out


def missing_words(cells: Cells) -> list[str]:
    """Text in a mostly numeric column: the words that look like "no value", or, failing that,
    every token rarer than the numbers (a column of numbers with a few "x" in it)."""
    words = [t for t in cells.text if MISSING_WORDS.match(t)]
    others = [t for t in cells.text if t not in words]
    rare = [t for t in others if cells.text[t] <= 0.3 * cells.count]
    return sorted(words + rare)


def _quartiles(values: list[float], counts: list[int]) -> tuple[float, float]:
    expanded = sorted(v for v, n in zip(values, counts, strict=True) for _ in range(n))
    q1 = expanded[int(0.25 * (len(expanded) - 1))]
    q3 = expanded[int(0.75 * (len(expanded) - 1))]
    return q1, q3


def sentinels(numbers: Counter) -> list[float]:
    """Known missing codes far outside the bulk of the column's other values: above it by
    FAR interquartile ranges (and 1.5 times its top), or negative where nothing else is."""
    regular = [v for v in numbers if v not in SENTINELS]
    if not regular:
        return []
    q1, q3 = _quartiles(regular, [numbers[v] for v in regular])
    spread = max(q3 - q1, 1.0)
    top, bottom = max(regular), min(regular)
    out = []
    for value in numbers:
        if value not in SENTINELS:
            continue
        high = value > q3 + FAR * spread and value > max(top * 1.5, top + 5)
        low = value < 0 <= bottom
        if high or low:
            out.append(value)
    return sorted(out)


def label_for(value: float) -> str:
    """How a number is written in a schema: 999, not 999.0."""
    return str(int(value)) if float(value).is_integer() else repr(value)


def typed(code: str) -> str | int | float:
    """A code as YAML should carry it: numbers as numbers, text as text."""
    value = number(code)
    if value is None:
        return code
    return int(value) if value.is_integer() else value
