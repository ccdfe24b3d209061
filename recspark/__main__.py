"""``python -m recspark``: the ``recspark`` console command."""

from recspark.cli import console

if __name__ == "__main__":
    console()
