"""Prompts: how an agent turns a game's chat observation into token ids, and token ids back into text.

Rendering goes through the tokenizer's chat template; ``render_prompts`` renders a batch in one template call and one
tokenisation, and a ``PromptMemo`` keeps what one tokenizer has rendered, since observations recur.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict

from selfplay.agents.base import Request


def observation(request: Request, observer: str, bare_system: bool = False) -> list[dict]:
    """The messages an agent reads: the game's chat, or (``compact``) its one-line observation as the first user
    turn followed by any re-prompts of this turn; ``bare_system`` puts an empty system turn first (for chat
    templates that would otherwise add a default system prompt longer than the observation)."""
    if observer != "compact" or request.compact is None:
        return request.messages
    first = next((i for i, m in enumerate(request.messages) if m["role"] == "user"), len(request.messages) - 1)
    bare = [{"role": "system", "content": ""}] if bare_system else []
    return [*bare, {"role": "user", "content": request.compact}, *request.messages[first + 1 :]]


def adds_default_system(tokenizer) -> bool:
    """Whether the chat template inserts a system prompt of its own when the messages have none (SmolLM2's does)."""
    probe = [{"role": "user", "content": "x"}]
    return len(render_prompt(tokenizer, probe)) > len(
        render_prompt(tokenizer, [{"role": "system", "content": ""}, *probe])
    )


def render_prompt(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of a chat observation with the generation prompt appended."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


class PromptMemo:
    """Token ids of the conversations one tokenizer has rendered, keyed by the conversation's text (a game's
    observations recur across turns, games and training steps: TicTacToe has 5,478 positions). At most ``limit``
    kept (as 8-byte arrays: ~2 KB for a 150-token prompt and its key), oldest out first; everything is dropped when
    the tokenizer's chat template changes."""

    def __init__(self, limit: int = 16384):
        self.limit, self.template, self.ids = limit, None, OrderedDict()

    def check(self, tokenizer) -> None:
        template = getattr(tokenizer, "chat_template", None)
        if template != self.template:
            self.template = template
            self.ids.clear()

    def add(self, keys: list[str], ids: list[list[int]]) -> None:
        self.ids.update(zip(keys, (array("q", row) for row in ids)))
        while len(self.ids) > self.limit:
            self.ids.popitem(last=False)


def render_prompts(tokenizer, conversations: list[list[dict]], memo: PromptMemo | None = None) -> list[list[int]]:
    """:func:`render_prompt` of many observations: rendered in one template call, tokenised in one batch (what
    ``apply_chat_template(tokenize=True)`` does per conversation, at half the cost); with a ``memo``, conversations
    it holds are not rendered again."""
    if not conversations:
        return []
    first: dict[str, int] = {}  # identical observations (every game's opening, say) are rendered once
    slot = [first.setdefault(repr(c), len(first)) for c in conversations]
    keys = list(first)
    known: list[list[int] | array | None] = [None] * len(keys)
    if memo is not None:
        memo.check(tokenizer)
        known = [memo.ids.get(k) for k in keys]
    todo = [j for j, ids in enumerate(known) if ids is None]
    unique = [None] * len(keys)
    for c, j in zip(conversations, slot):
        unique[j] = c
    if todo:
        fresh = _render(tokenizer, [unique[j] for j in todo])
        for j, ids in zip(todo, fresh):
            known[j] = ids
        if memo is not None:
            memo.add([keys[j] for j in todo], fresh)
    return [list(known[j]) for j in slot]


def _render(tokenizer, conversations: list[list[dict]]) -> list[list[int]]:
    """Token ids of ``conversations``: one template call, one batch tokenisation."""
    texts = tokenizer.apply_chat_template(conversations, add_generation_prompt=True, tokenize=False)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    # the fast tokenizer's ids alone (no per-row BatchEncoding), unless an earlier call of the tokenizer with padding
    # or truncation left them switched on in its backend: the generic call switches them off again
    if (
        backend is not None
        and getattr(tokenizer, "is_fast", False)
        and backend.padding is None
        and backend.truncation is None
    ):
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    return [
        list(row) for row in tokenizer(texts, add_special_tokens=False, padding=False, truncation=False)["input_ids"]
    ]


def decode_texts(tokenizer, rows: list[list[int]]) -> list[str]:
    """``tokenizer.decode(row, skip_special_tokens=True)`` of every row; a fast tokenizer decodes them in one batch
    (unless it cleans up tokenization spaces, which only its Python side does)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if (
        backend is not None
        and getattr(tokenizer, "is_fast", False)
        and not getattr(tokenizer, "clean_up_tokenization_spaces", True)
    ):
        return backend.decode_batch(rows, skip_special_tokens=True)
    return [tokenizer.decode(row, skip_special_tokens=True) for row in rows]
