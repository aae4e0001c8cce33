"""A 100-line REINFORCE on TicTacToe outside the framework: is the tiny model's ~0.8 plateau the trainer's fault?

    python benchmarks/reinforce_probe.py                          # vs random, 300 steps x 256 games
    python benchmarks/reinforce_probe.py --entropy 0.05 --gamma 0.7 --mirror 0.5 --greedy 0.5
    python benchmarks/reinforce_probe.py --supervised             # imitate minimax instead (capacity check)
    python benchmarks/reinforce_probe.py --supervised --bare      # ... on the bare board prompt "X.X.O...."
    python benchmarks/reinforce_probe.py --branch 8               # + GRPO over 8 continuations of sampled states
    python benchmarks/reinforce_probe.py --expand 64              # + every move of 64 states rolled out (2 each)

The same tiny model and compact prompt as ``benchmarks/learning.py``, the legal cells' digits read off one forward
pass; REINFORCE with a per-seat batch-mean baseline (win 1, draw ``--draw``, loss -1), optional entropy bonus,
discount over the learner's moves, mirror games (both seats learn) and a one-ply "greedy" opponent (takes a win
when it has one). ``--branch K``: 64 learner states per step each played on K times, advantage = return minus the
group's mean (GRPO groups from one state). ``--expand N``: every legal move of N states rolled out ``--rollouts``
times with the current policy; cross-entropy towards the moves with the best mean return (policy improvement by
Monte-Carlo rollouts). ``--supervised`` trains cross-entropy on minimax's optimal cells for positions from random
play. Prints greedy win+draw vs random (both seats, 400 games) and the share of greedy choices that are
minimax-optimal (2,000 positions from random play) every 25 steps.
"""

from __future__ import annotations

import argparse
import random
import time

import torch
import torch.nn.functional as F

from selfplay.agents.models import tiny_model
from selfplay.games.tictactoe import MARKS, best_cells, compact_prompt, completing_cells, free_cells, place, winner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, kind, default in [
        ("steps", int, 300),
        ("games", int, 256),
        ("lr", float, 3e-3),
        ("entropy", float, 0.0),
        ("gamma", float, 1.0),
        ("mirror", float, 0.0),
        ("greedy", float, 0.0),
        ("draw", float, 0.0),
        ("hidden", int, 64),
        ("layers", int, 2),
    ]:
        parser.add_argument(f"--{name}", type=kind, default=default)
    parser.add_argument("--supervised", action="store_true")
    parser.add_argument("--bare", action="store_true", help="the bare board prompt 'X.X.O....' (the old compact)")
    parser.add_argument("--branch", type=int, default=0, help="GRPO over K continuations from sampled states")
    parser.add_argument("--expand", type=int, default=0, help="states per step whose every move is rolled out")
    parser.add_argument("--rollouts", type=int, default=2, help="rollouts per move with --expand")
    args = parser.parse_args()
    model, tok = tiny_model(
        0, hidden_size=args.hidden, intermediate_size=2 * args.hidden, num_hidden_layers=args.layers
    )
    tok.padding_side = "left"
    digits = [tok.convert_tokens_to_ids(str(i)) for i in range(1, 10)]

    def logits(states):  # masked logits over the 9 cells for (board, mark) states
        text = [
            tok.apply_chat_template(
                [{"role": "user", "content": m + b if args.bare else compact_prompt(b, m)}],
                tokenize=False,
                add_generation_prompt=True,
            )
            + "["
            for b, m in states
        ]
        enc = tok(text, return_tensors="pt", padding=True, add_special_tokens=False)
        mask = torch.full((len(states), 9), float("-inf"))
        for i, (b, _) in enumerate(states):
            mask[i, free_cells(b)] = 0
        return model(**enc).logits[:, -1, digits] + mask

    def new_game(board, seat, mirror, greedy):  # moves so far are read off the board
        return {
            "b": board,
            "seat": seat,
            "m": 9 - board.count("."),
            "mine": [],
            "other": [],
            "mirror": mirror,
            "greedy": greedy,
        }

    def play(n, rng, greedy_eval, games=None):
        games = games or [
            new_game(
                "." * 9,
                s,
                not greedy_eval and rng.random() < args.mirror,
                not greedy_eval and rng.random() < args.greedy,
            )
            for s in (0, 1)
            for _ in range(n)
        ]
        while live := [g for g in games if not winner(g["b"]) and free_cells(g["b"])]:
            learner = [g for g in live if g["m"] % 2 == g["seat"] or g["mirror"]]
            for g in live:
                if g not in learner:
                    mark = MARKS[g["m"] % 2]
                    wins = completing_cells(g["b"], mark)
                    g["b"] = place(g["b"], rng.choice(wins if g["greedy"] and wins else free_cells(g["b"])), mark)
                    g["m"] += 1
            if learner:
                states = [(g["b"], MARKS[g["m"] % 2]) for g in learner]
                with torch.no_grad():
                    lg = logits(states)
                moves = lg.argmax(-1) if greedy_eval else torch.distributions.Categorical(logits=lg).sample()
                for g, s, a in zip(learner, states, moves.tolist()):
                    (g["mine"] if g["m"] % 2 == g["seat"] else g["other"]).append((*s, a))
                    g["b"] = place(g["b"], a, MARKS[g["m"] % 2])
                    g["m"] += 1
        for g in games:
            w = winner(g["b"])
            g["r"] = [
                args.draw if w is None else (1.0 if w == MARKS[seat] else -1.0) for seat in (g["seat"], 1 - g["seat"])
            ]
        return games

    def fork_of(g, board):  # a game continuing from ``board`` with the same seat and opponent
        return new_game(board, g["seat"], False, g["greedy"])

    def positions(n, rng):
        out = []
        while len(out) < n:
            b, m = "." * 9, 0
            while not winner(b) and free_cells(b):
                out.append((b, MARKS[m % 2]))
                b, m = place(b, rng.choice(free_cells(b)), MARKS[m % 2]), m + 1
        return out[:n]

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    rng, start, test = random.Random(0), time.time(), positions(2000, random.Random(1))
    for step in range(args.steps + 1):
        if step % 25 == 0:
            with torch.no_grad():
                choice = logits(test).argmax(-1).tolist()
                share = sum(c in best_cells(b, m) for c, (b, m) in zip(choice, test)) / len(test)
                ev = play(200, random.Random(99), True)
                score = sum(g["r"][0] >= 0 for g in ev) / len(ev)
            print(
                f"step {step:>4}  win+draw vs random {score:.3f}  optimal-move share {share:.3f}"
                f"  {time.time() - start:.0f}s",
                flush=True,
            )
        if args.supervised:
            items = positions(args.games, rng)
            target = torch.zeros(len(items), 9)
            for i, (b, m) in enumerate(items):
                target[i, best_cells(b, m)] = 1 / len(best_cells(b, m))
            loss = -(target * F.log_softmax(logits(items), -1).masked_fill(target == 0, 0)).sum(-1).mean()
        else:
            games = play(args.games // 2, rng, False)
            rows = [(g["mine"], g["r"][0], g["seat"]) for g in games] + [
                (g["other"], g["r"][1], 1 - g["seat"]) for g in games if g["mirror"]
            ]
            base = {s: sum(r for _, r, t in rows if t == s) / max(1, sum(t == s for _, _, t in rows)) for s in (0, 1)}
            states, actions, advantages = [], [], []
            ce = 0.0
            roots = [(g, b, m) for g in games for (b, m, _) in g["mine"]]
            if args.branch:  # K continuations of each sampled state; advantage = return - the group's mean
                roots = rng.sample(roots, min(64, len(roots)))
                fork = play(
                    0,
                    rng,
                    False,
                    [{**fork_of(g, b), "root": i} for i, (g, b, _) in enumerate(roots) for _ in range(args.branch)],
                )
                for i in range(len(roots)):
                    group = [f for f in fork if f["root"] == i]
                    for f in group:
                        states.append(f["mine"][0][:2])
                        actions.append(f["mine"][0][2])
                        advantages.append(f["r"][0] - sum(x["r"][0] for x in group) / len(group))
            if args.expand:  # roll out every move of each sampled state; cross-entropy towards the best moves
                roots = rng.sample(roots, min(args.expand, len(roots)))
                fork = play(
                    0,
                    rng,
                    False,
                    [
                        {**fork_of(g, place(b, a, m)), "root": i, "a": a}
                        for i, (g, b, m) in enumerate(roots)
                        for a in free_cells(b)
                        for _ in range(args.rollouts)
                    ],
                )
                target = torch.zeros(len(roots), 9)
                for i in range(len(roots)):
                    q: dict[int, list[float]] = {}
                    for f in fork:
                        if f["root"] == i:
                            q.setdefault(f["a"], []).append(f["r"][0])
                    mean = {a: sum(v) / len(v) for a, v in q.items()}
                    best = [a for a, v in mean.items() if v == max(mean.values())]
                    target[i, best] = 1 / len(best)
                lp = F.log_softmax(logits([(b, m) for _, b, m in roots]), -1)
                ce = -(target * lp.masked_fill(target == 0, 0)).sum(-1).mean()
            for traj, r, seat in rows:
                for t, (b, m, a) in enumerate(traj):
                    states.append((b, m))
                    actions.append(a)
                    advantages.append((r - base[seat]) * args.gamma ** (len(traj) - 1 - t))
            loss = ce
            if states:
                logp = F.log_softmax(logits(states), -1)
                entropy = -(logp.exp() * logp.masked_fill(torch.isinf(logp), 0)).sum(-1).mean()
                chosen = logp.gather(1, torch.tensor(actions)[:, None])[:, 0]
                loss = loss - (torch.tensor(advantages) * chosen).mean() - args.entropy * entropy
        opt.zero_grad()
        loss.backward()
        opt.step()


if __name__ == "__main__":
    main()
