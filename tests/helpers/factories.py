"""Tiny random-weight models of each supported family, saved to disk and loaded back.

They go through the same ``load_model`` path as a hub id or local checkpoint, so
the tests exercise real loading code. The tokenizer is word-level over the IOI
vocabulary (with GPT-2 style leading-space markers), so every name is one token.
"""

from __future__ import annotations

from pathlib import Path

import torch

IOI_WORDS = (
    "When Then After While Afterwards Friends The , . to the a an and went at had gave "
    "said decided get were working found took give store garden restaurant school hospital "
    "office house station shops park bag ball drink apple bottle milk ring kiss necklace "
    "snack computer basketball bone drink fun lot long argument day party thought it "
    "John Mary Tom James Dan Sid Martin Amy Anna Bob Carl Dave Eve Fred Gina Hugo Ivy Jack "
    "Kate Leo Mia Ned Olga Paul Rose Sam Tina Uma Vic Wendy Xena Yuri Zoe "
    "tired of and were ready to lunch dinner kitchen beach then with bought for having"
).split()


def word_tokenizer(path: Path):
    """A PreTrainedTokenizerFast whose words (with and without leading space) are single tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {"<bos>": 0, "<unk>": 1, "<pad>": 2}
    for word in dict.fromkeys(IOI_WORDS):
        for form in (word, "\u0120" + word):
            vocab.setdefault(form, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", unk_token="<unk>", pad_token="<pad>"
    )
    fast.save_pretrained(path)
    return fast


def _config(family: str, vocab_size: int):
    from transformers import Gemma3TextConfig, GPT2Config, GPTNeoXConfig, LlamaConfig

    if family == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size, n_positions=64, n_embd=32, n_layer=3, n_head=4,
            bos_token_id=0, eos_token_id=0,
        )
    if family == "neox":
        return GPTNeoXConfig(
            vocab_size=vocab_size, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=64, rotary_pct=0.25,
            use_parallel_residual=True, bos_token_id=0, eos_token_id=0,
        )
    if family == "gemma3":
        # Gemma 3's block: q/k norms, sandwich norms around attention and MLP, a
        # query scale that is not 1/sqrt(d_head), and local (sliding-window) layers
        # with their own rotary base beside global ones. The window is shorter than
        # the long test prompts, so the local layers really mask.
        return Gemma3TextConfig(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=12,
            layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
            sliding_window=8, max_position_embeddings=64,
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10.0},
                "full_attention": {"rope_type": "default", "rope_theta": 10000.0},
            },
            bos_token_id=0, eos_token_id=0, pad_token_id=2, tie_word_embeddings=True,
        )
    if family == "llama":
        return LlamaConfig(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
            bos_token_id=0, eos_token_id=0, tie_word_embeddings=False,
        )
    raise ValueError(family)


FAMILIES = ("gpt2", "neox", "llama")  # the shared ``tiny_models`` fixture; gemma3 has its own


def save_tiny_model(family: str, path: Path, seed: int = 0) -> Path:
    """Build a tiny random model of ``family`` and save model and tokenizer under ``path``."""
    from transformers import AutoModelForCausalLM

    path.mkdir(parents=True, exist_ok=True)
    tokenizer = word_tokenizer(path)
    torch.manual_seed(seed)
    config = _config(family, len(tokenizer))
    model = AutoModelForCausalLM.from_config(config)
    # Larger than default init so that heads matter and patching effects are visible.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.3)
            elif family == "gemma3" and name.endswith("norm.weight"):
                param.normal_(0.0, 0.3)  # Gemma scales by 1 + w: zero weights would hide the norms
    model.save_pretrained(path)
    return path
