"""The decoder's view of a model: its cache keyword, a preallocated key/value cache, its plain output layer."""

from __future__ import annotations

import inspect

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer


class Preallocated(DynamicLayer):
    """One layer's keys and values in a buffer with room for the tokens still to come, written in place."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
        super().__init__()
        self.kbuf, self.vbuf, self.length = keys, values, length
        self.keys, self.values = keys[:, :, :length], values[:, :, :length]
        self.device, self.is_initialized = keys.device, True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        n = key_states.shape[-2]
        self.kbuf[:, :, self.length : self.length + n] = key_states
        self.vbuf[:, :, self.length : self.length + n] = value_states
        self.length += n
        self.keys, self.values = self.kbuf[:, :, : self.length], self.vbuf[:, :, : self.length]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def select(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (finished rows leave the batch)."""
        self.kbuf, self.vbuf = self.kbuf.index_select(0, rows), self.vbuf.index_select(0, rows)
        self.keys, self.values = self.kbuf[:, :, : self.length], self.vbuf[:, :, : self.length]


def cache_keyword(model: torch.nn.Module) -> str:
    """``cache`` (transformers >= 5.2x) or ``past_key_values``, whichever the model's forward takes."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"


def make_cache(layers: list[DynamicLayer]) -> DynamicCache:
    cache = DynamicCache()
    cache.layers, cache.layer_class_to_replicate = layers, None
    return cache


def plain_head(model: torch.nn.Module) -> torch.nn.Linear | None:
    """The output layer when the logits are a plain linear map of the decoder's last hidden state (no soft-capping,
    no logit scale), so a few vocabulary rows can be scored alone; None otherwise, or when ZeRO-3 keeps only a
    shard of its weight here."""
    config, head = model.config, model.get_output_embeddings()
    plain = (
        type(head) is torch.nn.Linear
        and not getattr(config, "final_logit_softcapping", None)
        and not getattr(config, "logit_scale", None)
        and not hasattr(head.weight, "ds_id")
    )
    return head if plain else None
