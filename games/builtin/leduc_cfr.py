"""Regenerate the Leduc expert: CFR+ over the exact game tree, saved as ``games/builtin/leduc_expert.json``.

    python -m selfplay.games.leduc_cfr --iterations 1000

Prints the exploitability of the average strategy every 100 iterations (``games.exact``; NashConv / 2, in chips
per hand) and stores it with the table. References: Zinkevich et al. 2007 (CFR); Tammelin 2014 (CFR+).
"""

from __future__ import annotations

import argparse
import json
import time

from selfplay.games import exact
from selfplay.games.leduc_poker import EXPERT_TABLE, LeducPoker


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=1000, help="CFR+ iterations (default 1000)")
    parser.add_argument("--out", default=str(EXPERT_TABLE), help="where to write the table")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    tree = exact.build_tree(LeducPoker)
    print(
        f"Leduc: {len(tree.nodes)} nodes, {len(tree.infostates())} information states "
        f"(uniform exploitability {exact.exploitability(tree, exact.uniform_policy(tree)).exploitability:.4f})"
    )
    policy = exact.cfr(
        tree,
        args.iterations,
        plus=True,
        progress=lambda t: (
            print(f"  iteration {t}: {time.perf_counter() - start:.0f}s", flush=True) if t % 100 == 0 else None
        ),
    )
    result = exact.exploitability(tree, policy)
    print(
        f"CFR+ {args.iterations} iterations: exploitability {result.exploitability:.6f} "
        f"(value for player_0 {result.value[0]:+.5f}), {time.perf_counter() - start:.0f}s"
    )
    by_key = {}
    for game, info in exact.decision_games(tree, LeducPoker):
        by_key[game.info_key(info.role)] = {a: round(p, 6) for a, p in policy[info.key].items()}
    with open(args.out, "w") as f:
        json.dump(
            {
                "method": f"CFR+ (Tammelin 2014), {args.iterations} iterations, average strategy",
                "exploitability": result.exploitability,
                "value_player_0": result.value[0],
                "policy": dict(sorted(by_key.items())),
            },
            f,
            indent=0,
        )
    print(f"wrote {len(by_key)} information states to {args.out}")


if __name__ == "__main__":
    main()
