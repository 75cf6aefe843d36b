from recocli.cli import main

main()
