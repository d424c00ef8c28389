"""Small example models, built deterministically in code (no download).

`TinyBert` is written with the idioms HuggingFace's BERT uses, because those are what break ONNX
importers: word + position + token-type embeddings, an extended attention mask broadcast through
unsqueeze/expand and applied with `masked_fill`/`where`, erf-GELU, LayerNorm and dropout (inactive in
eval). The MLP and CNN cover Gemm and Conv layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 1000
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    ffn: int = 256
    max_positions: int = 64
    type_vocab_size: int = 2
    dropout: float = 0.1


class BertEmbeddings(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden)
        self.position_embeddings = nn.Embedding(c.max_positions, c.hidden)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden)
        self.LayerNorm = nn.LayerNorm(c.hidden, eps=1e-12)
        self.dropout = nn.Dropout(c.dropout)
        self.register_buffer("position_ids", torch.arange(c.max_positions).expand((1, -1)), persistent=False)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        seq_len = input_ids.size(1)
        position_ids = self.position_ids[:, :seq_len]
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.heads, self.head_dim = c.heads, c.hidden // c.heads
        self.query = nn.Linear(c.hidden, c.hidden)
        self.key = nn.Linear(c.hidden, c.hidden)
        self.value = nn.Linear(c.hidden, c.hidden)
        self.dropout = nn.Dropout(c.dropout)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        new_shape = x.size()[:-1] + (self.heads, self.head_dim)
        return x.view(new_shape).permute(0, 2, 1, 3)

    def forward(self, x: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split_heads(self.query(x)), self.split_heads(self.key(x)), self.split_heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(blocked, torch.finfo(scores.dtype).min)
        probs = self.dropout(nn.functional.softmax(scores, dim=-1))
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        return ctx.view(ctx.size()[:-2] + (self.heads * self.head_dim,))


class BertLayer(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.attention = BertSelfAttention(c)
        self.attention_output = nn.Linear(c.hidden, c.hidden)
        self.attention_norm = nn.LayerNorm(c.hidden, eps=1e-12)
        self.intermediate = nn.Linear(c.hidden, c.ffn)
        self.output = nn.Linear(c.ffn, c.hidden)
        self.output_norm = nn.LayerNorm(c.hidden, eps=1e-12)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
        a = self.attention_norm(x + self.dropout(self.attention_output(self.attention(x, blocked))))
        h = nn.functional.gelu(self.intermediate(a))  # exact (erf) GELU, as BERT
        return self.output_norm(a + self.dropout(self.output(h)))


class TinyBert(nn.Module):
    """A BERT-style encoder: inputs (input_ids, attention_mask, token_type_ids), output hidden states."""

    def __init__(self, c: BertConfig = BertConfig()):
        super().__init__()
        self.config = c
        self.embeddings = BertEmbeddings(c)
        self.layers = nn.ModuleList(BertLayer(c) for _ in range(c.layers))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        batch, seq_len = input_ids.shape
        # The extended mask, HuggingFace style: [B, S] -> [B, 1, 1, S] -> expand to [B, 1, S, S].
        extended = attention_mask[:, None, None, :].expand(batch, 1, seq_len, seq_len)
        blocked = extended == 0
        x = self.embeddings(input_ids, token_type_ids)
        for layer in self.layers:
            x = layer(x, blocked)
        return x


class Mlp(nn.Module):
    def __init__(self, sizes: tuple[int, ...] = (64, 256, 64)):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = nn.functional.gelu(x)
        return x


class SmallCnn(nn.Module):
    """3x3 convs (plain, strided, depthwise), a 1x1 conv, pooling and a classifier."""

    def __init__(self, channels: int = 8, classes: int = 10):
        super().__init__()
        c = channels
        self.features = nn.Sequential(
            nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c), nn.ReLU(),
            nn.Conv2d(2 * c, 2 * c, 1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(2 * c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def _seeded(module: nn.Module, seed: int) -> nn.Module:
    """Re-draw every parameter from one seed, so the same call gives the same weights everywhere."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
            elif p.dim() == 1:  # norm scales
                p.copy_(1.0 + torch.randn(p.shape, generator=g) * 0.05)
            else:
                fan_in = p[0].numel() if p.dim() > 1 else p.numel()
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return module.eval()


def tiny_bert(config: BertConfig = BertConfig(), seed: int = 0) -> TinyBert:
    return _seeded(TinyBert(config), seed)


def mlp(sizes: tuple[int, ...] = (64, 256, 64), seed: int = 0) -> Mlp:
    return _seeded(Mlp(sizes), seed)


def small_cnn(channels: int = 8, seed: int = 0) -> SmallCnn:
    return _seeded(SmallCnn(channels), seed)


def bert_inputs(config: BertConfig = BertConfig(), batch: int = 2, seq_len: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """Token ids, a padding mask (the last positions of the second sequence are padding) and segment ids."""
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, seq_len), dtype=np.int64)
    if batch > 1:
        mask[1, seq_len * 3 // 4:] = 0
    types = np.zeros((batch, seq_len), dtype=np.int64)
    types[:, seq_len // 2:] = 1
    return {
        "input_ids": rng.integers(0, config.vocab_size, (batch, seq_len), dtype=np.int64),
        "attention_mask": mask,
        "token_type_ids": types,
    }
