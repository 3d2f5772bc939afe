"""pytest options of the cocotb tests: ``--sim`` chooses the simulator, ``--waves`` writes
waveforms (listed at the end of the session).

Both reach :func:`sim.runner.run` through the environment (``$SIM`` and
``$FUSEGEN_SIM_WAVES``), so they hold in pytest-xdist's workers too; a test that names its
simulator keeps it.
"""

import os
import time

from sim.runner import SIMULATORS, WAVES_ENV, WAVES_FILES, build_root


def pytest_addoption(parser):
    group = parser.getgroup("fusegen simulation")
    group.addoption("--sim", choices=SIMULATORS, default=None,
                    help="simulator of the cocotb tests that do not name one "
                         "(default: $SIM, else verilator)")
    group.addoption("--waves", action="store_true", default=False,
                    help="write a waveform of every cocotb run (under sim_build/) and list them")


def pytest_configure(config):
    config.fusegen_started = time.time()
    if config.getoption("--sim"):
        os.environ["SIM"] = config.getoption("--sim")
    if config.getoption("--waves"):
        os.environ[WAVES_ENV] = "1"


def pytest_terminal_summary(terminalreporter, config):
    if not config.getoption("--waves"):
        return
    written = sorted(path for name in WAVES_FILES.values()
                     for path in build_root().glob(f"*/*/run-*/{name}")
                     if path.stat().st_mtime >= config.fusegen_started)
    terminalreporter.write_sep("-", f"{len(written)} waveforms (sim/waves/<engine>.gtkw "
                                    "opens an engine's signals in GTKWave)")
    for path in written:
        terminalreporter.write_line(str(path))
