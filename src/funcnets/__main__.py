from funcnets.cli import main

raise SystemExit(main())
