"""report.md of `citab explain`: the methods in words, the columns with their spread, the
prototypes and how a cohort's columns spread over them, each subject with its scan map."""

from __future__ import annotations

#: A cohort whose columns pick one prototype this often (at every layer) is routed by the
#: cohort, not by what its columns mean.
ONE_PROTOTYPE_SHARE = 0.9

METHODS = {
    "sample": "expected gradients (integrated gradients averaged over {n} baselines whose every "
    "cell is a real train subject's, so a binary column starts from a level someone has)",
    "mean": "integrated gradients from each column's average token over the train subjects",
}
SCANS = {
    "gradcam": "Grad-CAM from image stage {stage} of 4 (|gradient x activation| where Grad-CAM "
    "finds nothing)",
    "occlusion": "occlusion sensitivity (the drop of the class score when a patch is set to the "
    "background)",
}


def _method(document: dict) -> str:
    from citab_cli.core.explain.attribute import BASELINES

    columns = METHODS[document.get("baseline", "mean")].format(n=BASELINES)
    scan = SCANS[document.get("scan_method", "gradcam")].format(stage=document["gradcam_stage"])
    return (
        f"Checkpoint `{document['checkpoint']}` ({document['model']}); classes "
        f"{', '.join(document['classes'])}. Columns: {columns}, --steps {document['steps']}, "
        f"for the predicted class. Scan: {scan}, masked to the brain."
    )


def routing_lines(entropy: dict) -> list[str]:
    """Per cohort, how evenly its columns spread over the prototypes, in words; then what a
    layer where columns all go to one prototype means: the cohort deciding (its prototype is not
    the other cohorts'), or a collapsed routing (every cohort's columns share it)."""
    lines = []
    for cohort, entry in entropy.items():
        seen = "" if entry.get("seen", True) else ", not seen in pretraining"
        parts = ", ".join(
            f"layer {i + 1}: entropy {abs(layer['entropy']):.2f}, {layer['share']:.0%} to "
            f"prototype {layer['prototype']}"
            for i, layer in enumerate(entry["layers"])
        )
        lines.append(f"- {cohort} ({entry['columns']} columns{seen}): {parts}.")
    layers = len(next(iter(entropy.values()))["layers"]) if entropy else 0
    for i in range(layers):
        one = {c: e["layers"][i]["prototype"] for c, e in entropy.items()
               if e["layers"][i]["share"] >= ONE_PROTOTYPE_SHARE}  # fmt: skip
        if len(one) == len(entropy) and len(set(one.values())) == 1 and len(entropy) > 1:
            lines.append(
                f"- **Layer {i + 1}: every cohort's columns route to prototype "
                f"{next(iter(one.values()))}; the routing has collapsed and tells no concept "
                "from another.**"
            )
            continue
        for cohort, prototype in one.items():
            lines.append(
                f"- **Layer {i + 1}: all of {cohort}'s columns route to prototype {prototype}: "
                "the cohort, not what a column means, decides the routing.**"
            )
    return lines


def markdown(document: dict) -> str:
    """The report's text."""
    aggregate = document["cohort_attributions"]
    lines = [
        f"# Explanation: {document['cohort']}",
        "",
        _method(document),
        "",
        f"## Columns ({aggregate['subjects']} test subjects)",
        "",
        "![columns](tabular_attributions.png)",
        "",
        "| header | mean abs. attribution | sd over subjects | mean attribution |",
        "|---|---|---|---|",
    ]
    for c in aggregate["columns"]:
        lines.append(
            f"| {c['header']} | {c['mean_abs']:.4f} | {c.get('sd_abs', 0.0):.4f} | "
            f"{c['mean']:+.4f} |"
        )
    lines += ["", "## Prototypes", ""]
    if document["prototypes"]:
        lines += ["![routing](prototype_routing.png)", ""]
        lines += ["How each cohort's columns spread over the prototypes (entropy of the "
                  "prototype each column routes to most: 0 all to one, 1 evenly):", ""]  # fmt: skip
        lines += [*routing_lines(document.get("routing_entropy", {})), ""]
    else:
        lines += ["The model has no P-MoLin layers (`tabular.ffn: dense`): no routing to show.", ""]
    for name, members in document["prototypes"].items():
        lines.append(f"- {name}: " + ", ".join(f"{m['column']} ({m['gate']:.2f})" for m in members))
    lines += ["", "## Subjects", ""]
    for s in document["subjects"]:
        top = ", ".join(f"{a['header']} ({a['value']:+.3f})" for a in s["attributions"][:3])
        note = f" {s['scan_note']}." if s.get("scan_note") else ""
        lines += [
            f"### {s['subject']}: predicted {s['predicted']} (label {s['label'] or '-'})",
            "",
            f"Strongest columns: {top}.{note}",
            "",
            f"![scan map]({s['gradcam_png']})",
            "",
        ]
    return "\n".join(lines)
