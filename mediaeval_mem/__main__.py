from mediaeval_mem.cli import main

raise SystemExit(main())
