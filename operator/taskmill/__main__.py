from taskmill.cli.main import main

main()
