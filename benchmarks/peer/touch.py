"""What a read does with the page it got, the same on both libraries: nothing (flat
feeds), or a group read's two ways, *render* (what a notification list shows) and *full*
(every field of every activity). Imported by ``benchmarks/peer_bench.py`` and by
``sf_driver.py`` (which runs in Stream Framework's own virtualenv, beside this file), so it
imports nothing of either library."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def render(groups: list[Any]) -> int:
    """What a notification list shows of each group: its key, verb, counts, actors,
    newest activity, times and seen / read; returns how many groups."""
    shown = []
    for g in groups:
        last = g.last_activity
        counts = (g.activity_count, g.actor_count, g.actor_ids)
        times = (last.time, g.created_at, g.updated_at, g.is_seen(), g.is_read())
        shown.append((g.group, g.verb, counts, last.actor_id, times))
    return len(shown)


def full(groups: list[Any]) -> int:
    """Every field of every activity of each group; returns how many groups."""
    shown = [
        [
            (a.actor_id, a.verb, a.object_id, a.target_id, a.time, a.extra_context)
            for a in g.activities
        ]
        for g in groups
    ]
    return len(shown)


TOUCH: dict[str, Callable[[list[Any]], int]] = {"none": len, "render": render, "full": full}
