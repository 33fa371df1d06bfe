"""Many tasks at once with the async client: an energy-volume scan of copper.

Submits ``--count`` single-point tasks (copper at lattice constants spread around the
equilibrium), awaits them all concurrently, and prints one row per task in the order
they finished, then the lattice constant with the lowest energy.

    python examples/async_many.py --count 20
    python examples/async_many.py --count 200 --model sevennet-0

The server is ``--server`` or ``$MOFSIM_SERVER``, the key ``--api-key`` or
``$MOFSIM_API_KEY``.  Only the SDK is needed here (httpx).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from mofsim_client import AsyncMOFSimClient, AsyncTask, MOFSimError, SinglePointResult


def copper_cif(a: float) -> str:
    """The 4-atom cubic cell of fcc copper with lattice constant ``a`` (A), as CIF text."""
    sites = [(0.0, 0.0, 0.0), (0.0, 0.5, 0.5), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0)]
    rows = [f"Cu{i} Cu {x:.4f} {y:.4f} {z:.4f}" for i, (x, y, z) in enumerate(sites)]
    return "\n".join(
        [
            "data_Cu",
            f"_cell_length_a {a:.5f}",
            f"_cell_length_b {a:.5f}",
            f"_cell_length_c {a:.5f}",
            "_cell_angle_alpha 90",
            "_cell_angle_beta 90",
            "_cell_angle_gamma 90",
            "_symmetry_space_group_name_H-M 'P 1'",
            "loop_",
            "_atom_site_label",
            "_atom_site_type_symbol",
            "_atom_site_fract_x",
            "_atom_site_fract_y",
            "_atom_site_fract_z",
            *rows,
            "",
        ]
    )


async def run(
    server: str | None, api_key: str | None, model: str, count: int, timeout: float
) -> int:
    lattice = [3.45 + 0.3 * k / max(count - 1, 1) for k in range(count)]
    started = time.monotonic()
    async with AsyncMOFSimClient(server, api_key=api_key) as client:
        # Submissions go out concurrently too; each carries an id made here, so a
        # submission retried after a dropped connection is never queued twice.
        tasks: list[AsyncTask] = list(
            await asyncio.gather(
                *(
                    client.submit_single_point(
                        copper_cif(a), model=model, structure_name=f"Cu a={a:.3f}"
                    )
                    for a in lattice
                )
            )
        )
        print(f"submitted {len(tasks)} tasks in {time.monotonic() - started:.1f} s")
        a_of = {task.id: a for task, a in zip(tasks, lattice, strict=True)}

        async def finish(task: AsyncTask) -> tuple[AsyncTask, SinglePointResult | MOFSimError]:
            try:  # one event stream per waiting task, all on one connection pool
                result = await task.wait(timeout=timeout)
            except MOFSimError as exc:
                return task, exc
            assert isinstance(result, SinglePointResult)
            return task, result

        energies: dict[float, float] = {}
        failures = 0
        print(f"{'task':<22} {'a (A)':>7} {'E (eV)':>10} {'P (GPa)':>9}")
        for next_done in asyncio.as_completed([finish(t) for t in tasks]):
            task, outcome = await next_done
            a = a_of[task.id]
            if isinstance(outcome, MOFSimError):
                failures += 1
                print(f"{task.id:<22} {a:7.3f}  failed: {outcome}")
                continue
            energy = outcome.energy_eV if outcome.energy_eV is not None else float("nan")
            energies[a] = energy
            print(f"{task.id:<22} {a:7.3f} {energy:10.4f} {outcome.pressure_GPa or 0.0:9.3f}")

    elapsed = time.monotonic() - started
    print(
        f"{len(energies)} completed, {failures} failed in {elapsed:.1f} s "
        f"({len(tasks) / elapsed:.1f} tasks/s)"
    )
    if energies:
        best = min(energies, key=lambda a: energies[a])
        print(f"lowest energy at a = {best:.3f} A: {energies[best]:.4f} eV")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", help="server URL (default: $MOFSIM_SERVER)")
    parser.add_argument("--api-key", help="API key (default: $MOFSIM_API_KEY)")
    parser.add_argument("--model", default="emt", help="model key (default: emt)")
    parser.add_argument("--count", type=int, default=20, help="number of tasks (default 20)")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds to wait for each task (default 1800)"
    )
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    return asyncio.run(run(args.server, args.api_key, args.model, args.count, args.timeout))


if __name__ == "__main__":
    raise SystemExit(main())
