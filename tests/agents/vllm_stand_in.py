"""A stand-in for ``vllm.LLM`` with the offline interface the vLLM backend uses, for machines without vLLM or a GPU.

It is not vLLM: it builds a plain transformers model from the engine's config directory with its own random
("dummy") weights, loads weights by their Hugging Face names (refusing unknown and missing ones, as vLLM's
``load_weights`` would leave them wrong), and samples token by token with a per-request seed, reporting
``log softmax(logits / T)`` of each sampled token (vLLM's ``processed_logprobs``). What it checks is the backend's side
of the contract: which weights reach the engine and when, what is asked of it, and what is made of its answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import torch
from transformers import AutoConfig, AutoModelForCausalLM


@dataclass
class StandInParams:
    """The ``SamplingParams`` fields the backend sets (unknown ones are a TypeError, as in vLLM)."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16
    seed: int | None = None
    stop_token_ids: list[int] = field(default_factory=list)
    logprobs: int | None = None
    detokenize: bool = True


class StandInLLM:
    SamplingParams = StandInParams
    drop_stop_token = False  # True: answer like an engine that leaves the stop token out of token_ids
    built: list[StandInLLM] = []

    def __init__(
        self,
        model: str,
        skip_tokenizer_init: bool,
        load_format: str,
        dtype: str,
        gpu_memory_utilization: float,
        seed: int,
        enable_prefix_caching: bool,
    ):
        assert skip_tokenizer_init and load_format == "dummy" and 0 < gpu_memory_utilization < 1
        torch.manual_seed(12345)  # dummy weights, unlike any model under test
        self.model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model)).eval()
        self.model.load_weights = self._load_weights
        self.loads, self.resets, self.requests = 0, 0, []
        StandInLLM.built.append(self)

    def _load_weights(self, weights) -> set[str]:
        own = dict(self.model.named_parameters())
        loaded = set()
        for name, tensor in weights:
            if name not in own:
                raise KeyError(f"the engine's model has no weight {name!r}")
            with torch.no_grad():
                own[name].copy_(tensor)
            loaded.add(name)
        missing = set(own) - loaded
        if missing:
            raise KeyError(f"weights not loaded: {sorted(missing)[:5]}")
        self.loads += 1
        return loaded

    def apply_model(self, func):
        return [func(self.model)]

    def reset_prefix_cache(self) -> None:
        self.resets += 1

    @torch.no_grad()
    def generate(self, prompts: list[dict], sampling_params: list[StandInParams], use_tqdm: bool = True):
        assert len(prompts) == len(sampling_params) and not any(p.detokenize for p in sampling_params)
        self.requests.append((prompts, sampling_params))
        outputs = []
        for prompt, params in zip(prompts, sampling_params):
            assert params.n == 1 and params.top_p == 1.0 and params.logprobs == 0
            ids = list(prompt["prompt_token_ids"])
            generator = torch.Generator().manual_seed(params.seed)
            tokens, logprobs, reason = [], [], "length"
            for _ in range(params.max_tokens):
                logits = self.model(input_ids=torch.tensor([ids + tokens])).logits[0, -1].float()
                scaled = torch.log_softmax(logits / (params.temperature or 1.0), -1)
                if params.temperature == 0:
                    token = int(logits.argmax())
                else:
                    token = int(torch.multinomial(scaled.exp(), 1, generator=generator))
                tokens.append(token)
                logprobs.append({token: SimpleNamespace(logprob=float(scaled[token]))})
                if token in params.stop_token_ids:
                    reason = "stop"
                    break
            stop = None
            if reason == "stop" and self.drop_stop_token:
                stop, tokens, logprobs = tokens[-1], tokens[:-1], logprobs[:-1]
            answer = SimpleNamespace(token_ids=tokens, logprobs=logprobs, finish_reason=reason, stop_reason=stop)
            outputs.append(SimpleNamespace(outputs=[answer]))
        return outputs
