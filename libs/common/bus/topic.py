"""AMQP topic matching, exactly as RabbitMQ's topic exchange does it.

Keys and patterns are split on dots into words; an empty key has no words, while ``a.`` has
two (the second empty). ``*`` matches exactly one word (an empty word too), ``#`` zero or
more. The integration suite checks the same table against the real broker.
"""

from __future__ import annotations

from functools import lru_cache


def words(key: str) -> tuple[str, ...]:
    return tuple(key.split(".")) if key else ()


def matches(pattern: str, key: str) -> bool:
    return _match(words(pattern), words(key))


@lru_cache(maxsize=4096)
def _match(pattern: tuple[str, ...], key: tuple[str, ...]) -> bool:
    # reachable[j]: the pattern read so far can consume exactly key[:j].
    reachable = [True] + [False] * len(key)
    for word in pattern:
        if word == "#":
            for j in range(1, len(key) + 1):
                reachable[j] = reachable[j] or reachable[j - 1]
        else:
            for j in range(len(key), 0, -1):
                reachable[j] = reachable[j - 1] and (word in ("*", key[j - 1]))
            reachable[0] = False
    return reachable[len(key)]
