from dbdflow.cli import main

raise SystemExit(main())
