"""The clients' one-line submissions, one per task type: ``submit_optimization(...)`` is
``submit("optimization", ...)``, and so on for each task type the server ships.

Keyword arguments not named are the task's parameters, as with ``submit``.
``SubmitShortcuts`` is mixed into ``MOFSimClient``, ``AsyncSubmitShortcuts`` into
``AsyncMOFSimClient``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mofsim_client.task import AsyncTask, Task

Priority = str | int | None


class SubmitShortcuts:
    """Mixed into ``MOFSimClient``."""

    if TYPE_CHECKING:

        def submit(
            self,
            task_type: str,
            structure: Any,
            model: str | None = None,
            *,
            priority: Priority = None,
            timeout: float | None = None,
            **params: Any,
        ) -> Task: ...

    def submit_optimization(
        self,
        structure: Any,
        model: str | None = None,
        priority: Priority = None,
        timeout: float | None = None,
        **parameters: Any,
    ) -> Task:
        return self.submit(
            "optimization", structure, model, priority=priority, timeout=timeout, **parameters
        )

    def submit_stability(
        self,
        structure: Any,
        model: str | None = None,
        priority: Priority = None,
        timeout: float | None = None,
        **parameters: Any,
    ) -> Task:
        return self.submit(
            "stability", structure, model, priority=priority, timeout=timeout, **parameters
        )

    def submit_bulk_modulus(
        self,
        structure: Any,
        model: str | None = None,
        priority: Priority = None,
        timeout: float | None = None,
        **parameters: Any,
    ) -> Task:
        return self.submit(
            "bulk-modulus", structure, model, priority=priority, timeout=timeout, **parameters
        )

    def submit_heat_capacity(
        self,
        structure: Any,
        model: str | None = None,
        priority: Priority = None,
        timeout: float | None = None,
        **parameters: Any,
    ) -> Task:
        return self.submit(
            "heat-capacity", structure, model, priority=priority, timeout=timeout, **parameters
        )

    def submit_interaction_energy(
        self,
        structure: Any,
        model: str | None = None,
        priority: Priority = None,
        timeout: float | None = None,
        **parameters: Any,
    ) -> Task:
        return self.submit(
            "interaction-energy", structure, model, priority=priority, timeout=timeout, **parameters
        )

    def submit_single_point(
        self,
        structure: Any,
        model: str | None = None,
        priority: Priority = None,
        timeout: float | None = None,
        **parameters: Any,
    ) -> Task:
        return self.submit(
            "single-point-energy",
            structure,
            model,
            priority=priority,
            timeout=timeout,
            **parameters,
        )


class AsyncSubmitShortcuts:
    """Mixed into ``AsyncMOFSimClient``."""

    if TYPE_CHECKING:

        async def submit(
            self,
            task_type: str,
            structure: Any,
            model: str | None = None,
            *,
            priority: Priority = None,
            timeout: float | None = None,
            **params: Any,
        ) -> AsyncTask: ...

    async def submit_optimization(
        self,
        structure: Any,
        model: str | None = None,
        priority: Priority = None,
        timeout: float | None = None,
        **parameters: Any,
    ) -> AsyncTask:
        return await self.submit(
            "optimization", structure, model, priority=priority, timeout=timeout, **parameters
        )

    async def submit_stability(
        self,
        structure: Any,
        model: str | None = None,
        priority: Priority = None,
        timeout: float | None = None,
        **parameters: Any,
    ) -> AsyncTask:
        return await self.submit(
            "stability", structure, model, priority=priority, timeout=timeout, **parameters
        )

    async def submit_bulk_modulus(
        self,
        structure: Any,
        model: str | None = None,
        priority: Priority = None,
        timeout: float | None = None,
        **parameters: Any,
    ) -> AsyncTask:
        return await self.submit(
            "bulk-modulus", structure, model, priority=priority, timeout=timeout, **parameters
        )

    async def submit_heat_capacity(
        self,
        structure: Any,
        model: str | None = None,
        priority: Priority = None,
        timeout: float | None = None,
        **parameters: Any,
    ) -> AsyncTask:
        return await self.submit(
            "heat-capacity", structure, model, priority=priority, timeout=timeout, **parameters
        )

    async def submit_interaction_energy(
        self,
        structure: Any,
        model: str | None = None,
        priority: Priority = None,
        timeout: float | None = None,
        **parameters: Any,
    ) -> AsyncTask:
        return await self.submit(
            "interaction-energy", structure, model, priority=priority, timeout=timeout, **parameters
        )

    async def submit_single_point(
        self,
        structure: Any,
        model: str | None = None,
        priority: Priority = None,
        timeout: float | None = None,
        **parameters: Any,
    ) -> AsyncTask:
        return await self.submit(
            "single-point-energy",
            structure,
            model,
            priority=priority,
            timeout=timeout,
            **parameters,
        )
