"""MIB's edge-level circuit evaluation: the input embedding and every MLP are graph nodes.

circuitspec's own scores keep the embeddings clean and run every MLP; MIB (and EAP-IG's
``evaluate_graph``) do not. Here the graph is EAP-IG's: forward nodes ``input``, every
head, every MLP; backward nodes every head's q, k and v input, every MLP's input, the
logits. A circuit is a set of edges. On the clean prompts, each receiver's input is its
clean-run input with every *excluded* parent's output swapped for that parent's output
on the paired corrupted prompt (patching, MIB's default intervention); included
parents pass their output in this very run. So an edge absent from the circuit carries
corrupted signal, and only the circuit's edges carry clean signal.

faithfulness = (m(C) - m(empty)) / (m(M) - m(empty)), m the mean logit difference at
END; m(M) is the clean run (every edge kept) and m(empty) the corrupted one (no edge
kept: every input is rebuilt from corrupted outputs).

On grouped-query models MIB's graph gives every query head its own k and v inputs
(TransformerLens's ``ungroup_grouped_query_attention``); the evaluation runs on an
ungrouped copy of the model (:mod:`circuitspec.scoring.ungroup`) that computes the same
function, so an edge into one query head's k is cut for that head alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circuitspec.data.dataset import Dataset
from circuitspec.formats.convert import READERS, check_format
from circuitspec.formats.eap_ig import (
    backward_nodes,
    forward_nodes,
    from_eap,
    is_real,
    parse_edge_name,
)
from circuitspec.formats.graph import check_fits, select_edges
from circuitspec.scoring.ungroup import ungrouped

__all__ = ["MibScore", "all_edges", "mib_faithfulness", "mib_metric", "score_file"]

EdgeKey = tuple[str, str, str | None]


@dataclass(frozen=True)
class MibScore:
    """MIB's faithfulness of one circuit, with the three metrics it is made of."""

    faithfulness: float
    """(m(C) - m(empty)) / (m(M) - m(empty))."""
    circuit: float
    """m(C): mean logit difference with only the circuit's edges clean."""
    empty: float
    """m(empty): no edge kept (the corrupted run)."""
    model: float
    """m(M): every edge kept (the clean run)."""
    per_prompt: tuple[float, ...]
    """m(C) per prompt."""


def _masks(info: Any, edges: Iterable[EdgeKey], parallel: bool) -> tuple[Any, list[str], list]:
    """[n_forward, n_backward] 1.0 where a real edge is *excluded* from the circuit."""
    import torch

    srcs = [from_eap(n) for n in forward_nodes(info.n_layers, info.n_heads)]
    dsts = [parse_edge_name(f"input->{n}", "<graph>")[1:] for n in backward_nodes(info.n_layers, info.n_heads)]
    keep = set(edges)
    mask = torch.zeros(len(srcs), len(dsts))
    for i, src in enumerate(srcs):
        for j, (dst, via) in enumerate(dsts):
            if is_real(src, dst, parallel) and (src, dst, via) not in keep:
                mask[i, j] = 1.0
    return mask, srcs, dsts


def mib_metric(model: Any, dataset: Dataset, edges: Iterable[EdgeKey]) -> list[float]:
    """Per-prompt logit difference at END with only ``edges`` carrying clean signal."""
    import torch

    model = ungrouped(model)  # every query head its own k and v inputs, as in MIB's graph
    info, bridge = model.info, model.bridge
    parallel = bool(getattr(bridge.cfg, "parallel_attn_mlp", False))
    mask, srcs, dsts = _masks(info, edges, parallel)
    out = [0.0] * len(dataset)
    for rows in dataset.length_groups():
        clean = torch.tensor([dataset.clean[i] for i in rows])
        corrupt = torch.tensor([dataset.corrupt[i] for i in rows])
        logits = _patched_logits(model, mask, srcs, dsts, clean, corrupt)
        b = clean.shape[0]
        end = torch.tensor([dataset.positions["END"][i] for i in rows])
        last = logits[torch.arange(b), end]
        for k, i in enumerate(rows):
            out[i] = float(last[k, dataset.correct[i]] - last[k, dataset.incorrect[i]])
    return out


def _patched_logits(model: Any, mask: Any, srcs: list[str], dsts: list, clean: Any,
                    corrupt: Any) -> Any:
    """Logits [batch, pos, vocab] of the clean batch with excluded edges carrying corrupted
    outputs: a corrupted run records every node's output, then the clean run records its own
    and adds (corrupted - own) of each excluded parent at every receiver's input."""
    import torch

    info, bridge = model.info, model.bridge
    n_heads = info.n_heads
    col = {key: j for j, key in enumerate(dsts)}
    head_row = {(int(s[1:].split("H")[0]), int(s.split("H")[1])): i for i, s in enumerate(srcs)
                if s.startswith("L")}
    mlp_row = {int(s[3:]): i for i, s in enumerate(srcs) if s.startswith("MLP")}
    b, p = clean.shape
    diff = torch.zeros(b, p, len(srcs), info.d_model)  # corrupted - this run's outputs

    def record(sign: float, kind: str, layer: int = 0) -> Any:
        def hook(x: Any, hook: Any) -> Any:
            if kind == "input":
                diff[:, :, 0] += sign * x.detach()
            elif kind == "head":
                first = head_row[(layer, 0)]
                diff[:, :, first:first + n_heads] += sign * x.detach()
            else:
                diff[:, :, mlp_row[layer]] += sign * x.detach()
            return x
        return hook

    def rebuild(keys: list[tuple[str, str | None]]) -> Any:
        cols = [col[k] for k in keys]
        sub = mask[:, cols]  # [n_forward, n_receivers]

        def hook(x: Any, hook: Any) -> Any:
            update = torch.einsum("bpfd,fr->bprd", diff, sub)
            if x.dim() == 4:
                return x + update.to(x.dtype)
            return x + update[:, :, 0].to(x.dtype)
        return hook

    corrupt_hooks: list[tuple[str, Any]] = [("hook_embed", record(1.0, "input"))]
    clean_hooks: list[tuple[str, Any]] = [("hook_embed", record(-1.0, "input"))]
    for layer in range(info.n_layers):
        corrupt_hooks += [(f"blocks.{layer}.attn.hook_result", record(1.0, "head", layer)),
                          (f"blocks.{layer}.hook_mlp_out", record(1.0, "mlp", layer))]
        clean_hooks += [
            (f"blocks.{layer}.hook_q_input", rebuild([(f"L{layer}H{h}", "q") for h in range(n_heads)])),
            (f"blocks.{layer}.hook_k_input", rebuild([(f"L{layer}H{h}", "k") for h in range(n_heads)])),
            (f"blocks.{layer}.hook_v_input", rebuild([(f"L{layer}H{h}", "v") for h in range(n_heads)])),
            (f"blocks.{layer}.attn.hook_result", record(-1.0, "head", layer)),
            (f"blocks.{layer}.hook_mlp_in", rebuild([(f"MLP{layer}", None)])),
            (f"blocks.{layer}.hook_mlp_out", record(-1.0, "mlp", layer)),
        ]
    clean_hooks.append(("ln_final.hook_in", rebuild([("logits", None)])))
    with torch.no_grad(), _mlp_in_hooks(bridge):
        bridge.run_with_hooks(corrupt, fwd_hooks=corrupt_hooks)
        logits = bridge.run_with_hooks(clean, fwd_hooks=clean_hooks)
    return logits


@contextlib.contextmanager
def _mlp_in_hooks(bridge: Any) -> Iterator[None]:
    """The MLP-input hook switched on for the run, and back off (as it was) after."""
    before = bool(getattr(bridge.cfg, "use_hook_mlp_in", False))
    bridge.set_use_hook_mlp_in(True)
    try:
        yield
    finally:
        bridge.set_use_hook_mlp_in(before)


def all_edges(info: Any, parallel: bool) -> list[EdgeKey]:
    """Every real edge of the model's graph."""
    srcs = [from_eap(n) for n in forward_nodes(info.n_layers, info.n_heads)]
    dsts = [parse_edge_name(f"input->{n}", "<graph>")[1:] for n in backward_nodes(info.n_layers, info.n_heads)]
    return [(s, d, v) for s in srcs for d, v in dsts if is_real(s, d, parallel)]


def mib_faithfulness(model: Any, dataset: Dataset, edges: Iterable[EdgeKey]) -> MibScore:
    """MIB's faithfulness of the circuit ``edges`` ((src, dst, via) in circuitspec names)."""
    parallel = bool(getattr(model.bridge.cfg, "parallel_attn_mlp", False))
    per = mib_metric(model, dataset, edges)
    empty = mib_metric(model, dataset, [])
    full = mib_metric(model, dataset, all_edges(model.info, parallel))
    m_c, m_0, m_m = (sum(x) / len(x) for x in (per, empty, full))
    return MibScore((m_c - m_0) / (m_m - m_0), m_c, m_0, m_m, tuple(per))


def score_file(path: Path, fmt: str, model: Any, dataset: Dataset, *, top_k: int | None = None,
               threshold: float | None = None, in_graph: bool = False) -> tuple[MibScore, int]:
    """MIB's faithfulness of the circuit in a graph file (any import format); also the number
    of edges scored. Unlike ``circuitspec import`` nothing is dropped: input and MLP edges are
    graph edges here."""
    graph = READERS[check_format(fmt)](path)
    check_fits(graph, model.info.n_layers, model.info.n_heads, model.info.name)
    edges, _ = select_edges(graph, top_k=top_k, threshold=threshold, in_graph=in_graph)
    return mib_faithfulness(model, dataset, [e.key for e in edges]), len(edges)
