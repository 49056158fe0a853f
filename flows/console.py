"""What people see in the terminal: rich tables and one-line errors."""

from __future__ import annotations

from typing import Any, Iterable

from rich.console import Console
from rich.table import Table

console = Console()
errors = Console(stderr=True)


def print_table(title: str, rows: Iterable[dict[str, Any]], columns: list[str] | None = None) -> None:
    rows = list(rows)
    columns = columns or (list(rows[0]) if rows else [])
    table = Table(title=title, show_lines=False)
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    console.print(table)


def print_rows(title: str, rows: list[dict[str, Any]], columns: list[str] | None = None, wide: int = 8) -> None:
    """A table when it fits; one small field/value table per row when there are many columns."""
    columns = columns or (list(rows[0]) if rows else [])
    if len(columns) <= wide:
        print_table(title, rows, columns)
        return
    console.print(f"[bold]{title}[/bold]")
    for row in rows:
        record = Table(show_header=False, box=None, padding=(0, 2))
        record.add_column(style="cyan", no_wrap=True)
        record.add_column(overflow="fold")
        for name in columns:
            record.add_row(name, _cell(row.get(name)))
        console.print(record)
        console.rule(style="dim")


def _cell(value: Any) -> str:
    if value is None:
        return "[dim]-[/dim]"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def fail(message: str) -> None:
    errors.print(f"[bold red]error:[/bold red] {message}", highlight=False)
