"""The vertical slice end to end on one machine (``make demo`` = ``python -m demo``); see ``demo.__main__``."""
