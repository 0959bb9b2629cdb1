"""CLI subcommands; each module registers itself with ``add_parser(subparsers)``."""
