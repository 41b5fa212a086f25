"""ACDC's ``edges.pkl`` (ArthurConmy/Automatic-Circuit-Discovery ``TLACDCExperiment.save_edges``).

A pickled list of the circuit's present edges::

    [((child_hook, child_index, parent_hook, parent_index), effect_size), ...]

over TransformerLens hook names, each index a ``TorchIndex`` (``[None]`` for a
whole activation, ``[None, None, h]`` for head ``h``):

- senders: ``blocks.0.hook_resid_pre`` (or ``hook_embed``/``hook_pos_embed``)
  for the input, ``blocks.L.attn.hook_result`` [h], ``blocks.L.hook_mlp_out``;
- receivers: ``blocks.L.hook_{q,k,v}_input`` [h] (one per query head: ACDC builds
  them for ``range(n_heads)``), ``blocks.L.hook_mlp_in`` (older runs:
  ``hook_resid_mid``), ``blocks.{n_layers-1}.hook_resid_post`` for the logits;
- direct-computation edges inside a head, ``hook_q_input -> attn.hook_q``, which
  say nothing about the circuit's wiring and are dropped on import.

``effect_size`` is ACDC's measured change in its metric, or None when untested.
There are no token positions.

Unpickling needs ACDC's ``TorchIndex`` class. :class:`TorchIndex` here is a
stand-in with the same state (``as_index``, ``hashable_tuple``), and
:class:`_Unpickler` resolves only it, ``slice`` and what a 0-d tensor effect needs
(torch's tensor rebuild, with the storage bytes loaded ``weights_only=True``): any
other global (``os.system``, ``builtins.eval``, ...) is refused before it can run.
"""

from __future__ import annotations

import collections
import contextlib
import copyreg
import io
import pickle
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from circuitspec.errors import FormatError
from circuitspec.formats.graph import (
    GraphEdge,
    GraphShape,
    Note,
    ScoredGraph,
    component,
    parse_component,
)
from circuitspec.output.atomic import atomic_write_bytes

__all__ = ["TorchIndex", "read", "write"]

_ACDC_MODULE = "acdc.TLACDCEdge"


class TorchIndex:
    """Stand-in for ACDC's ``TorchIndex``: an index like ``[:, :, 3]`` kept as ``[None, None, 3]``."""

    def __init__(self, items: list[Any]):
        self.as_index = tuple(slice(None) if x is None else x for x in items)
        self.hashable_tuple = tuple(items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TorchIndex) and self.hashable_tuple == other.hashable_tuple

    def __hash__(self) -> int:
        return hash(self.hashable_tuple)

    def __repr__(self) -> str:
        return "[" + ", ".join(":" if x is None else str(x) for x in self.hashable_tuple) + "]"

    @property
    def head(self) -> int | None:
        t: tuple[Any, ...] = getattr(self, "hashable_tuple", ())
        return t[2] if len(t) == 3 and isinstance(t[2], int) else None


def _storage_from_bytes() -> Any:
    """torch's own ``torch.storage._load_from_bytes`` runs an *unrestricted* torch.load on
    the embedded bytes; this stand-in loads them with ``weights_only=True``."""
    import torch

    def load(blob: bytes) -> Any:
        return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)

    return load


def _rebuild_tensor() -> Any:
    import torch._utils

    return torch._utils._rebuild_tensor_v2


# ACDC's metrics return 0-d tensors, so a real edges.pkl pickles each effect size as a
# tensor: a rebuild function (on torch's own weights_only allow-list), an OrderedDict of
# backward hooks (empty), and the storage bytes, loaded here with weights_only=True.
_TORCH = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,
}


class _Unpickler(pickle.Unpickler):
    """Resolves ACDC's TorchIndex to the stand-in and slice/object to themselves; nothing else."""

    _ALLOWED: dict[tuple[str, str], Any] = {
        (_ACDC_MODULE, "TorchIndex"): TorchIndex,
        ("TLACDCEdge", "TorchIndex"): TorchIndex,
        ("builtins", "slice"): slice,
        ("__builtin__", "slice"): slice,
        ("builtins", "object"): object,
        ("copyreg", "_reconstructor"): vars(copyreg)["_reconstructor"],
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _TORCH:
            return _TORCH[(module, name)]()
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to load {module}.{name}: an ACDC edges.pkl holds only edges "
                "(hook names, TorchIndex, numbers)") from None


_HEAD_OUT = re.compile(r"^blocks\.(\d+)\.attn\.hook_result$")
_MLP_OUT = re.compile(r"^blocks\.(\d+)\.hook_mlp_out$")
_QKV_IN = re.compile(r"^blocks\.(\d+)\.hook_([qkv])_input$")
_MLP_IN = re.compile(r"^blocks\.(\d+)\.hook_(?:mlp_in|resid_mid)$")
_RESID_POST = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")
_INTERNAL = re.compile(r"^blocks\.(\d+)\.(?:attn\.hook_[qkv]|attn\.hook_result|hook_mlp_out)$")
_INPUTS = ("blocks.0.hook_resid_pre", "hook_embed", "hook_pos_embed")


def _head(index: Any, hook: str, source: str) -> int:
    head = index.head if isinstance(index, TorchIndex) else None
    if head is None:
        raise FormatError(f"{source}: {hook} needs a head index like [None, None, 3], "
                          f"got {index!r}")
    return head


def _sender(hook: str, index: Any, source: str) -> str | None:
    if hook in _INPUTS:
        return "input"
    if m := _HEAD_OUT.match(hook):
        return component("head", int(m.group(1)), _head(index, hook, source))
    if m := _MLP_OUT.match(hook):
        return component("mlp", int(m.group(1)))
    return None


def read(path: Path) -> ScoredGraph:
    """Read an ACDC ``edges.pkl`` with the restricted unpickler."""
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FormatError(f"{source}: cannot read file ({exc.strerror})") from None
    try:
        data = _Unpickler(io.BytesIO(raw)).load()
    except pickle.UnpicklingError as exc:
        raise FormatError(f"{source}: not an ACDC edges.pkl: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any malformed stream is the user's file's fault
        raise FormatError(f"{source}: not an ACDC edges.pkl ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, list):
        raise FormatError(f"{source}: an ACDC edges.pkl is a list of ((child, index, parent, "
                          f"index), effect) pairs, not a {type(data).__name__}")
    edges: list[GraphEdge] = []
    internal = embeds = 0
    last_layer: int | None = None
    for i, item in enumerate(data):
        try:
            (child, child_index, parent, parent_index), effect = item
        except (TypeError, ValueError):
            raise FormatError(f"{source}: item {i} is not ((child_hook, child_index, parent_hook, "
                              f"parent_index), effect): {item!r}"[:300]) from None
        if not isinstance(child, str) or not isinstance(parent, str):
            raise FormatError(f"{source}: item {i}: hook names must be strings")
        if hasattr(effect, "numel") and effect.numel() == 1:
            effect = float(effect)  # ACDC's 0-d tensor
        if effect is not None and (not isinstance(effect, int | float) or isinstance(effect, bool)):
            raise FormatError(f"{source}: item {i}: effect must be a number or None, not {effect!r}")
        if _INTERNAL.match(child):
            internal += 1  # q/k/v input -> q/k/v, or ACDC's placeholders inside a head or MLP
            continue
        src = _sender(parent, parent_index, source)
        if src is None:
            raise FormatError(f"{source}: item {i}: unknown sender hook {parent!r}")
        embeds += parent in ("hook_embed", "hook_pos_embed")
        score = None if effect is None else float(effect)
        if m := _QKV_IN.match(child):
            dst = component("head", int(m.group(1)), _head(child_index, child, source))
            edges.append(GraphEdge(src, dst, m.group(2), score))  # type: ignore[arg-type]
        elif m := _MLP_IN.match(child):
            edges.append(GraphEdge(src, component("mlp", int(m.group(1))), None, score))
        elif m := _RESID_POST.match(child):
            last_layer = int(m.group(1))
            edges.append(GraphEdge(src, "logits", None, score))
        else:
            raise FormatError(f"{source}: item {i}: unknown receiver hook {child!r}")
    notes = [Note("lost", "ACDC edges have no token positions: an edge stands for every position "
                          "at once")]
    if internal:
        notes.append(Note("lost", "ACDC's direct-computation edges inside heads (hook_q_input -> "
                                  "hook_q, ...) dropped: they are not wiring between components",
                          internal))
    if embeds:
        notes.append(Note("lost", "token- and position-embedding senders (hook_embed, "
                                  "hook_pos_embed) both read as the input", embeds))
    shape = GraphShape(n_layers=None if last_layer is None else last_layer + 1)
    return ScoredGraph(source, "acdc", tuple(edges), shape, tuple(notes),
                       has_membership=True, has_scores=any(e.score is not None for e in edges))


def _hooks(edge: GraphEdge, n_layers: int) -> tuple[str, TorchIndex, str, TorchIndex]:
    skind, slayer, shead = parse_component(edge.src)
    if skind == "input":
        parent, pidx = "blocks.0.hook_resid_pre", TorchIndex([None])
    elif skind == "head":
        parent, pidx = f"blocks.{slayer}.attn.hook_result", TorchIndex([None, None, shead])
    else:
        parent, pidx = f"blocks.{slayer}.hook_mlp_out", TorchIndex([None])
    dkind, dlayer, dhead = parse_component(edge.dst)
    if dkind == "head":
        child, cidx = f"blocks.{dlayer}.hook_{edge.via}_input", TorchIndex([None, None, dhead])
    elif dkind == "mlp":
        child, cidx = f"blocks.{dlayer}.hook_mlp_in", TorchIndex([None])
    else:
        child, cidx = f"blocks.{n_layers - 1}.hook_resid_post", TorchIndex([None])
    return child, cidx, parent, pidx


@contextlib.contextmanager
def _as_acdc_class() -> Iterator[None]:
    """Pickle the stand-in under ACDC's own name, so ACDC unpickles it as its TorchIndex.

    pickle records a class by module and name and checks it can import them; the
    module exists only while writing, and only when ACDC itself is not installed.
    """
    if "acdc" in sys.modules or "acdc.TLACDCEdge" in sys.modules:
        raise FormatError("writing edges.pkl with ACDC imported in the same process is not "
                          "supported; run circuitspec export in its own process")
    package, module = types.ModuleType("acdc"), types.ModuleType(_ACDC_MODULE)
    module.TorchIndex = TorchIndex  # type: ignore[attr-defined]
    package.TLACDCEdge = module  # type: ignore[attr-defined]
    saved = TorchIndex.__module__
    sys.modules["acdc"], sys.modules[_ACDC_MODULE] = package, module
    TorchIndex.__module__ = _ACDC_MODULE
    try:
        yield
    finally:
        TorchIndex.__module__ = saved
        del sys.modules[_ACDC_MODULE], sys.modules["acdc"]


def write(graph: ScoredGraph, path: Path) -> Path:
    """Write the graph's in-circuit edges as ACDC's edges list, with the direct-computation
    edge (``hook_X_input -> attn.hook_X``) of every head input that receives one."""
    n_layers = graph.shape.n_layers
    assert n_layers is not None
    items: list[tuple[tuple[str, TorchIndex, str, TorchIndex], float | None]] = []
    inputs = set()
    for e in graph.edges:
        if not e.in_graph:
            continue
        items.append((_hooks(e, n_layers), e.score if e.has_score else None))
        kind, layer, head = parse_component(e.dst)
        if kind == "head":
            inputs.add((layer, head, e.via))
    for layer, head, via in sorted(inputs):
        idx = TorchIndex([None, None, head])
        items.append(((f"blocks.{layer}.attn.hook_{via}", idx, f"blocks.{layer}.hook_{via}_input",
                       idx), None))
    with _as_acdc_class():
        blob = pickle.dumps(items, protocol=4)
    return atomic_write_bytes(path, blob)
