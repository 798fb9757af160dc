from monitor.bench import main

raise SystemExit(main())
