"""Quickstart: relax one structure on a MOFSim server and print what came back.

    python examples/quickstart.py                          # EMT copper, runs in seconds
    python examples/quickstart.py --model sevennet-0 --structure builtin:CALF-20

The server is ``--server`` or ``$MOFSIM_SERVER`` (default http://127.0.0.1:8000), the
key ``--api-key`` or ``$MOFSIM_API_KEY``.  Only the SDK is needed here (httpx).
"""

from __future__ import annotations

import argparse

from mofsim_client import MOFSimClient, MOFSimError, OptimizationResult, TaskEvent


def copper_cif(a: float = 3.7) -> str:
    """The 4-atom cubic cell of fcc copper as CIF text, stretched a little (EMT's lattice
    constant is 3.59 A) so that the relaxation has something to do."""
    sites = [(0.0, 0.0, 0.0), (0.0, 0.5, 0.5), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0)]
    rows = [f"Cu{i} Cu {x:.4f} {y:.4f} {z:.4f}" for i, (x, y, z) in enumerate(sites)]
    return "\n".join(
        [
            "data_Cu",
            f"_cell_length_a {a}",
            f"_cell_length_b {a}",
            f"_cell_length_c {a}",
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


def show(event: TaskEvent) -> None:
    """``on_progress`` callback: one line per status change or progress report."""
    if event.event == "progress":
        step, energy = event.extra.get("step"), event.extra.get("energy")
        print(f"  {100 * (event.progress or 0):5.1f} %  step {step}  E = {energy} eV")
    else:
        print(f"  {event.event}: {event.status or ''} {event.message or ''}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", help="server URL (default: $MOFSIM_SERVER)")
    parser.add_argument("--api-key", help="API key (default: $MOFSIM_API_KEY)")
    parser.add_argument("--model", default="emt", help="model key (default: emt)")
    parser.add_argument(
        "--structure",
        help="a file path, builtin:NAME or an uploaded "
        "struct_... id (default: a small copper crystal)",
    )
    args = parser.parse_args(argv)

    with MOFSimClient(args.server, api_key=args.api_key) as client:
        print(f"server {client.base_url}: {client.health()['status']}")
        task = client.submit_optimization(
            args.structure or copper_cif(),
            model=args.model,
            priority="HIGH",
            fmax=0.05,
            max_steps=300,
            relax_cell=True,
        )
        print(f"submitted {task.id}")
        try:
            result = task.wait(timeout=600, on_progress=show)
        except MOFSimError as exc:  # the task failed, or the server refused it
            print(f"error {exc.code}: {exc}")
            return 1

    assert isinstance(result, OptimizationResult)
    print(f"converged: {result.converged} after {result.steps} steps")
    print(f"energy: {result.initial_energy_eV:.4f} -> {result.final_energy_eV:.4f} eV")
    if result.volume_change_percent is not None:  # None for a molecule (no cell)
        print(
            f"volume: {result.initial_volume_A3:.2f} -> {result.final_volume_A3:.2f} A^3 "
            f"({result.volume_change_percent:+.2f} %)"
        )
    if result.cell_parameters is not None:
        cell = result.cell_parameters
        print(f"cell: a={cell.a:.4f} b={cell.b:.4f} c={cell.c:.4f} A")
    print("output files:", ", ".join(sorted(result.output_files)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
