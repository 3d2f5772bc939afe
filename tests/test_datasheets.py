"""The datasheets' Verilog instantiation templates match the modules that ``python -m gen`` writes.

Each datasheet (docs/systolic.md, spmv.md, topk.md, accel.md) has one ```verilog block: a comment naming
the file and the generator command that writes it, then an instance of the top module with one
port per line, ``.port (signal), // input [msb:0] what``. The tests run that command and compare
the template with the module's port declarations in the written Verilog.
"""

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from gen.cli import main
from sim.runner import simulator_available

DOCS = Path(__file__).resolve().parent.parent / "docs"
DATASHEETS = ["systolic.md", "spmv.md", "topk.md", "accel.md"]

_HEADER = re.compile(r"//\s*build/(?P<file>\S+\.v), written by: python -m gen(?P<args>( \S+)*)")
_INSTANCE = re.compile(r"(?P<module>[A-Za-z_]\w*)\s+(?P<instance>[A-Za-z_]\w*)\s*\(")
_RANGE = r"\[(?P<msb>\d+):(?P<lsb>\d+)\]"
_CONNECTION = re.compile(r"\.(?P<port>\w+)\s*\((?P<signal>[A-Za-z_]\w*)\)\s*(?P<comma>,?)"
                         rf"\s*//\s*(?P<direction>input|output)\b\s*(?:{_RANGE})?")
_DECLARATION = re.compile(rf"\s*(?P<direction>input|output|inout)\s+(?:{_RANGE}\s*)?"
                          r"(?P<port>\w+);")


@dataclass
class Template:
    """What a datasheet's instantiation template says.

    Attributes
    ----------
    file : str
        The Verilog file, relative to the generator's output directory.
    argv : list of str
        The generator's arguments that write it.
    module : str
        The instantiated module.
    ports : dict
        ``{port: (direction, width)}``, in the template's order.
    signals : dict
        ``{port: signal}``: what the template connects to each port.
    """
    file: str
    argv: list
    module: str
    ports: dict
    signals: dict


def verilog_block(markdown):
    """The one ```verilog block of a datasheet (ValueError when there is not exactly one)."""
    blocks = re.findall(r"^```verilog\n(.*?)^```", markdown, re.M | re.S)
    if len(blocks) != 1:
        raise ValueError(f"expected one ```verilog block, found {len(blocks)}")
    return blocks[0]


def _width(match, line):
    if match["msb"] is None:
        return 1
    if int(match["lsb"]) != 0:
        raise ValueError(f"a port range must end at bit 0: {line.strip()!r}")
    return int(match["msb"]) + 1


def parse_template(text):
    """Read an instantiation template; ValueError on a line that is not of its form."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 3:
        raise ValueError("a template is a header comment, an instance, ports and ');'")
    header = _HEADER.fullmatch(lines[0].strip())
    if not header:
        raise ValueError(f"the first line must be '// build/<file>.v, written by: python -m gen "
                         f"...', not {lines[0]!r}")
    instance = _INSTANCE.fullmatch(lines[1].strip())
    if not instance:
        raise ValueError(f"the second line must be '<module> <instance> (', not {lines[1]!r}")
    if lines[-1].strip() != ");":
        raise ValueError(f"the last line must be ');', not {lines[-1]!r}")
    ports, signals = {}, {}
    connections = lines[2:-1]
    for number, line in enumerate(connections):
        match = _CONNECTION.match(line.strip())
        if not match:
            raise ValueError(f"not a port connection with a direction comment: {line.strip()!r}")
        if bool(match["comma"]) != (number < len(connections) - 1):
            raise ValueError(f"a comma must follow every connection but the last: "
                             f"{line.strip()!r}")
        if match["port"] in ports:
            raise ValueError(f"port {match['port']} is connected twice")
        ports[match["port"]] = (match["direction"], _width(match, line))
        signals[match["port"]] = match["signal"]
    return Template(header["file"], header["args"].split(), instance["module"], ports, signals)


def module_ports(verilog, module):
    """``{port: (direction, width)}`` of ``module`` as declared in ``verilog``."""
    start = re.search(rf"^module {re.escape(module)}\(", verilog, re.M)
    if not start:
        raise ValueError(f"no module {module} in the Verilog")
    body = verilog[start.end():verilog.index("\nendmodule", start.end())]
    ports = {}
    for line in body.splitlines():
        match = _DECLARATION.fullmatch(line)
        if match:
            ports[match["port"]] = (match["direction"], _width(match, line))
    return ports


def differences(template, module):
    """What differs between the template's ports and the module's, one line each."""
    found = []
    for port in module.keys() - template.keys():
        found.append(f"{port}: {module[port][0]} of the module, not in the template")
    for port in template.keys() - module.keys():
        found.append(f"{port}: in the template, not a port of the module")
    for port in template.keys() & module.keys():
        (t_direction, t_width), (m_direction, m_width) = template[port], module[port]
        if t_direction != m_direction:
            found.append(f"{port}: {t_direction} in the template, {m_direction} in the module")
        if t_width != m_width:
            found.append(f"{port}: {t_width} bits in the template, {m_width} in the module")
    return sorted(found)


def generate(argv, out):
    """Run the generator with ``argv`` into ``out``; return the Verilog file's path in ``out``,
    the manifest and the Verilog."""
    assert main([*argv, "--out", str(out)]) == 0
    (manifest,) = out.rglob("*.json")
    verilog = manifest.with_suffix(".v")
    return verilog.relative_to(out).as_posix(), json.loads(manifest.read_text()), \
        verilog.read_text()


def compile_with_icarus(template, instance, verilog, tmp_path):
    """Icarus Verilog's messages (``-Wall``) on the template instantiated in a module of its
    own, with a wire of the template's width for each connection: empty when there is no
    error and no warning."""
    wires = "".join(f"  wire [{width - 1}:0] {template.signals[port]};\n"
                    for port, (_, width) in template.ports.items())
    (tmp_path / "user.v").write_text(f"module user;\n{wires}{instance}endmodule\n")
    (tmp_path / "engine.v").write_text(verilog)
    result = subprocess.run(["iverilog", "-g2005", "-Wall", "-o", str(tmp_path / "user.vvp"),
                             str(tmp_path / "user.v"), str(tmp_path / "engine.v")],
                            capture_output=True, text=True)
    return (result.stdout + result.stderr) or ("" if result.returncode == 0 else "failed")


@pytest.mark.parametrize("datasheet", DATASHEETS)
def test_template_matches_the_module_its_command_writes(datasheet, tmp_path):
    # One test per engine, so that each engine is generated once (10 s for the array), also
    # when pytest-xdist spreads the tests over processes.
    instance = verilog_block((DOCS / datasheet).read_text())
    template = parse_template(instance)
    file, manifest, verilog = generate(template.argv, tmp_path / "out")
    assert template.file == file
    assert template.module == manifest["top"]
    # Every other module of the file is named after the top, so that the tops of two
    # configurations can be instantiated in one design without a clash (the datasheets say so).
    names = re.findall(r"^module \\?([^\s(]+)", verilog, re.M)
    assert names[0] == template.module
    assert all(name.startswith(template.module + ".") for name in names[1:])

    ports = module_ports(verilog, template.module)
    # The Verilog, read here, and the manifest, written from the component, agree.
    assert ports == {port["name"]: (port["direction"], port["width"])
                     for port in manifest["ports"]}
    assert differences(template.ports, ports) == []

    # Icarus checks on its own what the comparison above checks with our parser: the port
    # names, each connection's width against its port, no input left floating; and that the
    # template is Verilog.
    if simulator_available("icarus"):
        assert compile_with_icarus(template, instance, verilog, tmp_path) == ""


# The checks above fail on the mistakes they are there to find: a mutated copy of a template,
# against the ports of the module it names.

TOPK = verilog_block((DOCS / "topk.md").read_text())
TOPK_PORTS = {"clk": ("input", 1), "rst": ("input", 1), "config__payload": ("input", 4),
              "config__valid": ("input", 1), "config__ready": ("output", 1),
              "scores__payload": ("input", 68), "scores__valid": ("input", 1),
              "scores__ready": ("output", 1), "result__payload": ("output", 25),
              "result__valid": ("output", 1), "result__ready": ("input", 1),
              "error": ("output", 1)}


def mutate(text, old, new):
    assert text.count(old) == 1, f"{old!r} is not in the template once"
    return text.replace(old, new)


def test_the_unmutated_template_has_no_differences():
    assert differences(parse_template(TOPK).ports, TOPK_PORTS) == []


@pytest.mark.parametrize("old, new, difference", [
    ("    .result__valid   (result_valid),       // output\n", "",
     "result__valid: output of the module, not in the template"),
    ("// input   [3:0]", "// input   [4:0]",
     "config__payload: 5 bits in the template, 4 in the module"),
    ("// output [24:0]", "// output",
     "result__payload: 1 bits in the template, 25 in the module"),
    ("(scores_ready),       // output", "(scores_ready),       // input",
     "scores__ready: input in the template, output in the module"),
    (".error ", ".errors", "error: output of the module, not in the template"),
])
def test_a_mutated_template_is_reported(old, new, difference):
    assert difference in differences(parse_template(mutate(TOPK, old, new)).ports, TOPK_PORTS)


@pytest.mark.skipif(not simulator_available("icarus"),
                    reason="Icarus Verilog (iverilog) is not installed")
@pytest.mark.parametrize("old, new, message", [
    ("// input   [3:0]", "// input   [4:0]", "(config__payload) of topk_n256_k8_p4_s16 "
                                             "expects 4 bits, got 5"),
    ("    .scores__valid   (scores_valid),       // input\n", "",
     "dangling input port 3 (scores__valid) floating"),
    (".error ", ".errors", "port ``errors'' is not a port"),
])
def test_icarus_reports_a_mutated_template(old, new, message, tmp_path):
    mutated = mutate(TOPK, old, new)
    _, _, verilog = generate(["--unit", "topk"], tmp_path / "out")
    assert message in compile_with_icarus(parse_template(mutated), mutated, verilog, tmp_path)


@pytest.mark.parametrize("old, new, message", [
    ("(topk_config),        // input   [3:0]", "(topk_config),", "direction comment"),
    ("(topk_error)          //", "(topk_error),         //", "a comma must follow"),
    ("(result_ready),       //", "(result_ready)        //", "a comma must follow"),
    ("    .rst ", "    .clk ", "port clk is connected twice"),
    ("[3:0]", "[4:1]", "must end at bit 0"),
    ("written by: python -m gen", "from: python -m gen", "the first line"),
])
def test_a_malformed_template_is_refused(old, new, message):
    with pytest.raises(ValueError, match=message):
        parse_template(mutate(TOPK, old, new))
