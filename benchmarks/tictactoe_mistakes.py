"""Where does a trained TicTacToe policy lose? Missed wins and missed blocks of a checkpoint, greedy.

    python benchmarks/tictactoe_mistakes.py runs/learning-tiny/checkpoints/step_000400/policy

Loads the checkpoint's ``policy/`` folder (plain transformers), plays it greedily on the compact prompt against the
random agent (``--games`` per seat) and counts, in the games it lost, its moves that missed an immediate win or a
needed block. Then, at positions from random play where the player to move must block (and cannot win), prints how
often the greedy move blocks, the mean probability on blocking cells and the policy's entropy there.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.args import positive  # noqa: E402
from selfplay.agents.models import load_model  # noqa: E402
from selfplay.games.tictactoe import MARKS, compact_prompt, completing_cells, free_cells, place, winner  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("policy", help="a checkpoint's policy/ folder (or any local HF model with the byte tokenizer)")
    parser.add_argument("--games", type=positive, default=300, help="games per seat against the random agent")
    parser.add_argument(
        "--positions", type=positive, default=400, help="random games whose must-block positions are probed"
    )
    args = parser.parse_args()
    model, tok = load_model("hf", args.policy, device="cpu", dtype="float32")
    digits = [tok.convert_tokens_to_ids(str(i)) for i in range(1, 10)]

    @torch.no_grad()
    def probs(board: str, mark: str) -> torch.Tensor:  # the constrained first-digit policy over the 9 cells
        text = (
            tok.apply_chat_template(
                [{"role": "user", "content": compact_prompt(board, mark)}], tokenize=False, add_generation_prompt=True
            )
            + "["
        )
        logits = model(**tok(text, return_tensors="pt", add_special_tokens=False)).logits[0, -1, digits]
        mask = torch.full((9,), float("-inf"))
        mask[free_cells(board)] = 0
        return torch.softmax(logits + mask, -1)

    rng, counts = random.Random(5), Counter()
    for seat in (0, 1):
        for _ in range(args.games):
            board, moves, mine = "." * 9, 0, []
            while not winner(board) and free_cells(board):
                mark = MARKS[moves % 2]
                cell = int(probs(board, mark).argmax()) if moves % 2 == seat else rng.choice(free_cells(board))
                if moves % 2 == seat:
                    mine.append((board, mark, cell))
                board, moves = place(board, cell, mark), moves + 1
            result = "win" if winner(board) == MARKS[seat] else "loss" if winner(board) else "draw"
            counts[result] += 1
            if result == "loss":
                for b, m, c in mine:
                    wins, blocks = completing_cells(b, m), completing_cells(b, MARKS[1 - MARKS.index(m)])
                    counts["missed win"] += bool(wins) and c not in wins
                    counts["missed block"] += not wins and bool(blocks) and c not in blocks
    games = 2 * args.games
    print(
        f"vs random, {games} games: win {counts['win'] / games:.3f}  draw {counts['draw'] / games:.3f}  "
        f"loss {counts['loss'] / games:.3f}; in the lost games: {counts['missed block']} missed blocks, "
        f"{counts['missed win']} missed wins"
    )

    rng, blocked, mass, entropy = random.Random(1), [], [], []
    for _ in range(args.positions):
        board, moves = "." * 9, 0
        while not winner(board) and free_cells(board):
            mark = MARKS[moves % 2]
            blocks = completing_cells(board, MARKS[1 - moves % 2])
            if blocks and not completing_cells(board, mark):
                p = probs(board, mark)
                blocked.append(int(p.argmax()) in blocks)
                mass.append(float(p[blocks].sum()))
                entropy.append(float(-(p[p > 0] * p[p > 0].log()).sum()))
            board, moves = place(board, rng.choice(free_cells(board)), mark), moves + 1
    n = len(blocked)
    print(
        f"{n} must-block positions from random play: greedy blocks {sum(blocked) / n:.3f}, "
        f"mean p(block) {sum(mass) / n:.3f}, entropy {sum(entropy) / n:.2f} nats"
    )


if __name__ == "__main__":
    main()
