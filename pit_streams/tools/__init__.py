"""Command-line tools for looking at topics and putting records on them: ``tail``, ``send``,
``dead-letters``. Each module exposes ``add_parser(sub)``."""
