"""Text folding for keyword matching, so that the way a phone keyboard types does not matter.

Chinese input methods switch between full-width and half-width forms (``ＨＵＭＡＮ`` and
``HUMAN``, ``１２３`` and ``123``, ``！`` and ``!``, the ideographic space); NFKC makes them
equal. Case folding makes ``Human`` equal ``human``. Runs of whitespace become one space and
the ends are trimmed. The emoji presentation selector (U+FE0F) is dropped so that ``❤️``
and ``❤`` match. Chinese characters themselves are left as they are.
"""

from __future__ import annotations

import unicodedata

_DROP = str.maketrans("", "", "\ufe0f")


def fold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).translate(_DROP).casefold().split())
