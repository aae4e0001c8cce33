"""Exact evaluation of small games: the game tree, best responses, NashConv and exploitability.

A game is enumerable when it lists its chance: ``deals()`` gives every deal made up front with its probability
and ``reset_deal(deal)`` starts an episode from one (a card revealed later, like Leduc's public card, may be part
of the deal and simply not shown yet); a chance event inside the hand is a chance node, where the game's
``chance_outcomes()`` lists ``(probability, outcome)`` and ``apply_chance`` resolves it (OpenSpiel's games list
one empty deal and every chance node so). The tree is then built with the game's own rules (``step``,
``legal_actions``, ``rewards``), and a player's information state is exactly what it is shown: its observation
messages. So the policy evaluated is the one an agent plays from those prompts, and a game whose observation
leaks nothing and recalls the player's own history has perfect recall by construction.

Exploitability (Lanctot et al. 2017; Johanson et al. 2011): NashConv(sigma) = sum_i [u_i(BR_i, sigma_-i) -
u_i(sigma)], and exploitability = NashConv / n, the mean gain a player makes by deviating alone; for two-player
zero-sum games that is NashConv / 2, the mean of the two best-response values. NashConv is 0 exactly at a Nash
equilibrium, for any number of players and any rewards (three-player Kuhn too). Uniform random in Kuhn poker:
0.4583; any Kuhn equilibrium: 0.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from selfplay.games.core import Game, Turn, outcome_of

Policy = dict[str, dict[str, float]]  # information-state key -> {action text: probability}


@dataclass(frozen=True)
class InfoState:
    """One decision as its player sees it: the role, its observation messages and the legal action texts."""

    role: str
    messages: tuple[tuple[str, str], ...]
    legal: tuple[str, ...]
    compact: str | None = None  # the game's one-line observation of the same state

    @property
    def key(self) -> str:
        return self.role + "\x1f" + "\x1e".join(f"{r}:{c}" for r, c in self.messages)

    def chat(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]


CHANCE = -2  # the ``player`` of a chance node


@dataclass
class Node:
    """A node of the tree: a decision (``player`` >= 0, ``info``, one child per legal action), a chance event
    (``player`` CHANCE, one child per ``(probability, outcome)`` in ``chance``) or a terminal (``returns``)."""

    player: int = -1
    info: InfoState | None = None
    children: list[int] = field(default_factory=list)
    returns: tuple[float, ...] = ()
    chance: tuple[tuple[float, Any], ...] = ()

    def branches(self, policy: Policy) -> list[tuple[float, int]]:
        """(probability, child) of each branch at a chance node or, under ``policy``, at a decision."""
        if self.player == CHANCE:
            return [(p, c) for (p, _), c in zip(self.chance, self.children)]
        probs = policy[self.info.key]
        return [(probs.get(a, 0.0), c) for a, c in zip(self.info.legal, self.children)]


@dataclass
class Tree:
    """Every deal's betting tree, flattened: ``roots`` holds (probability, node index) per deal."""

    roles: tuple[str, ...]
    nodes: list[Node]
    roots: list[tuple[float, int]]

    def infostates(self) -> dict[str, InfoState]:
        """Every information state, by key (each once)."""
        return {n.info.key: n.info for n in self.nodes if n.info is not None}


def is_enumerable(game_cls: type[Game]) -> bool:
    """Whether a game can be evaluated exactly here: at least two roles and a ``deals()`` hook."""
    return len(game_cls.roles) >= 2 and game_cls.deals is not Game.deals


def is_two_player_zero_sum(game_cls: type[Game]) -> bool:
    """An enumerable two-player zero-sum game (where the average policy converges to equilibrium in self-play)."""
    return is_enumerable(game_cls) and len(game_cls.roles) == 2 and outcome_of(game_cls).competitive


class TooLarge(ValueError):
    """The game is well formed but beyond what exact evaluation enumerates (too many nodes, several samples at once)."""


def build_tree(make_game: Callable[[], Game], max_nodes: int = 2_000_000) -> Tree:
    """Enumerate the game: every deal, then every legal action of every decision (the game's own rules)."""
    probe = make_game()
    deals = probe.deals()
    if deals is None:
        raise ValueError(f"game {probe.name!r} does not list its deals: it cannot be evaluated exactly")
    deals = list(deals)  # a generator is read twice below
    nodes: list[Node] = []

    def expand(game: Game) -> int:
        index = len(nodes)
        nodes.append(Node())
        if len(nodes) > max_nodes:
            raise TooLarge(f"game {probe.name!r} has more than {max_nodes} nodes: too large to enumerate")
        pending = game.chance_outcomes()
        if pending:
            if abs(sum(p for p, _ in pending) - 1) > 1e-9:
                raise ValueError(
                    f"game {probe.name!r}: chance_outcomes() probabilities sum to {sum(p for p, _ in pending)}, not 1"
                )
            nodes[index].player, nodes[index].chance = CHANCE, tuple((float(p), o) for p, o in pending)
            for _, outcome in pending:
                child = copy.deepcopy(game)
                child.apply_chance(outcome)
                nodes[index].children.append(expand(child))
            return index
        turn = game.turn()
        if turn is None:
            rewards = game.rewards()
            nodes[index].returns = tuple(float(rewards[r]) for r in game.roles)
            return index
        if turn.samples > 1:
            raise TooLarge(
                f"game {probe.name!r} asks {turn.role!r} for {turn.samples} samples at once: only one "
                f"action per decision can be enumerated"
            )
        decide(game, turn, index, {})
        return index

    def decide(game: Game, turn: Turn, index: int, chosen: dict[str, str]) -> None:
        """The decision of the next mover at node ``index``. A simultaneous turn is a chain of decisions, one per
        role, each on the observation taken before any of them moved, so a later mover's information state is
        the same whatever the earlier ones chose (it cannot see them); after the last, the moves apply together."""
        role = turn.roles[len(chosen)]
        legal = game.legal_actions(role)
        if not legal:
            raise ValueError(f"game {probe.name!r} lists no legal actions for {role!r}: cannot enumerate")
        messages = tuple((m["role"], m["content"]) for m in game.observe(role))
        nodes[index].player = game.roles.index(role)
        nodes[index].info = InfoState(role, messages, tuple(legal), game.compact_observation(role))
        for action in legal:
            moves = {**chosen, role: action}
            child = after(game, turn, moves)
            if child is None:  # the next mover of the same simultaneous turn, on the same state
                nodes[index].children.append(len(nodes))
                nodes.append(Node())
                decide(game, turn, nodes[index].children[-1], moves)
            else:
                nodes[index].children.append(expand(child))

    for entry in deals:
        if not (
            isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], (int, float)) and 0 <= entry[0] <= 1
        ):
            raise ValueError(f"game {probe.name!r}: deals() must list (probability, deal) pairs, got {entry!r}")
    roots = []
    for probability, deal in deals:
        game = make_game()
        game.reset_deal(deal)
        roots.append((probability, expand(game)))
    total = sum(p for p, _ in roots)
    if abs(total - 1) > 1e-9:
        raise ValueError(f"game {probe.name!r}: deal probabilities sum to {total}, not 1")
    return Tree(tuple(probe.roles), nodes, roots)


def after(game: Game, turn: Turn, moves: dict[str, str]) -> Game | None:
    """A copy of ``game`` once ``moves`` (role -> action text) are played, or None while a simultaneous ``turn``
    still waits for one of its roles."""
    if len(moves) < len(turn.roles):
        return None
    child = copy.deepcopy(game)
    if turn.simultaneous:
        child.step_together({r: child.parse(r, a) for r, a in moves.items()})
    else:
        [(role, action)] = moves.items()
        child.step(role, [child.parse(role, action)])
    return child


def uniform_policy(tree: Tree) -> Policy:
    """Every legal action equally likely at every information state."""
    return {k: {a: 1 / len(i.legal) for a in i.legal} for k, i in tree.infostates().items()}


def policy_value(tree: Tree, policy: Policy) -> tuple[float, ...]:
    """Expected returns of every player when all follow ``policy``."""

    def value(i: int) -> tuple[float, ...]:
        node = tree.nodes[i]
        if not node.children:
            return node.returns
        parts = [(p, value(c)) for p, c in node.branches(policy)]
        return tuple(sum(p * v[seat] for p, v in parts) for seat in range(len(tree.roles)))

    total = [0.0] * len(tree.roles)
    for probability, root in tree.roots:
        for p, v in enumerate(value(root)):
            total[p] += probability * v
    return tuple(total)


def best_response_value(tree: Tree, policy: Policy, player: int) -> float:
    """``player``'s expected return when it best-responds to everyone else playing ``policy``.

    The best action at an information state maximises the sum over its histories of (the others' and chance's
    reach) x (the value of the action, best-responding below); with perfect recall, deeper states are decided
    first by the recursion and memoised.
    """
    members: dict[str, list[tuple[int, float]]] = {}  # infostate key -> [(node, others' reach)]

    def collect(i: int, reach: float) -> None:
        node = tree.nodes[i]
        if not node.children:
            return
        if node.player == player:
            members.setdefault(node.info.key, []).append((i, reach))
            for c in node.children:
                collect(c, reach)
        else:  # the others' and chance's reach
            for p, c in node.branches(policy):
                collect(c, reach * p)

    for probability, root in tree.roots:
        collect(root, probability)
    chosen: dict[str, int] = {}
    memo: dict[int, float] = {}

    def value(i: int) -> float:
        if i in memo:
            return memo[i]
        node = tree.nodes[i]
        if not node.children:
            out = node.returns[player]
        elif node.player == player:
            out = value(node.children[best(node.info.key)])
        else:
            out = sum(p * value(c) for p, c in node.branches(policy) if p)
        memo[i] = out
        return out

    def best(key: str) -> int:
        if key not in chosen:
            histories = members[key]
            n_actions = len(tree.nodes[histories[0][0]].children)
            scores = [sum(reach * value(tree.nodes[h].children[a]) for h, reach in histories) for a in range(n_actions)]
            chosen[key] = max(range(n_actions), key=lambda a: scores[a])
        return chosen[key]

    return sum(probability * value(root) for probability, root in tree.roots)


@dataclass
class Exploitability:
    """NashConv / n and its parts: each seat's best-response value and the policy's own value per seat."""

    exploitability: float
    nash_conv: float
    best_response: tuple[float, ...]
    value: tuple[float, ...]

    def as_dict(self, roles: Sequence[str]) -> dict[str, Any]:
        return {
            "exploitability": self.exploitability,
            "nash_conv": self.nash_conv,
            "best_response": dict(zip(roles, self.best_response)),
            "value": dict(zip(roles, self.value)),
        }


def exploitability(tree: Tree, policy: Policy) -> Exploitability:
    """How much a player gains by best-responding alone to ``policy``, averaged over the seats (NashConv / n)."""
    missing = [k for k in tree.infostates() if k not in policy]
    if missing:
        raise ValueError(
            f"the policy has no probabilities for {len(missing)} information state(s), e.g. "
            f"{tree.infostates()[missing[0]].chat()[-1]['content'][:80]!r}"
        )
    values = policy_value(tree, policy)
    br = tuple(best_response_value(tree, policy, p) for p in range(len(tree.roles)))
    nash_conv = sum(b - v for b, v in zip(br, values))
    return Exploitability(nash_conv / len(tree.roles), nash_conv, br, values)


READ_OFF_STATES = 20_000  # the most information states a model's exact policy is read off at (one prompt each)
TEAM_WORK = 5_000_000  # at most this many node visits (pure policies x tree nodes) for ``team_optimum``


def team_optimum(tree: Tree, work: int = TEAM_WORK) -> float | None:
    """The best team value of a cooperative game over all joint policies, or None when that search is too large.

    A Nash equilibrium of a cooperative game can be far from its best (a babbling equilibrium, where no signal is
    read, has NashConv 0), so cooperative games are measured against the optimum too. The team value is multilinear
    in the players' behaviour strategies, so a pure joint policy attains it: the maximum, over the pure policies of
    every player but one, of that last player's best-response value. The player left out is the one with the most
    pure policies, so the fewest are enumerated."""
    infos = tree.infostates()
    by_player = [[k for k, i in infos.items() if i.role == role] for role in tree.roles]
    counts = [math.prod(len(infos[k].legal) for k in keys) for keys in by_player]
    last = max(range(len(tree.roles)), key=lambda p: counts[p])
    others = [k for p, keys in enumerate(by_player) if p != last for k in keys]
    if math.prod(len(infos[k].legal) for k in others) * len(tree.nodes) > work:
        return None
    best = -math.inf
    for choice in itertools.product(*(infos[k].legal for k in others)):
        policy = {k: {a: 1.0} for k, a in zip(others, choice)}
        best = max(best, best_response_value(tree, policy, last))
    return best


def own_reach(tree: Tree, policy: Policy) -> dict[str, float]:
    """Each information state's reach under its own player's actions alone (the same for all its histories)."""
    reach: dict[str, float] = {}

    def walk(i: int, mine: tuple[float, ...]) -> None:
        node = tree.nodes[i]
        if node.player == CHANCE:
            for c in node.children:
                walk(c, mine)
            return
        if node.info is None:
            return
        reach[node.info.key] = mine[node.player]
        probs = policy[node.info.key]
        for a, c in zip(node.info.legal, node.children):
            nxt = list(mine)
            nxt[node.player] *= probs.get(a, 0.0)
            walk(c, tuple(nxt))

    for _, root in tree.roots:
        walk(root, (1.0,) * len(tree.roles))
    return reach


def average_policy(tree: Tree, policies: Sequence[Policy], weights: Sequence[float] | None = None) -> Policy:
    """The average strategy of a sequence of policies (fictitious play; Heinrich et al. 2015): at each state the
    mix of the policies weighted by their own reach of it, sigma_bar(a|I) = sum_t w_t x_t(I) sigma_t(a|I) /
    sum_t w_t x_t(I); where no policy reaches I, the plain mean."""
    weights = list(weights or [1.0] * len(policies))
    reaches = [own_reach(tree, p) for p in policies]
    out: Policy = {}
    for key, info in tree.infostates().items():
        w = [wt * r.get(key, 0.0) for wt, r in zip(weights, reaches)]
        if sum(w) <= 0:
            w = list(weights)
        total = sum(w)
        out[key] = {a: sum(wi * p[key].get(a, 0.0) for wi, p in zip(w, policies)) / total for a in info.legal}
    return out


def combine(tree: Tree, by_role: dict[str, Policy]) -> Policy:
    """One policy from one per role: each information state takes the policy of the role that acts there."""
    return {k: by_role[info.role][k] for k, info in tree.infostates().items()}


class AverageAccumulator:
    """The running average strategy of a sequence of policies, weighted by each one's own reach (as CFR keeps
    its average): sum_t x_t(I) sigma_t(a|I), normalised on read. Its state is plain JSON."""

    def __init__(self, tree: Tree, state: dict[str, dict[str, float]] | None = None, count: int = 0):
        self.tree, self.sums, self.count = tree, {k: dict(v) for k, v in (state or {}).items()}, count

    def add(self, policy: Policy, weight: float = 1.0) -> None:
        reach = own_reach(self.tree, policy)
        for key, probs in policy.items():
            row = self.sums.setdefault(key, {})
            for a, p in probs.items():
                row[a] = row.get(a, 0.0) + weight * reach.get(key, 0.0) * p
        self.count += 1

    def policy(self) -> Policy:
        out = {}
        for key, info in self.tree.infostates().items():
            row = self.sums.get(key, {})
            total = sum(row.values())
            out[key] = {a: row.get(a, 0.0) / total if total > 0 else 1 / len(info.legal) for a in info.legal}
        return out


def expert_policy(tree: Tree, make_game: Callable[[], Game]) -> Policy:
    """The exact policy of the game's scripted expert (its ``expert_policy(role)`` at every decision)."""
    out: Policy = {}
    for game, info in decision_games(tree, make_game):
        if info.key not in out:
            probs = game.expert_policy(info.role)
            if probs is None:
                raise ValueError(f"{type(game).__name__} does not state its expert's action probabilities")
            out[info.key] = {a: probs.get(a, 0.0) for a in info.legal}
    return out


def decision_games(tree: Tree, make_game: Callable[[], Game]):
    """(game at the node, its information state) for every decision node, by replaying the deals."""
    probe = make_game()
    for (_, root), (_, deal) in zip(tree.roots, probe.deals()):
        game = make_game()
        game.reset_deal(deal)
        stack = [(root, game, {})]  # the node, its game, and the moves made so far in a simultaneous turn
        while stack:
            i, g, pending = stack.pop()
            node = tree.nodes[i]
            if node.player == CHANCE:
                for (_, outcome), child in zip(node.chance, node.children):
                    nxt = copy.deepcopy(g)
                    nxt.apply_chance(outcome)
                    stack.append((child, nxt, {}))
                continue
            if node.info is None:
                continue
            yield g, node.info
            turn = g.turn()
            for action, child in zip(node.info.legal, node.children):
                moves = {**pending, node.info.role: action}
                nxt = after(g, turn, moves)
                stack.append((child, g, moves) if nxt is None else (child, nxt, {}))


def cfr(tree: Tree, iterations: int, plus: bool = True, progress: Callable[[int], None] | None = None) -> Policy:
    """Counterfactual regret minimisation over the tree (Zinkevich et al. 2007, "Regret Minimization in Games
    with Incomplete Information"); ``plus``: CFR+ (Tammelin 2014: regrets floored at 0, alternating updates,
    linearly weighted average). Returns the average strategy, which converges to a Nash equilibrium.

    Regret matching: sigma(a|I) = R+(I,a) / sum_b R+(I,b) (uniform when all are <= 0); after iteration t,
    R(I,a) += pi_-i(h) (v(h.a) - v(h)) summed over h in I, and the average strategy accumulates
    w_t * pi_i(h) * sigma(a|I) with w_t = t (CFR+) or 1 (CFR).
    """
    infos = tree.infostates()
    keys = list(infos)
    index = {k: j for j, k in enumerate(keys)}
    width = {k: len(i.legal) for k, i in infos.items()}
    regret = [[0.0] * width[k] for k in keys]
    average = [[0.0] * width[k] for k in keys]
    node_key = [index[n.info.key] if n.info is not None else -1 for n in tree.nodes]

    def strategy(j: int) -> list[float]:
        positive = [max(r, 0.0) for r in regret[j]]
        total = sum(positive)
        return [p / total for p in positive] if total > 0 else [1 / len(positive)] * len(positive)

    def walk(
        i: int, player: int, reach_me: float, reach_other: float, weight: float, sigmas: list, delta: list
    ) -> float:
        node = tree.nodes[i]
        if node.player == CHANCE:
            return sum(
                p * walk(c, player, reach_me, reach_other * p, weight, sigmas, delta)
                for (p, _), c in zip(node.chance, node.children)
            )
        if node.info is None:
            return node.returns[player]
        j = node_key[i]
        sigma = sigmas[j]
        if node.player != player:
            return sum(
                p * walk(c, player, reach_me, reach_other * p, weight, sigmas, delta)
                for p, c in zip(sigma, node.children)
                if p > 0
            )
        values = [
            walk(c, player, reach_me * p, reach_other, weight, sigmas, delta) for p, c in zip(sigma, node.children)
        ]
        v = sum(p * x for p, x in zip(sigma, values))
        row, avg = delta[j], average[j]
        for a, x in enumerate(values):
            row[a] += reach_other * (x - v)
            avg[a] += weight * reach_me * sigma[a]
        return v

    for t in range(1, iterations + 1):
        for player in range(len(tree.roles)):  # alternating updates: each player against the other's latest
            sigmas = [strategy(j) for j in range(len(keys))]  # the strategy is fixed within one pass
            delta = [[0.0] * width[k] for k in keys]
            for probability, root in tree.roots:
                walk(root, player, 1.0, probability, float(t) if plus else 1.0, sigmas, delta)
            for j, row in enumerate(delta):
                regret[j] = [max(r + d, 0.0) if plus else r + d for r, d in zip(regret[j], row)]
        if progress is not None:
            progress(t)
    out: Policy = {}
    for k, j in index.items():
        total = sum(average[j])
        legal = infos[k].legal
        out[k] = {a: (average[j][x] / total if total > 0 else 1 / len(legal)) for x, a in enumerate(legal)}
    return out
