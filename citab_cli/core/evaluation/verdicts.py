"""A probe report's result in one plain sentence per label fraction: does the pretrained
multimodal embedding beat its random twin, the raw table and the trees, and is it above
chance? For the page, the report and the terminal."""

from __future__ import annotations

from citab_cli.core.evaluation.evaluation_report import below_chance, chance_levels

#: The method a headline is about, and the baselines it is weighed against, in order.
HEADLINE_METHOD = "citab"
HEADLINE_BASELINES = ("random_multimodal", "raw_table", "raw_table_gbdt")
#: How the headline names them.
NAMES = {
    "citab": "the CITab multimodal embedding",
    "random_multimodal": "the same network with random weights",
    "raw_table": "the raw table",
    "raw_table_gbdt": "gradient-boosted trees on the raw table",
}


def _listed(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def headline(document: dict, fraction: str) -> str | None:
    """The sentence for `fraction` (a key of the report's results, e.g. '0.1'); None when the
    report lacks the multimodal embedding or its comparisons."""
    score = document["results"].get(HEADLINE_METHOD, {}).get(fraction, {})
    entries = [
        e
        for e in document.get("comparisons", {}).get(fraction, [])
        if e["method"] == HEADLINE_METHOD and e["baseline"] in HEADLINE_BASELINES
    ]
    if not score or not entries:
        return None
    mean = score["balanced_accuracy"]["mean"]
    chance = chance_levels(len(document["classes"]))["balanced_accuracy"]
    groups: dict[str, list[str]] = {"better": [], "worse": [], "not detected": []}
    for entry in sorted(entries, key=lambda e: HEADLINE_BASELINES.index(e["baseline"])):
        d = entry["balanced_accuracy"]
        low, high = d["ci95"]
        text = f"{NAMES[entry['baseline']]} ({d['difference']:+.3f} [{low:+.3f}, {high:+.3f}]"
        if d["verdict"] == "not detected" and d.get("mde") is not None:
            text += f", smallest detectable ±{d['mde']:.2f}"
        groups.setdefault(d["verdict"], []).append(text + ")")
    level = "below chance" if below_chance(mean, chance) else "above chance"
    parts = []
    if groups["better"]:
        parts.append(f"better than {_listed(groups['better'])}")
    if groups["worse"]:
        parts.append(f"worse than {_listed(groups['worse'])}")
    if groups["not detected"]:
        parts.append(f"not detectably different from {_listed(groups['not detected'])}")
    return (
        f"At {float(fraction):.0%} of labels, {NAMES[HEADLINE_METHOD]} scores {mean:.3f} "
        f"({level}, {chance:.3f}): {'; '.join(parts)}."
    )


def multiplicity(document: dict, fraction: str) -> str:
    """What the number of comparisons at `fraction` means for their unadjusted intervals."""
    total = len(document.get("comparisons", {}).get(fraction, []))
    expected = max(1, round(total / 20))
    return (
        f"{total} comparisons at this fraction, each with an unadjusted 95% interval: were there "
        f"no real differences, about {expected} of them would still read better or worse."
    )
