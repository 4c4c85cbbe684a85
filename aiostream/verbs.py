"""Verbs: what an actor did (follow, comment, love, add, or your own).

A verb is a class with a small integer ``id``, an ``infinitive`` and a ``past_tense``.
Stored activities keep only the id, so every verb must be registered before data that
uses it is read::

    >>> from aiostream.verbs import Verb, VerbRegistry
    >>> class Pin(Verb):
    ...     id = 5
    ...     infinitive = "pin"
    ...     past_tense = "pinned"
    >>> registry = VerbRegistry()  # aiostream.register() uses the default registry
    >>> registry.register(Pin) is Pin
    True
    >>> registry.get(5).past_tense
    'pinned'
"""

from __future__ import annotations

from typing import ClassVar

from aiostream.exceptions import UnknownVerbError, ValidationError

__all__ = [
    "Add",
    "Comment",
    "Follow",
    "Love",
    "Verb",
    "VerbRegistry",
    "default_registry",
    "get_verb_by_id",
    "register",
]


class Verb:
    """Base class for verbs. Subclass it, set the three attributes, :func:`register` it."""

    id: ClassVar[int] = 0
    infinitive: ClassVar[str] = "verb"
    past_tense: ClassVar[str] = "verbed"

    def __str__(self) -> str:
        return self.infinitive

    @classmethod
    def serialize(cls) -> int:
        """The stored form of the verb: its id."""
        return cls.id


class VerbRegistry:
    """Maps verb ids to verb classes. Each registry is independent; nothing is global but
    :data:`default_registry`, which the module-level helpers use."""

    def __init__(self) -> None:
        self._by_id: dict[int, type[Verb]] = {}

    def register(self, verb: type[Verb]) -> type[Verb]:
        """Register ``verb`` (returned, so it works as a class decorator).

        Raises:
            ValidationError: ``verb`` is not a Verb subclass, its id is not an int, or the id
                is taken by a different class.
        """
        if not (isinstance(verb, type) and issubclass(verb, Verb)):
            raise ValidationError("verb", f"expected a Verb subclass, got {verb!r}")
        if isinstance(verb.id, bool) or not isinstance(verb.id, int) or verb.id < 0:
            raise ValidationError("verb.id", f"expected a non-negative int, got {verb.id!r}")
        current = self._by_id.get(verb.id)
        if current is not None and current is not verb:
            raise ValidationError(
                "verb.id", f"id {verb.id} is already registered to {current.__qualname__}"
            )
        self._by_id[verb.id] = verb
        return verb

    def get(self, verb_id: int) -> type[Verb]:
        """Return the verb registered under ``verb_id``.

        Raises:
            UnknownVerbError: nothing is registered under that id.
        """
        try:
            return self._by_id[verb_id]
        except (KeyError, TypeError):
            raise UnknownVerbError(verb_id) from None

    def is_registered(self, verb: type[Verb]) -> bool:
        """True when ``verb`` itself is the class registered under its id."""
        return self._by_id.get(verb.id) is verb

    def __contains__(self, verb_id: object) -> bool:
        return verb_id in self._by_id


class Follow(Verb):
    """Stock verb 1."""

    id = 1
    infinitive = "follow"
    past_tense = "followed"


class Comment(Verb):
    """Stock verb 2."""

    id = 2
    infinitive = "comment"
    past_tense = "commented"


class Love(Verb):
    """Stock verb 3."""

    id = 3
    infinitive = "love"
    past_tense = "loved"


class Add(Verb):
    """Stock verb 4."""

    id = 4
    infinitive = "add"
    past_tense = "added"


default_registry = VerbRegistry()
for _stock in (Follow, Comment, Love, Add):
    default_registry.register(_stock)


def register(verb: type[Verb]) -> type[Verb]:
    """Register ``verb`` in the default registry (usable as a class decorator)."""
    return default_registry.register(verb)


def get_verb_by_id(verb_id: int) -> type[Verb]:
    """Return the verb class registered under ``verb_id`` in the default registry."""
    return default_registry.get(verb_id)
