"""`python -m signaling serve ...` is `classroom serve ...`."""

from signaling.cli import main

main()
