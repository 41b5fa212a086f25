"""Grouped-query models with every query head given its own key/value projections.

MIB's graph gives each query head its own k and v inputs (TransformerLens's
``ungroup_grouped_query_attention``), but a grouped-query model shares one key/value
input between the query heads of a group, so an edge into one query head's k cannot be
cut alone. The ungrouped copy repeats each key/value head's projection rows for every
query head that reads it. HF's attention repeats the projected keys and values the same
way (``repeat_kv``), so the copy computes exactly what the original does, and its
``hook_k_input``/``hook_v_input`` are per query head.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

from circuitspec.bridge.boot import boot_bridge
from circuitspec.bridge.loading import PACKAGED, LoadedModel, converted_dir, resolve_kind

__all__ = ["ungrouped"]

_KEY = "scoring.ungrouped"


def ungrouped(model: LoadedModel) -> LoadedModel:
    """``model`` itself without grouped-query attention; else its ungrouped copy (made once,
    kept in ``model.extra``)."""
    info = model.info
    if info.group_size == 1:
        return model
    if _KEY in model.extra:
        return model.extra[_KEY]
    import torch
    from transformers import AutoModelForCausalLM

    # The bridge rewrites its HF model's weights in place (compatibility mode), so the
    # copy starts from the checkpoint, loaded as load_model loads it.
    kind = resolve_kind(model.reference)
    where: str | Path = {"alias": converted_dir(model.reference),
                         "local": Path(model.reference).expanduser()}.get(kind, model.reference)
    name = PACKAGED[model.reference].hf_name if kind == "alias" else str(where)
    dtype = next(model.bridge.original_model.parameters()).dtype
    hf = AutoModelForCausalLM.from_pretrained(where, revision=model.revision, dtype=dtype)
    config = copy.deepcopy(hf.config)
    config.num_key_value_heads = info.n_heads
    state = hf.state_dict()
    for key, value in list(state.items()):
        if key.endswith(("k_proj.weight", "v_proj.weight", "k_proj.bias", "v_proj.bias")):
            rows = value.reshape(info.n_kv_heads, info.d_head, *value.shape[1:])
            state[key] = rows.repeat_interleave(info.group_size, dim=0).reshape(
                info.n_heads * info.d_head, *value.shape[1:])
    copy_ = AutoModelForCausalLM.from_config(config, dtype=dtype)
    copy_.load_state_dict(state)
    copy_.eval()
    device = str(next(model.bridge.original_model.parameters()).device)
    with torch.no_grad():
        bridge = boot_bridge(name, copy_, model.tokenizer, device=device, dtype=dtype)
    out = dataclasses.replace(model, bridge=bridge, info=dataclasses.replace(info, n_kv_heads=info.n_heads),
                              extra={})
    model.extra[_KEY] = out
    return out
