"""What pretraining does to the network, beyond its losses: how large each part's gradients are,
and how many directions its embeddings use.

Both are label-free. A part whose gradients are orders of magnitude smaller than the others' is
barely trained; an embedding whose effective rank collapses towards 1 says the same thing of
every subject, whatever the probe reads from it.
"""

from __future__ import annotations

import torch

#: The parts of the network whose gradient norms are logged: name -> top-level modules.
PARTS = {
    "image": ("image",),
    "tabular": ("tabular",),
    "fusion": ("fusion", "image_tokens", "image_position"),
    "projections": ("image_projection", "tabular_projection"),
}


def gradient_norms(model: torch.nn.Module) -> dict[str, float]:
    """The L2 norm of the gradients of each part of PARTS, and of the rest ("heads"), as they
    are after backward and before clipping: grad_<part> -> norm (0 for a part without
    gradients). One host sync; call it on logged steps only."""
    named = dict(model.named_children())
    named.update(dict(model.named_parameters(recurse=False)))
    seen: set[str] = set()
    norms: dict[str, torch.Tensor | None] = {}
    for part, names in [*PARTS.items(), ("heads", None)]:
        chosen = [n for n in named if (n in names if names else n not in seen)]
        seen.update(chosen)
        grads = []
        for name in chosen:
            item = named[name]
            params = [item] if isinstance(item, torch.nn.Parameter) else item.parameters()
            grads += [torch.linalg.vector_norm(p.grad.detach().float()) for p in params
                      if p.grad is not None]  # fmt: skip
        norms[part] = torch.linalg.vector_norm(torch.stack(grads)) if grads else None
    present = [v for v in norms.values() if v is not None]
    values = iter(torch.stack(present).tolist() if present else [])
    return {f"grad_{part}": (next(values) if v is not None else 0.0) for part, v in norms.items()}


def effective_rank(x: torch.Tensor) -> float:
    """The effective rank of embeddings x (N, D) (Roy and Vetterli, 2007): exp of the entropy of
    the normalised singular values of the centred matrix; 1 when every subject lies on one
    line, min(N, D) when every direction carries as much. NaN for fewer than two rows."""
    if len(x) < 2:
        return float("nan")
    centred = x.float() - x.float().mean(0, keepdim=True)
    s = torch.linalg.svdvals(centred)
    if float(s.sum()) == 0:
        return 1.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))
