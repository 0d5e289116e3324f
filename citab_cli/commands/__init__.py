"""The command layer: Typer + Rich over the pure core. Nothing here computes."""
