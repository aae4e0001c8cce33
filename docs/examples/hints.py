"""An example cooperative game with hidden information: Hints, a two-player card game in the spirit of Hanabi.

    selfplay check-game docs/examples/hints.py
    selfplay play docs/examples/hints.py expert expert --games 100      # the expert with itself: the team's value
    selfplay tournament docs/examples/hints.py --agents random expert --games 40 --out runs/hints-tournament
    selfplay train configs/your_game_tiny.yaml                          # the tiny recipe written for this file

Two players hold two cards each. A player sees its partner's cards but never its own. A card has a colour (red or
blue) and a rank (1, 2 or 3); the deck holds 1, 1, 2, 2, 3 of each colour. The team builds one pile per colour
upwards from 1. On its turn a player either

- plays a card of its hand (``play 1``): if it is the next rank of its colour's pile it goes there, else the team
  loses a life; or
- discards a card (``discard 2``), which gives back a hint token; or
- spends a hint token to tell its partner every card of one colour or one rank it holds (``hint red``, ``hint 2``).

A played or discarded card is replaced from the deck. The game ends when both piles reach 3, when the lives run out,
or one turn each after the deck runs out. Both players receive the team's score, the cards on the piles, as a
share of the 6 possible: a cooperative outcome, reported as a mean team reward with an interval.

What this file shows, beyond the required methods (see games/core.py for the whole API):

- ``outcome = Outcome("cooperative", ...)``: every role gets the one team reward; reports rank teams by their value
  in self-play, the measure of a cooperative game.
- ``resample_hidden``: the leak test of ``selfplay check-game`` re-draws what a role cannot see (its own cards and
  the deck, consistently with the hints it was given) and checks that nothing it is shown changes. Without it the
  leak test cannot run, and check-game says so.
- ``compact_observation``: the same information as one short line, for tiny models (``observer: compact``).
- ``expert_action``: a scripted expert that uses only the role's own information (the ``expert`` agent).
- ``legal_actions`` (and so the ``random`` agent, and constrained decoding for models).
- options as dataclass fields (``lives``, ``hints``): ``--option lives=3``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from selfplay.games import Failure, Game, InvalidAction, Outcome, Turn, system, user

COLOURS = ("red", "blue")
RANKS = (1, 2, 3)
DECK = [(c, r) for c in COLOURS for r in (1, 1, 2, 2, 3)]
HAND = 2
MAX_SCORE = len(COLOURS) * max(RANKS)
RULES = (
    "Hints: a cooperative card game for two. You see your partner's cards, never your own. Build one pile per "
    "colour upwards from 1 (red and blue, ranks 1 to 3). On your turn: 'play N' plays your card N (a wrong card "
    "costs a life), 'discard N' discards it and gives back a hint token, 'hint COLOUR' or 'hint RANK' tells your "
    "partner which of their cards have it (costs a token). The team scores the cards on the piles."
)


@dataclass
class Hints(Game):
    """A two-player cooperative card game with hidden hands (Hanabi-like), written as an example to copy."""

    name = "hints"
    description = "cooperative cards: see your partner's hand, not your own (an example with hidden information)"
    roles = ("first", "second")
    reward_range = (0.0, 1.0)
    outcome = Outcome("cooperative", win_lose=False, success=1.0)
    hidden_information = True  # each player's own hand and the deck
    max_turns = 80
    action_format = "one of: play N, discard N, hint COLOUR, hint RANK"

    lives: int = 2
    hints: int = 3  # hint tokens at the start, and the most the team can hold

    def __post_init__(self) -> None:
        if not 1 <= self.lives <= 5 or not 0 <= self.hints <= 8:
            raise ValueError(f"hints lives={self.lives}, hints={self.hints}: expected 1-5 lives and 0-8 hint tokens")

    # -- the rules ------------------------------------------------------------------------------------------------
    def reset(self, seed: int) -> None:
        self.seed_rng(seed)
        deck = list(DECK)
        self.rng.shuffle(deck)
        self.hands = {r: [deck.pop() for _ in range(HAND)] for r in self.roles}
        # what each player knows of each of its own cards: the colours and ranks it can still be
        self.known = {r: [(set(COLOURS), set(RANKS)) for _ in range(HAND)] for r in self.roles}
        self.deck = deck
        self.piles = {c: 0 for c in COLOURS}
        self.lives_left, self.tokens = self.lives, self.hints
        self.moves, self.last_round = 0, None  # last_round: turns left once the deck is empty
        self.history: list[str] = []

    def turn(self) -> Turn | None:
        if self.score == MAX_SCORE or self.lives_left == 0 or self.last_round == 0:
            return None
        return Turn(self.roles[self.moves % 2])

    @property
    def score(self) -> int:
        return sum(self.piles.values())

    def partner(self, role: str) -> str:
        return self.roles[1 - self.roles.index(role)]

    def parse(self, role: str, text: str) -> tuple[str, str]:
        words = text.strip().strip(".").lower().split()
        if len(words) != 2 or words[0] not in ("play", "discard", "hint"):
            raise InvalidAction(Failure.PARSE_ERROR, f"expected {self.action_format}, got {text[:60]!r}")
        action = (words[0], words[1])
        if f"{action[0]} {action[1]}" not in self.legal_actions(role):
            raise InvalidAction(
                Failure.ILLEGAL, f"{text.strip()!r} is not legal now; legal: {', '.join(self.legal_actions(role))}"
            )
        return action

    def step(self, role: str, actions: list) -> None:
        verb, what = actions[0]
        if verb == "hint":
            self._hint(self.partner(role), what)
        else:
            slot = int(what) - 1
            colour, rank = self.hands[role].pop(slot)
            self.known[role].pop(slot)
            if verb == "play" and self.piles[colour] == rank - 1:
                self.piles[colour] = rank
            elif verb == "play":
                self.lives_left -= 1
            else:
                self.tokens = min(self.hints, self.tokens + 1)
            if self.deck:
                self.hands[role].append(self.deck.pop())
                self.known[role].append((set(COLOURS), set(RANKS)))
            self.history.append(f"{role} {'played' if verb == 'play' else 'discarded'} {colour} {rank}")
        self.moves += 1
        if self.last_round is not None:
            self.last_round -= 1
        elif not self.deck:
            self.last_round = 2  # one more turn each

    def _hint(self, receiver: str, what: str) -> None:
        self.tokens -= 1
        for (colour, rank), (colours, ranks) in zip(self.hands[receiver], self.known[receiver]):
            if what in COLOURS:
                colours.intersection_update({what} if colour == what else colours - {what})
            else:
                ranks.intersection_update({int(what)} if rank == int(what) else ranks - {int(what)})
        self.history.append(f"{self.partner(receiver)} hinted {what} to {receiver}")

    def rewards(self) -> dict[str, float]:
        team = self.score / (MAX_SCORE)
        return {r: team for r in self.roles}

    def legal_actions(self, role: str) -> list[str]:
        slots = [str(i + 1) for i in range(len(self.hands[role]))]
        hints = []
        if self.tokens:  # a hint must touch at least one of the partner's cards
            held = self.hands[self.partner(role)]
            hints = [c for c in COLOURS if any(card[0] == c for card in held)] + [
                str(r) for r in RANKS if any(card[1] == r for card in held)
            ]
        return [f"play {s}" for s in slots] + [f"discard {s}" for s in slots] + [f"hint {h}" for h in hints]

    def info(self) -> dict:
        return {"score": self.score, "lives_left": self.lives_left, "turns": self.moves}

    # -- what a role sees -----------------------------------------------------------------------------------------
    def observe(self, role: str) -> list:
        partner = self.partner(role)
        theirs = ", ".join(f"{c} {r}" for c, r in self.hands[partner])
        mine = "; ".join(f"card {i + 1}: {_knowledge(k)}" for i, k in enumerate(self.known[role]))
        piles = ", ".join(f"{c} {n}" for c, n in self.piles.items())
        last = self.history[-1] if self.history else "nothing yet"
        return [
            system(f"{RULES} Answer with {self.action_format}."),
            user(
                f"Piles: {piles}. Lives: {self.lives_left}. Hint tokens: {self.tokens}. Deck: {len(self.deck)} "
                f"cards. Your partner holds: {theirs}. What you know of your cards: {mine}. Last move: {last}."
            ),
        ]

    def compact_observation(self, role: str) -> str:
        piles = "".join(f"{c[0].upper()}{n}" for c, n in self.piles.items())
        theirs = "".join(f"{c[0]}{r}" for c, r in self.hands[self.partner(role)])
        mine = "".join(_short(k) for k in self.known[role])
        return f"{piles} L{self.lives_left} H{self.tokens} D{len(self.deck)} P{theirs} K{mine}:"

    def resample_hidden(self, role: str, rng: random.Random) -> None:
        """Re-draw ``role``'s own cards and the deck from the cards it has not seen, each own card consistent with
        the hints it was given (rejection sampling; the real deal satisfies them, so a draw always exists)."""
        unseen = self.hands[role] + self.deck
        for _ in range(200):
            rng.shuffle(unseen)
            hand, rest = unseen[: len(self.hands[role])], unseen[len(self.hands[role]) :]
            if all(c in colours and r in ranks for (c, r), (colours, ranks) in zip(hand, self.known[role])):
                self.hands[role], self.deck = hand, rest
                return

    # -- a scripted expert: plays what it knows is playable, hints what its partner can play, else discards ------
    def expert_action(self, role: str, rng: random.Random) -> str:
        for i, (colours, ranks) in enumerate(self.known[role]):
            if all(self.piles[c] == r - 1 for c in colours for r in ranks):  # every card it can be is playable
                return f"play {i + 1}"
        partner = self.partner(role)
        if self.tokens:
            for (colour, rank), (colours, ranks) in zip(self.hands[partner], self.known[partner]):
                if self.piles[colour] != rank - 1 or (len(colours) == 1 and len(ranks) == 1):
                    continue  # not playable, or the partner knows it already
                # playable: tell what the partner does not know yet, the rank first where the rank alone suffices
                rank_suffices = all(n == rank - 1 for n in self.piles.values())
                return f"hint {rank}" if rank_suffices or len(colours) == 1 else f"hint {colour}"
        useless = [
            i
            for i, (colours, ranks) in enumerate(self.known[role])
            if all(r <= self.piles[c] for c in colours for r in ranks)
        ]
        least_known = min(range(len(self.known[role])), key=lambda i: -sum(map(len, self.known[role][i])))
        return f"discard {(useless or [least_known])[0] + 1}"


def _knowledge(known: tuple[set, set]) -> str:
    colours, ranks = known
    colour = next(iter(colours)) if len(colours) == 1 else "colour unknown"
    rank = str(next(iter(ranks))) if len(ranks) == 1 else "rank " + "/".join(map(str, sorted(ranks)))
    return f"{colour}, {rank}"


def _short(known: tuple[set, set]) -> str:
    colours, ranks = known
    return (next(iter(colours))[0] if len(colours) == 1 else "?") + (str(next(iter(ranks))) if len(ranks) == 1 else "?")
