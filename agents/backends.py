"""The other ways an ``LLMAgent`` samples besides the native decoder: a colocated vLLM engine (``backend=vllm``) and
transformers' ``generate`` with a static KV cache and compiled decoding (``cache=static``). Each returns the same
completions as the decoder: token ids, and the log-probabilities training uses, exact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from selfplay.agents.base import Completion
from selfplay.agents.device_io import power_of_two
from selfplay.agents.prompts import decode_texts
from selfplay.agents.scoring import allowed_mask, left_pad, token_logprobs
from selfplay.agents.token_sampling import next_allowed, through_stop

if TYPE_CHECKING:  # the agent calls these; only its type is needed here
    from selfplay.agents.llm import LLMAgent


def generate_vllm(agent: LLMAgent, prompts: list[list[int]]) -> list[Completion]:
    """Sample with the colocated vLLM engine (synchronised to this agent's weights first), then score the tokens
    with this agent's own model: the log-probabilities training uses are the teacher-forced ones."""
    from selfplay.agents.vllm_backend import engine_for

    s, tok = agent.sampling, agent.tokenizer
    engine = engine_for(agent.model, s.vllm_memory, s.seed, agent.engine_factory)
    engine.sync(agent.model, agent.adapter)
    call, agent.calls = agent.calls, agent.calls + 1
    seeds = [hash((s.seed, call, i)) & 0x7FFFFFFF for i in range(len(prompts))]  # reproducible, fresh per call
    rows = engine.generate(
        prompts, s.max_new_tokens, temperature=s.temperature, top_p=s.top_p, seeds=seeds, stop_ids=agent.stop_ids
    )
    tokens = [agent._until_stop(t) for t, _ in rows]
    with agent._adapter():
        exact = token_logprobs(agent.model, prompts, tokens, tok.pad_token_id, temperature=s.temperature or 1.0)
    return [
        Completion(
            text,
            prompt_ids=list(p),
            completion_ids=t,
            logprobs=x.tolist(),
            temperature=s.temperature,
            meta={"engine_logprobs": lp[: len(t)]},
        )
        for p, t, x, (_, lp), text in zip(prompts, tokens, exact, rows, decode_texts(tok, tokens))
    ]


def generate_static(
    agent: LLMAgent, prompts: list[list[int]], legal: list[list[str] | None] | None = None
) -> list[Completion]:
    """Transformers' ``generate`` with a static KV cache and compiled decoding (shapes bucketed), for GPUs."""
    s, tok = agent.sampling, agent.tokenizer
    device = next(agent.model.parameters()).device
    real = len(prompts)
    # bucket (batch, width) so compiled graphs are reused across calls
    prompts = prompts + [prompts[0]] * (power_of_two(real) - real)
    legal = legal + [legal[0]] * (len(prompts) - real) if legal else legal
    ids, mask = left_pad(prompts, tok.pad_token_id, device, multiple=64)
    spelled = agent._spell(legal)
    allowed, allowed_log = _constraint(agent, spelled, ids.shape[1]) if spelled else (None, {})
    budget = agent._budget(spelled)
    torch.manual_seed(s.seed + agent.calls)  # reproducible, yet every call samples afresh
    agent.calls += 1
    with agent._adapter():
        out = agent.model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=s.temperature > 0,
            max_new_tokens=budget,
            temperature=s.temperature if s.temperature > 0 else None,
            top_p=s.top_p if s.temperature > 0 else None,
            top_k=None,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            stop_strings=s.stop or None,
            tokenizer=tok if s.stop else None,
            prefix_allowed_tokens_fn=allowed,
            output_logits=True,
            return_dict_in_generate=True,
            cache_implementation="static",
        )
    new = out.sequences[:, ids.shape[1] :]
    logprobs = _sampled_logprobs(out.logits, new, s.temperature, allowed_log, vocab=len(tok))
    new = new.cpu()
    completions = []
    for i, prompt in enumerate(prompts[:real]):
        tokens = new[i].tolist()
        end = through_stop(tokens, agent.stop_ids)
        tokens = tokens[:end]
        choices = [allowed_log[i].get(t) for t in range(end)] if allowed_log else None
        completions.append(
            Completion(
                tok.decode(tokens, skip_special_tokens=True),
                prompt_ids=list(prompt),
                completion_ids=tokens,
                logprobs=logprobs[i, :end].tolist(),
                allowed=choices,
                temperature=agent.sampling.temperature,
            )
        )
    return completions


def _sampled_logprobs(step_logits, new: torch.Tensor, temperature: float, allowed_log: dict, *, vocab: int):
    """(rows, steps) log-probabilities of the sampled tokens under ``softmax(logits / T)``, renormalised over the
    allowed tokens where ``allowed_log`` constrained a row (the constrained policy); T = 0 is read as 1."""
    temp = temperature if temperature > 0 else 1.0
    steps = []
    for t, logits in enumerate(step_logits):
        logits = logits.float() / temp
        if allowed_log:
            rows = [[allowed_log.get(i, {}).get(t)] for i in range(len(new))]
            logits = logits + allowed_mask(rows, vocab, logits.device)[:, 0, : logits.shape[-1]]
        steps.append(torch.log_softmax(logits, dim=-1).gather(-1, new[:, t : t + 1]).squeeze(-1))
    return torch.stack(steps, dim=1).cpu() if steps else torch.zeros(len(new), 0)


def _constraint(agent: LLMAgent, spelled: list[list[list[int]] | None], width: int):
    """``prefix_allowed_tokens_fn`` that lets row b spell only one of its legal actions, then stop; and the
    log of what was allowed (row -> step -> token ids), so that log-probabilities and training use the
    constrained policy: a forced token has probability 1 and so no gradient.
    """
    vocab = list(range(len(agent.tokenizer)))
    eos = agent.tokenizer.eos_token_id
    log: dict[int, dict[int, list[int]]] = {i: {} for i, options in enumerate(spelled) if options is not None}

    def allowed(batch_id: int, sent: torch.Tensor) -> list[int]:
        options = spelled[batch_id]
        if options is None:
            return vocab
        prefix = sent[width:].tolist()
        log[batch_id][len(prefix)] = next_allowed(options, prefix, eos)
        return log[batch_id][len(prefix)]

    return allowed, log
