from nnmamba.cli import main

raise SystemExit(main())
