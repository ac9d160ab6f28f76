"""``python -m nnmem``: the command line."""

from nnmem.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
