import random

import pytest
import torch

from selfplay.agents.decode import Decoder
from selfplay.agents.models import tiny_model
from selfplay.agents.radix import length_buckets, radix_tree
from selfplay.agents.scoring import token_logprobs
from selfplay.agents.token_sampling import sample_tokens


def _paths(nodes):
    """Every row's prompt rebuilt from its path of node segments."""
    rows = {}
    for i, n in enumerate(nodes):
        chain, j = [], i
        while j >= 0:
            chain.append(nodes[j].tokens)
            j = nodes[j].parent
        for r in n.ends:
            rows[r] = [t for seg in reversed(chain) for t in seg]
    return rows


def test_the_radix_tree_rebuilds_every_prompt_and_computes_a_shared_prefix_once():
    rng = random.Random(0)
    system = list(range(100, 130))
    rows = [system + [rng.randrange(5) for _ in range(rng.randrange(1, 12))] for _ in range(40)]
    rows += [rows[3], system[:10], system, [7, 7, 7], [7, 7, 8, 9]]  # a duplicate, prefixes of others, a second root
    for saving in (1, 4, 8, 64, 1000):
        nodes = radix_tree(rows, min_saving=saving)
        assert _paths(nodes) == dict(enumerate(rows))
        assert all(nodes[n.parent].level == n.level - 1 for n in nodes if n.parent >= 0)
        assert all(
            n.start == (0 if n.parent < 0 else nodes[n.parent].start + len(nodes[n.parent].tokens)) for n in nodes
        )
    nodes = radix_tree(rows, min_saving=8)
    assert sum(len(n.tokens) for n in nodes) < sum(len(r) for r in rows) // 3  # the 30-token system prompt once
    assert sum(n.tokens == system[:10] for n in nodes) == 1


def test_length_buckets_cover_every_index_at_least_cost():
    lengths = [3, 90, 4, 88, 5, 91, 40, 3]
    buckets = length_buckets(lengths, max_rows=3, overhead=10)
    assert sorted(i for b in buckets for i in b) == list(range(len(lengths)))
    assert all(len(b) <= 3 for b in buckets)
    cost = lambda bs: sum(10 + max(lengths[i] for i in b) * len(b) for b in bs)  # noqa: E731
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    brute = []  # every split of the sorted order into runs of at most 3
    for mask in range(1 << (len(order) - 1)):
        cuts = [0] + [k + 1 for k in range(len(order) - 1) if mask >> k & 1] + [len(order)]
        runs = [order[a:b] for a, b in zip(cuts, cuts[1:])]
        if all(len(r) <= 3 for r in runs):
            brute.append(cost(runs))
    assert cost(buckets) == min(brute) == 369  # {3,3} {4,5} {40} {88,90,91}, by hand: 16 + 20 + 50 + 283
    assert length_buckets([5, 6, 7], max_rows=8, overhead=100) == [[0, 1, 2]]  # one forward beats three
    assert length_buckets([1, 100], max_rows=8, overhead=0) == [[0], [1]]  # free forwards: no padding at all


def test_two_level_inverse_cdf_draws_what_one_scan_of_the_row_draws_and_never_a_zero_probability_entry():
    """Rows longer than four blocks are searched block sums first: the same index as the full scan for the same
    uniform (up to float rounding at a boundary), the empirical frequencies of the probabilities, and never an entry
    of probability zero, also at the ends of blocks and for uniforms at 0 and just below 1."""
    from selfplay.agents.token_sampling import inverse_cdf

    gen = torch.Generator().manual_seed(0)
    width = 1100  # four full blocks of 256 and a padded fifth
    logits = torch.randn(64, width, generator=gen) * 3
    logits[torch.rand(64, width, generator=gen) < 0.3] = float("-inf")
    logits[:, [255, 511, 767, 1023, 1099]] = float("-inf")  # blocks that end (and a row that ends) in zeros
    logits[:8, 256:] = float("-inf")  # rows whose mass is all in the first block
    probs = torch.softmax(logits, -1)
    uniform = torch.rand(64 * 200, 1, generator=gen)
    uniform[:64], uniform[64:128] = 0.0, 1 - 2**-24
    rows = probs.repeat(200, 1)
    two = inverse_cdf(rows, uniform)
    cdf = rows.cumsum(-1)
    one = torch.searchsorted(cdf, (1 - uniform) * cdf[:, -1:]).squeeze(-1)
    assert (two == one).float().mean() > 0.999
    assert bool((rows.gather(1, two[:, None]) > 0).all())
    single = torch.tensor([[0.5, 0.0, 0.25, 0.25] + [0.0] * 1100])
    draws = inverse_cdf(single.repeat(20000, 1), torch.rand(20000, 1, generator=gen))
    freq = torch.bincount(draws, minlength=4)[:4].float() / 20000
    assert torch.allclose(freq, single[0, :4], atol=0.015)


def test_greedy_decoding_with_shared_prefixes_matches_transformers_generate_row_by_row():
    model, tok = tiny_model(seed=5)
    eos = tok.eos_token_id
    base = tok.encode("the rules of a long game that every prompt shares", add_special_tokens=False)
    prompts = [base + tok.encode(x, add_special_tokens=False) for x in ("a", "b c d", "a", "e f g h i j", "")]
    prompts.append(tok.encode("something else entirely", add_special_tokens=False))
    out = Decoder(model, eos, {eos}, min_saving=2).decode(prompts, max_new=7, temperature=0)
    for p, o in zip(prompts, out):
        ref = model.generate(
            input_ids=torch.tensor([p]),
            attention_mask=torch.ones(1, len(p), dtype=torch.long),
            do_sample=False,
            max_new_tokens=7,
            pad_token_id=tok.pad_token_id,
            eos_token_id=eos,
        )
        assert o.tokens == ref[0, len(p) :].tolist()[: len(o.tokens)]
        assert len(o.tokens) == 7 or o.tokens[-1] == eos


def test_sampled_logprobs_equal_a_teacher_forced_pass_within_1e_5():
    model, tok = tiny_model(seed=6)
    eos = tok.eos_token_id
    base = tok.encode("shared system prompt of some length here", add_special_tokens=False)
    prompts = [base + tok.encode(x, add_special_tokens=False) for x in ("one", "two three", "one", "four five six")]
    spell = [tok.encode(a, add_special_tokens=False) for a in ("[1]", "[12]", "[3]")]
    for legal in (None, [spell, None, spell, spell], [spell] * 4):  # free, mixed, and all constrained (cheap head)
        out = Decoder(model, eos, {eos}, min_saving=2).decode(prompts, max_new=6, temperature=0.7, legal=legal, seed=3)
        allowed = [o.allowed for o in out] if legal else None
        ref = token_logprobs(
            model, prompts, [o.tokens for o in out], tok.pad_token_id, temperature=0.7, allowed=allowed
        )
        for i, (o, r) in enumerate(zip(out, ref)):
            assert torch.allclose(torch.tensor(o.logprobs), r, atol=1e-5), (legal, i)
            if legal and legal[i] is not None:
                assert o.tokens[:-1] in spell and o.tokens[-1] == eos


def test_the_sampler_draws_each_token_with_its_probability():
    logits = torch.tensor([[2.0, 0.0, -1.0, float("-inf"), 1.0]]).repeat(20000, 1)
    generator = torch.Generator().manual_seed(0)
    tokens, logps = sample_tokens(logits, 1.0, 1.0, generator=generator)
    expected = torch.softmax(logits[0], -1)
    freq = torch.bincount(tokens, minlength=5).float() / len(tokens)
    assert freq[3] == 0
    assert torch.allclose(freq, expected, atol=0.015)
    assert torch.allclose(logps, expected.log()[tokens])
    nucleus, _ = sample_tokens(
        logits[:2000], 1.0, 0.6, generator=generator
    )  # top-p 0.6 keeps only the first token (p=.64)
    assert set(nucleus.tolist()) == {0}


def test_the_static_step_for_cuda_graphs_computes_what_the_model_does():
    """The fixed-shape step (replayed as a CUDA graph on a GPU) run eagerly on the CPU: the same greedy tokens as
    transformers and sampled log-probabilities equal to a teacher-forced pass."""
    model, tok = tiny_model(seed=7, num_key_value_heads=2)  # grouped-query attention, as SmolLM2
    eos = tok.eos_token_id
    base = tok.encode("a shared prefix long enough to share", add_special_tokens=False)
    prompts = [base + tok.encode(x, add_special_tokens=False) for x in ("one", "two three four", "", "five")]
    greedy = Decoder(model, eos, {eos}, min_saving=2, graphs="always").decode(prompts, max_new=6, temperature=0)
    for p, o in zip(prompts, greedy):
        ref = model.generate(
            input_ids=torch.tensor([p]),
            attention_mask=torch.ones(1, len(p), dtype=torch.long),
            do_sample=False,
            max_new_tokens=6,
            pad_token_id=tok.pad_token_id,
            eos_token_id=eos,
        )
        assert o.tokens == ref[0, len(p) :].tolist()[: len(o.tokens)]
    decoder = Decoder(model, eos, {eos}, min_saving=2, graphs="always")
    out = decoder.decode(prompts, max_new=6, temperature=0.9, seed=5)
    assert decoder.graphs.forwards  # the static step was used
    ref = token_logprobs(model, prompts, [o.tokens for o in out], tok.pad_token_id, temperature=0.9)
    for o, r in zip(out, ref):
        assert torch.allclose(torch.tensor(o.logprobs), r, atol=1e-5)


def test_static_steps_beyond_their_memory_budget_are_dropped_least_recently_used_first():
    """Each bucketed shape's fixed-shape forward (decode step or prefill) holds its own buffers; past ``GraphCache.limit_bytes``
    the least recently used goes, and decoding is unchanged by it."""
    from types import SimpleNamespace

    from selfplay.agents.graph_step import prefill_bytes, step_bytes

    model, tok = tiny_model(seed=7, num_key_value_heads=2)
    eos = tok.eos_token_id
    c = model.config
    assert (
        step_bytes(model, 4, 64) == 2 * c.num_hidden_layers * 4 * 2 * 64 * (c.hidden_size // c.num_attention_heads) * 4
    )
    assert prefill_bytes(model, 4, 16, 64) == step_bytes(model, 4, 80)
    lru = Decoder(model, eos, {eos}, graphs="always")
    lru.graphs.limit_bytes = 100
    made = []

    def get(key, size):
        return lru.graphs._get(key, size, lambda: made.append(key) or SimpleNamespace(nbytes=size))

    get("a", 40), get("b", 40), get("a", 40), get("c", 40)  # a was used after b: b goes
    assert list(lru.graphs.forwards) == ["a", "c"] and made == ["a", "b", "c"]
    get("d", 150)  # over the budget alone: it stays, alone
    assert list(lru.graphs.forwards) == ["d"]
    free = Decoder(model, eos, {eos}, graphs="always")
    tight = Decoder(model, eos, {eos}, graphs="always")
    tight.graphs.limit_bytes = step_bytes(model, 4, 64) + step_bytes(model, 2, 64)
    short = [tok.encode(x, add_special_tokens=False) for x in ("one", "two", "three")]
    wide = [tok.encode("x" * 70, add_special_tokens=False)] * 3
    for prompts in (short, short[:2], short, wide, short[:2], wide):
        got = tight.decode(prompts, max_new=4, temperature=0.9, seed=2)
        sizes = [s.nbytes for s in tight.graphs.forwards.values()]
        assert sum(sizes) <= max(tight.graphs.limit_bytes, sizes[-1])
        want = free.decode(prompts, max_new=4, temperature=0.9, seed=2)
        assert [g.tokens for g in got] == [w.tokens for w in want]
        assert all(torch.allclose(torch.tensor(g.logprobs), torch.tensor(w.logprobs)) for g, w in zip(got, want))
    assert len(free.graphs.forwards) > len(tight.graphs.forwards)  # unbounded, every bucket stays


def test_a_session_reuses_the_shared_prefix_of_earlier_calls_and_stays_exact():
    model, tok = tiny_model(seed=7)
    eos = tok.eos_token_id
    enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    system = enc("a system prompt and the rules of the game, the same at every turn of every game")
    turns = [
        [system + enc(x) for x in ("board one", "board two", "board one")],
        [system + enc(x) for x in ("board one", "board two, a longer one")],  # a row ends at a kept prefix
        [system + enc(x) for x in ("board three x", "board four")],
        [system[:20] + enc("a shorter shared start"), system[:20] + enc("and another")],  # shares only 20
        [enc("nothing shared with before"), enc("nothing shared at all")],
    ]
    computed = []  # prompt tokens each forward computes (input width times rows)
    hook = model.model.register_forward_pre_hook(
        lambda m, a, kw: computed.append(kw["input_ids"].numel()), with_kwargs=True
    )
    decoder = Decoder(model, eos, {eos}, min_saving=2)

    def prefill_tokens(prompts):  # one new token: the prefill's forwards only
        computed.clear()
        decoder.decode(prompts, max_new=1, temperature=0)
        return sum(computed)

    alone = [prefill_tokens(prompts) for prompts in turns]
    with decoder.session():
        kept = [prefill_tokens(prompts) for prompts in turns]
    hook.remove()
    assert not decoder.pool.kept  # everything kept is dropped on leaving the session
    assert kept[0] == alone[0] and kept[4] == alone[4]  # nothing to reuse yet / nothing shared
    # the first call kept every prompt: the second computes only the last token of "board one" (repeated; its row
    # needs logits) and what "board two, a longer one" adds to "board two" (a growing history)
    assert alone[1] - kept[1] == len(system + enc("board one")) - 1 + len(enc("two"))
    assert alone[2] - kept[2] == len(system + enc("board t"))  # "board three x" starts like "board two"
    assert alone[3] - kept[3] == 20
    with decoder.session():  # sampled log-probabilities stay those of a teacher-forced pass
        for t, prompts in enumerate(turns):
            out = decoder.decode(prompts, max_new=5, temperature=0.9, seed=t)
            ref = token_logprobs(model, prompts, [o.tokens for o in out], tok.pad_token_id, temperature=0.9)
            for o, r in zip(out, ref):
                assert torch.allclose(torch.tensor(o.logprobs), r[: len(o.tokens)], atol=1e-5)


@pytest.mark.parametrize("graphs", [False, "always"])
def test_sessions_over_random_calls_give_the_log_probabilities_of_a_teacher_forced_pass(monkeypatch, graphs):
    """With ``graphs="always"`` the prefill and the decode steps run as the fixed-shape forwards a GPU replays as CUDA
    graphs (bucketed and padded: rows, segment width and past), eagerly here."""
    import selfplay.agents.decode as decode

    reused = []
    real = decode.reuse
    monkeypatch.setattr(decode, "reuse", lambda *a: reused.append(len((r := real(*a))[1]) > 0) or r)
    model, tok = tiny_model(seed=8)
    eos = tok.eos_token_id
    rng = random.Random(1)
    stems = [[rng.randrange(3, 250) for _ in range(rng.randrange(5, 40))] for _ in range(3)]
    decoder = Decoder(model, eos, {eos}, min_saving=rng.choice([1, 4, 16]), graphs=graphs)
    with decoder.session():
        for call in range(6):
            prompts = []
            for _ in range(rng.randrange(1, 7)):
                stem = rng.choice(stems)
                tail = [rng.randrange(3, 8) for _ in range(rng.randrange(0, 4))]
                prompts.append(stem[: rng.randrange(1, len(stem) + 1)] + tail)
            out = decoder.decode(prompts, max_new=3, temperature=1.0, seed=call)
            ref = token_logprobs(model, prompts, [o.tokens for o in out], tok.pad_token_id, temperature=1.0)
            for o, r in zip(out, ref):
                assert torch.allclose(torch.tensor(o.logprobs), r[: len(o.tokens)], atol=1e-5), call
    assert len(decoder.pool.kept) == 0
    assert sum(reused) >= 3  # most calls read kept prefixes
    prefills = [key for key in decoder.graphs.forwards if key[0] == "prefill"]
    assert bool(prefills) == bool(graphs) and (not graphs or any(past for *_, past in prefills))


def test_decoding_without_a_wait_per_step_samples_what_the_per_step_loop_samples(monkeypatch):
    """Free rows on fixed-shape steps never go back to the host between steps (finished rows are fed end-of-text and
    read once at the end): the same tokens as the eager loop that drops finished rows, up to and including each
    row's stop token, log-probabilities of a teacher-forced pass, and no steps once every row has stopped."""
    from selfplay.agents.graph_step import StaticStep

    model, tok = tiny_model(seed=9)
    eos = tok.eos_token_id
    stops = {eos} | set(range(40, 140))  # about a third of the vocabulary ends a row: rows stop at different steps
    rng = random.Random(4)
    prompts = [[rng.randrange(3, 250) for _ in range(rng.randrange(3, 30))] for _ in range(12)]
    steps = []
    real = StaticStep.run
    monkeypatch.setattr(StaticStep, "run", lambda self, *a: steps.append(a[2]) or real(self, *a))
    for seed in range(3):
        eager = Decoder(model, eos, stops, graphs=False).decode(prompts, max_new=40, temperature=1.0, seed=seed)
        steps.clear()
        fixed = Decoder(model, eos, stops, graphs="always").decode(prompts, max_new=40, temperature=1.0, seed=seed)
        lengths = [len(o.tokens) for o in fixed]
        assert [o.tokens for o in fixed] == [o.tokens for o in eager]
        assert len(set(lengths)) > 2 and all(o.tokens[-1] in stops for o in fixed if len(o.tokens) < 40)
        assert all(t not in stops for o in fixed for t in o.tokens[:-1])
        ref = token_logprobs(model, prompts, [o.tokens for o in fixed], tok.pad_token_id, temperature=1.0)
        for o, e, r in zip(fixed, eager, ref):
            assert torch.allclose(torch.tensor(o.logprobs), r[: len(o.tokens)], atol=1e-5)
            assert torch.allclose(torch.tensor(o.logprobs), torch.tensor(e.logprobs), atol=1e-5)
        # every row stopped by step max(lengths); the host looks every 8 steps, so at most 7 steps more ran
        assert len(steps) < 39 and len(steps) <= -(-max(lengths) // 8) * 8 - 1


@pytest.mark.parametrize("graphs", [False, "always"])
def test_kept_prefixes_stay_within_their_token_budget_and_pool_rows_are_never_shared(graphs):
    """A small ``kept_tokens`` forces evictions every call: the kept prefixes never exceed it, no pool row belongs to
    two prefixes or to a prefix and the free list, and calls reading rows freed and rewritten since still get the
    log-probabilities of a teacher-forced pass."""
    model, tok = tiny_model(seed=12)
    eos = tok.eos_token_id
    rng = random.Random(5)
    stems = [[rng.randrange(3, 250) for _ in range(rng.randrange(10, 30))] for _ in range(4)]
    decoder = Decoder(model, eos, {eos}, min_saving=2, graphs=graphs, kept_tokens=70)
    evicted = 0
    with decoder.session():
        for call in range(10):
            prompts = [
                rng.choice(stems)[: rng.randrange(9, 30)] + [rng.randrange(3, 8) for _ in range(rng.randrange(3))]
                for _ in range(rng.randrange(2, 6))
            ]
            before = set(decoder.pool.kept)
            out = decoder.decode(prompts, max_new=3, temperature=1.0, seed=call)
            evicted += len(before - set(decoder.pool.kept))
            ref = token_logprobs(model, prompts, [o.tokens for o in out], tok.pad_token_id, temperature=1.0)
            for o, r in zip(out, ref):
                assert torch.allclose(torch.tensor(o.logprobs), r[: len(o.tokens)], atol=1e-5), call
            held = [r for rows in decoder.pool.kept.values() for r in rows]
            assert sum(map(len, decoder.pool.kept)) == len(held) <= 70
            assert all(len(rows) == len(key) for key, rows in decoder.pool.kept.items())
            assert len(set(held)) == len(held) and not set(held) & set(decoder.pool.free)
            assert sorted(held + decoder.pool.free) == list(range(len(decoder.pool.rows)))
    assert evicted >= 5 and not decoder.pool.kept and len(decoder.pool.free) == len(decoder.pool.rows) <= 70


def test_fixed_shape_forwards_follow_weights_changed_between_calls():
    """The fixed-shape forwards multiply by joined copies of the q/k/v and gate/up weights: an in-place update (what
    an optimizer step does) and a reassigned ``.data`` must both reach the next call."""
    model, tok = tiny_model(seed=11)
    eos = tok.eos_token_id
    prompts = [[5, 6, 7, 8, 9], [5, 6, 7, 10], [11, 12]]
    decoder = Decoder(model, eos, {eos}, graphs="always")

    def check(seed):
        out = decoder.decode(prompts, max_new=4, temperature=1.0, seed=seed)
        ref = token_logprobs(model, prompts, [o.tokens for o in out], tok.pad_token_id, temperature=1.0)
        for o, r in zip(out, ref):
            assert torch.allclose(torch.tensor(o.logprobs), r[: len(o.tokens)], atol=1e-5)
        return out

    before = check(0)
    with torch.no_grad():
        for layer in model.model.layers:  # in place, as an optimizer step
            layer.self_attn.k_proj.weight.add_(0.3 * torch.randn_like(layer.self_attn.k_proj.weight))
            layer.mlp.up_proj.weight.mul_(1.5)
    after = check(0)
    assert [o.logprobs for o in after] != [o.logprobs for o in before]
    layer = model.model.layers[0]
    layer.self_attn.q_proj.weight.data = 2 * layer.self_attn.q_proj.weight.data  # a new tensor behind the parameter
    check(1)


def test_a_failed_cuda_graph_capture_leaves_the_step_decoding_eagerly_with_the_same_tokens(monkeypatch):
    """Where capture raises (a hook that synchronises inside it, say), the step warns once and computes eagerly,
    never replaying the broken graph: the decode equals one without graphs. The same for the prefill."""
    from selfplay.agents.graph_step import _Graphed

    model, tok = tiny_model(seed=7, num_key_value_heads=2)
    eos = tok.eos_token_id
    prompts = [tok.encode(x, add_special_tokens=False) for x in ("one two", "three", "four five six")]
    expected = Decoder(model, eos, {eos}, graphs=False).decode(prompts, max_new=5, temperature=0.8, seed=3)
    tries = []

    def broken_capture(self):
        tries.append(1)
        self.graph = object()  # what a real capture leaves behind before it fails
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(_Graphed, "_on_gpu", lambda self: True)
    monkeypatch.setattr(_Graphed, "_capture", broken_capture)
    decoder = Decoder(model, eos, {eos}, graphs="always")
    with pytest.warns(RuntimeWarning) as caught:
        out = decoder.decode(prompts, max_new=5, temperature=0.8, seed=3)
    said = sorted(str(w.message).split(" failed")[0] for w in caught)
    assert said == ["the CUDA-graph capture of the decode step", "the CUDA-graph capture of the prefill"]
    assert all("runs eagerly" in str(w.message) for w in caught)
    again = decoder.decode(prompts, max_new=5, temperature=0.8, seed=3)
    assert len(tries) == 2 and len(decoder.graphs.forwards) == 2  # one prefill, one decode step: each tried once
    for o, e, a in zip(out, expected, again):
        assert o.tokens == e.tokens == a.tokens
        assert torch.allclose(torch.tensor(o.logprobs), torch.tensor(e.logprobs), atol=1e-5)


def test_the_shared_prefix_length_of_a_group_is_that_of_every_row():
    """_lcp reads it off the least and greatest rows; checked against a walk over every row."""
    from selfplay.agents.radix import _lcp

    rng = random.Random(0)
    for _ in range(3000):
        base = [rng.randrange(3) for _ in range(rng.randrange(6))]
        rows = [base + [rng.randrange(3) for _ in range(rng.randrange(5))] for _ in range(rng.randrange(1, 6))]
        n = len(base)
        while all(len(r) > n for r in rows) and len({r[n] for r in rows}) == 1:
            n += 1
        assert _lcp(rows, list(range(len(rows))), len(base)) == n


def test_kept_prefixes_are_found_by_binary_search_as_by_a_scan_of_every_kept_prefix():
    """_reuse takes each node's best kept prefix from the path's neighbours in sorted order; checked against a scan
    of every kept prefix: the same tokens covered per node, and every covered run really is the kept prefix's."""
    from selfplay.agents.radix import reuse as _reuse

    rng = random.Random(4)
    for _ in range(300):
        stems = [[rng.randrange(4) for _ in range(rng.randrange(1, 12))] for _ in range(3)]
        grow = lambda: rng.choice(stems)[: rng.randrange(0, 12)] + [rng.randrange(4) for _ in range(rng.randrange(3))]  # noqa: E731
        prompts = [p for p in (grow() for _ in range(rng.randrange(1, 8))) if p]
        if not prompts:
            continue
        kept = {tuple(k): tuple(k) for k in (grow() for _ in range(rng.randrange(0, 6))) if k}
        least = rng.choice([1, 2, 3])
        nodes = radix_tree(prompts, rng.choice([1, 4, 64]))
        out, read = _reuse(nodes, kept, least)
        paths = []
        for n in nodes:  # the scan: every kept prefix against every node's whole path
            path = (paths[n.parent] if n.parent >= 0 else ()) + tuple(n.tokens)
            paths.append(path)
        expected = 0
        for n, path in zip(nodes, paths):
            best = max(
                (next((i for i, (a, b) in enumerate(zip(path, k)) if a != b), min(len(path), len(k))) for k in kept),
                default=-1,
            )
            covered = min(best, len(path) - 1 if n.ends else len(path))
            expected += len(n.tokens) - (covered - n.start if covered > n.start and covered >= least else 0)
        assert sum(len(n.tokens) for n in out if n.level >= 0) == expected
        for i, entry in read.items():  # a covered run is the kept prefix's own tokens at those positions
            n = out[i]
            assert n.level == -1 and tuple(entry[n.start : n.start + len(n.tokens)]) == tuple(n.tokens)
