"""`python -m gateway` is the `edgegw` command."""

from gateway.cli import main

raise SystemExit(main())
