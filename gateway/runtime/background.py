"""A sweep that runs in the background of the daemon: started once, cancelled at stop."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["Background"]


class Background:
    """Owns one task running ``_run`` (named ``task_name``); ``stop`` cancels and awaits it."""

    task_name = "background"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        raise NotImplementedError
