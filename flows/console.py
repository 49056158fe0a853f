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


def _cell(value: Any) -> str:
    if value is None:
        return "[dim]-[/dim]"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def fail(message: str) -> None:
    errors.print(f"[bold red]error:[/bold red] {message}", highlight=False)
