from facefoundry.cli import main

main()
