"""``python -m tempflex``: the same command line as the ``tempflex`` script."""

from tempflex.cli import app

if __name__ == "__main__":
    app(prog_name="tempflex")
