"""Read scripts that many tasks call at once travel together, in one round trip.

Under concurrency most of the cost of a read is redis-py's, per command: taking a
connection from the pool, arming timeouts, packing arguments, one ``send`` and one
wake-up per reply. :class:`ReadBatcher` lets a read that starts while another is in
flight wait for the end of the current event-loop step instead, then sends every read
queued by then at once and hands each caller its own reply or its own error:

* page reads of timelines (:data:`~aiostream.storage.redis._scripts.READ_TIMELINE`)
  become one :data:`~aiostream.storage.redis._scripts.READ_TIMELINES` call, which reads
  them all in one script (a failed read fails only its caller);
* other reads go in the same non-transactional pipeline, one command each.

A read with nothing else in flight is sent at once, as a plain call, so a lone caller
pays nothing for this. Only idempotent reads go through it: a pipeline that fails on the
connection is sent again by redis-py's retry policy, and its error reaches every caller
of the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from aiostream.storage.redis import _scripts as scripts
from aiostream.storage.redis._scripts import Script

_Call = tuple[Script, Sequence[str], Sequence[Any], "asyncio.Future[Any]"]


class ReadBatcher:
    """Coalesces concurrent script calls on one client (see the module docstring).

    Args:
        client: A standalone ``redis.asyncio.Redis`` (its pool is shared by the
            direct calls and the batches).
    """

    __slots__ = ("_client", "_in_flight", "_queued", "_tasks")

    def __init__(self, client: Any) -> None:
        self._client = client
        self._in_flight = 0
        self._queued: list[_Call] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """``script(client, keys, args)``, sent alone or with the reads queued with it.

        :data:`~aiostream.storage.redis._scripts.READ_TIMELINE` calls must pass
        ``[timeline]`` and ``[numbers, opening]``, the same ``opening`` for all.
        """
        if not self._in_flight and not self._queued:
            self._in_flight += 1
            try:
                return await script(self._client, keys, args)
            finally:
                self._in_flight -= 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queued:
            loop.call_soon(self._flush)
        self._queued.append((script, keys, args, future))
        return await future

    def _flush(self) -> None:
        batch, self._queued = self._queued, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        # The loop keeps only a weak reference to a task.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Call]) -> None:
        pages = [call for call in batch if call[0] is scripts.READ_TIMELINE]
        merge = len(pages) > 1
        # (script, keys, args, the calls it answers)
        commands: list[tuple[Script, Sequence[str], Sequence[Any], list[_Call]]] = [
            (call[0], call[1], call[2], [call])
            for call in batch
            if not (merge and call[0] is scripts.READ_TIMELINE)
        ]
        if merge:
            timelines = [keys[0] for _, keys, _, _ in pages]
            numbers = [args[0] for _, _, args, _ in pages]
            opening = pages[0][2][1]
            commands.append((scripts.READ_TIMELINES, timelines, [opening, *numbers], pages))
        self._in_flight += 1
        try:
            if len(commands) == 1:
                script, keys, args, _ = commands[0]
                replies: list[Any] = [await _settle(script(self._client, keys, args))]
            else:
                pipe = self._client.pipeline(transaction=False)
                for script, keys, args, _ in commands:
                    script.queue(pipe, keys, args)
                replies = list(await pipe.execute(raise_on_error=False))
        except Exception as exc:  # the connection failed: every caller gets the error
            for *_, future in batch:
                _resolve(future, exc)
            return
        finally:
            self._in_flight -= 1
        for (script, keys, args, calls), reply in zip(commands, replies, strict=True):
            if isinstance(reply, NoScriptError):
                # The server lost its scripts: this call loads it again (EVAL).
                reply = await _settle(script(self._client, keys, args))
            if len(calls) == 1:
                _resolve(calls[0][3], reply)
            elif isinstance(reply, Exception):
                for call in calls:
                    _resolve(call[3], reply)
            else:
                for call, page in zip(calls, reply, strict=True):
                    _resolve(call[3], page)


def _resolve(future: asyncio.Future[Any], reply: Any) -> None:
    if future.done():  # its caller was cancelled
        return
    if isinstance(reply, Exception):
        future.set_exception(reply)
    else:
        future.set_result(reply)


async def _settle(call: Any) -> Any:
    """The reply of ``call``, or the error it raised."""
    try:
        return await call
    except Exception as exc:
        return exc
