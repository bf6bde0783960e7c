"""Which keyword rules could match a text, found without trying every rule in turn.

A shop's rules are mostly keyword rules, and a file may hold a thousand of them. Trying each
in turn costs a fraction of a microsecond per rule, so a message that reaches the end of a
long file would cost most of a millisecond. Instead each keyword rule is filed once under a
piece of its keyword that the text must then contain:

* ``contains``: one of the keyword's two-character pieces (one character for a one-character
  keyword), the piece that the fewest other keywords share, so that a text calls up few rules;
* ``equals``: the whole keyword;
* ``starts_with``: the keyword's first two characters (or one).

For a text, the pieces it contains call up the rules filed under them. That is a necessary
condition only: the rules called up, and every rule that has no keyword to file (a regex,
no text condition), are then tried as usual, in file order. The result is the same as
trying every rule; only the rules that cannot match are skipped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Literal

import msgspec

KeywordMode = Literal["equals", "contains", "starts_with"]


class Keywords(msgspec.Struct, frozen=True):
    """A rule's text condition holds only if the text has one of these words (as ``mode``)."""

    mode: KeywordMode
    folded: bool
    """The words are folded and must be compared with the folded text."""
    words: tuple[str, ...]


def _pieces(word: str) -> Iterable[str]:
    if len(word) == 1:
        yield word
    for i in range(len(word) - 1):
        yield word[i : i + 2]


class _Files:
    """One fold mode's filing: piece → positions of the rules filed under it."""

    def __init__(self) -> None:
        self.contains: dict[str, list[int]] = {}
        self.equals: dict[str, list[int]] = {}
        self.starts: dict[str, list[int]] = {}

    @property
    def empty(self) -> bool:
        return not (self.contains or self.equals or self.starts)

    def add(self, table: dict[str, list[int]], key: str, position: int) -> None:
        slot = table.setdefault(key, [])
        if not slot or slot[-1] != position:
            slot.append(position)

    def hits(self, text: str, into: set[int]) -> None:
        contains, get = self.contains, self.contains.get
        if contains:
            for i in range(len(text)):
                found = get(text[i])
                if found:
                    into.update(found)
                found = get(text[i : i + 2])
                if found:
                    into.update(found)
        found = self.equals.get(text)
        if found:
            into.update(found)
        if self.starts:
            for key in (text[:1], text[:2]):
                found = self.starts.get(key)
                if found:
                    into.update(found)


class KeywordIndex:
    """Over one list of candidate rules: the positions worth trying for a given text."""

    def __init__(self, keywords: Sequence[Keywords | None]) -> None:
        # A rule with an empty word (the compiler refuses them) could match anything: try it.
        keywords = [k if k is None or all(k.words) else None for k in keywords]
        self._always = tuple(i for i, k in enumerate(keywords) if k is None)
        self._files = {True: _Files(), False: _Files()}
        shared = Counter(
            piece
            for k in keywords
            if k is not None and k.mode == "contains"
            for word in k.words
            for piece in set(_pieces(word))
        )
        for position, k in enumerate(keywords):
            if k is None:
                continue
            files = self._files[k.folded]
            for word in k.words:
                if k.mode == "equals":
                    files.add(files.equals, word, position)
                elif k.mode == "starts_with":
                    files.add(files.starts, word[:2], position)
                else:
                    rarest = min(_pieces(word), key=lambda piece: shared[piece])
                    files.add(files.contains, rarest, position)
        self._used = tuple(mode for mode in (True, False) if not self._files[mode].empty)

    @property
    def useful(self) -> bool:
        """Whether any rule is filed (else trying every rule is just as quick)."""
        return bool(self._used)

    def positions(self, folded: str, raw: str) -> list[int]:
        """The positions to try, in file order, for a text (given folded and as written)."""
        hits: set[int] = set(self._always)
        for mode in self._used:
            self._files[mode].hits(folded if mode else raw, hits)
        return sorted(hits)
