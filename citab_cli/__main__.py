"""`python -m citab_cli ...` (also what torchrun launches)."""

from citab_cli.app import main

if __name__ == "__main__":
    main()
