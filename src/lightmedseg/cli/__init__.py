"""Command-line interface: ``lightmedseg SUBCOMMAND ...`` (see ``lightmedseg --help``)."""
