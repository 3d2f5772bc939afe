"""Write a generated design: Verilog, RTLIL and a JSON manifest, byte for byte reproducible."""

import json
from pathlib import Path

from amaranth.back import rtlil, verilog
from amaranth.lib.wiring import In

__all__ = ["ports_of", "write_design"]


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
            "width": len(value),
        })
    return ports


def write_design(component, name, out_dir, manifest):
    """Write ``<out_dir>/<name>.v``, ``.il`` and ``.json``; return their paths.

    Parameters
    ----------
    component : wiring.Component
        The design to convert.
    name : str
        Name of the top-level module and stem of the files.
    out_dir : path-like
        Directory to write into (created if missing).
    manifest : dict
        Parameters, latency, throughput... of the design; the ports are added here.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {kind: out_dir / f"{name}.{kind}" for kind in ("v", "il", "json")}
    paths["v"].write_text(verilog.convert(component, name=name, emit_src=False))
    paths["il"].write_text(rtlil.convert(component, name=name, emit_src=False))
    document = {"top": name, **manifest, "ports": ports_of(component)}
    paths["json"].write_text(json.dumps(document, indent=2) + "\n")
    return paths
