"""The model summary printed when training starts, without Lightning's FLOPs column.

Lightning counts FLOPs only by running ``example_input_array`` through the model; bioreg does not set
one (that forward pass would draw from the RNGs that a resumed run must continue exactly), so the
column and the "Total FLOPs" line would always read 0. This summary shows the layers, parameters and
modes, and leaves FLOPs out rather than print a wrong number.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.utilities.model_summary.model_summary import (
    get_formatted_model_size,
    get_human_readable_count,
)

__all__ = ["ModelSummaryNoFlops"]


class ModelSummaryNoFlops(ModelSummary):
    """Lightning's ``ModelSummary`` drawn as a rich table, without FLOPs."""

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int = 0,
                  **summarize_kwargs: Any) -> None:
        from rich import get_console
        from rich.table import Table

        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        table = Table(header_style="bold magenta")
        for name, _ in columns:
            table.add_column(name, style="dim" if name == " " else None,
                             justify="right" if name in ("Params", "In sizes", "Out sizes") else "left")
        for row in zip(*(values for _, values in columns), strict=True):
            table.add_row(*map(str, row))
        console = get_console()
        console.print(table)
        console.print(
            f"Trainable params: {get_human_readable_count(int(trainable_parameters))} · "
            f"non-trainable: {get_human_readable_count(int(total_parameters - trainable_parameters))} · "
            f"total: {get_human_readable_count(int(total_parameters))} "
            f"({get_formatted_model_size(model_size)} MB) · modules in train mode: "
            f"{total_training_modes['train']}, in eval mode: {total_training_modes['eval']}")
