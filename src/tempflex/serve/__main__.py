"""``python -m tempflex.serve [OPTIONS]``: the same as ``tempflex serve``."""

import typer

from tempflex.cli.serve import serve_cmd

if __name__ == "__main__":
    typer.run(serve_cmd)
