from facefoundry.cli import entry

entry()
