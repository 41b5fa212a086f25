"""A tiny Llama that does IOI through a circuit planted in its weights, for calibration.

The residual stream (d = 128) is cut into subspaces, so that who reads what is set by
hand: dim 0 a large constant (it keeps every RMSNorm's scale near fixed, so the model is
close to linear in the small dims), E (dims 1-32) the token embedding, A (33-64) what
the "A" heads write, U (65-96) the only subspace the unembedding reads, J (97-127) junk.
Each token embeds as the constant plus, for a name, a random unit vector e_t in E; the unembedding
row of token t is e_t placed in U, so a head that writes -e_t into U lowers t's logit.

- A = L0H0, L0H1: zero queries, so each attends uniformly to the positions so far;
  its value reads one half of E and writes it, negated, into the same half of A.
- N = L1H0, L1H1: the same, but writing into U: a direct negative copy to the logits.
- B = L2H0, L2H1: queries and keys read the constant through the three fastest rotary
  pairs, so each attends to its own position (score margin > 20 nats over every other
  offset below 64); its value reads one half of A at END and writes it into U.
- Every other head (the distractors) has random queries, keys and values and writes
  into J, which nothing in the circuit reads; MLPs write small noise.

At END the negated uniform copy gives the subject (twice in the prompt) a lower logit
than the indirect object (once): logit(IO) - logit(S) > 0, carried 60 % by the path
A -> B.v at END -> logits and 40 % by N -> logits. Small Gaussian noise (``noise``) on
every weight makes the circuit approximate, as in a trained model: the distractors then
leak a little into U, so F of the true circuit is near, not at, 1.

The true hypothesis names exactly these groups and edges (tests/verification/test_calibration.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from helpers.factories import IOI_WORDS, word_tokenizer

D, N_HEADS, D_HEAD, N_LAYERS = 128, 8, 16, 3
CONST, E, A, U, J = 0, slice(1, 33), slice(33, 65), slice(65, 97), slice(97, 128)
K_CONST = 32.0
U_NORM = 4.0  # the final norm's weight on U: logits read U at about 1.4 times its size
GAIN_A, GAIN_B, GAIN_N = 4.0, 4.5, 12.0  # the path through B carries 18 / 30, N 12 / 30


def _half(space: slice, h: int) -> slice:
    return slice(space.start + 16 * h, space.start + 16 * (h + 1))


def save_planted(path: Path, seed: int = 0, noise: float = 0.02) -> Path:
    """Build the planted model with distractor and noise weights from ``seed``; save it."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    path.mkdir(parents=True, exist_ok=True)
    tokenizer = word_tokenizer(path)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=D, intermediate_size=64,
                         num_hidden_layers=N_LAYERS, num_attention_heads=N_HEADS, num_key_value_heads=N_HEADS,
                         max_position_embeddings=64, rms_norm_eps=1e-6, bos_token_id=0, eos_token_id=0,
                         tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    with torch.no_grad():
        for p in model.parameters():
            p.copy_(noise * randn(*p.shape) if p.dim() >= 2 else torch.ones_like(p))
            if p.dim() >= 2 and p.shape[1] == D:
                p[:, CONST] = 0  # no reader picks up the constant: it would be a prompt-independent offset
        emb = model.model.embed_tokens.weight
        vectors = randn(emb.shape[0], 32)
        vectors /= vectors.norm(dim=1, keepdim=True)
        names = IOI_WORDS[IOI_WORDS.index("John"):IOI_WORDS.index("Zoe") + 1]
        is_name = torch.zeros(emb.shape[0], 1)
        for name in names:
            is_name[tokenizer.convert_tokens_to_ids("\u0120" + name)] = 1
        vectors *= is_name  # only names embed in E: other words would only add cross-talk
        emb[:, CONST] = K_CONST
        model.model.norm.weight[U] = U_NORM
        emb[:, E] += vectors
        model.lm_head.weight[:, U] += vectors
        scale = K_CONST / math.sqrt(D)  # RMSNorm divides by about this: undo it in the readers
        for L, layer in enumerate(model.model.layers):
            attn = layer.self_attn
            for h in range(N_HEADS):
                rows = slice(h * D_HEAD, (h + 1) * D_HEAD)
                q, k, v, o = (attn.q_proj.weight[rows], attn.k_proj.weight[rows], attn.v_proj.weight[rows],
                              attn.o_proj.weight[:, rows])
                if h >= 2:  # a distractor: active, writing into J only
                    q += 0.3 * randn(*q.shape)
                    k += 0.3 * randn(*k.shape)
                    v += 0.1 * randn(*v.shape)
                    o[J] += 0.05 * randn(J.stop - J.start, D_HEAD)
                    continue
                eye = torch.eye(16) * scale
                if L in (0, 1):  # A and N: uniform attention, negative copy of one half of E
                    v[:, _half(E, h)] += eye
                    o[_half(A if L == 0 else U, h)] -= torch.eye(16) * (GAIN_A if L == 0 else GAIN_N)
                else:  # B: attends to itself, relays one half of A into U
                    for pair in range(3):
                        q[pair, CONST] += 16.0 / math.sqrt(D)
                        k[pair, CONST] += 16.0 / math.sqrt(D)
                    v[:, _half(A, h)] += eye
                    o[_half(U, h)] += torch.eye(16) * GAIN_B
    model.save_pretrained(path)
    return path

