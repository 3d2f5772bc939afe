"""Board bitstreams and programming (``--board NAME``, ``--program``)."""


def add_arguments(parser):
    """No options yet: the open synthesis flow is being built (issue: synthesis and boards)."""


def run(args, design, paths):
    """Nothing to do until the synthesis options exist."""
