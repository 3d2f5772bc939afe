# amaranth: UnusedElaboratable=no
"""The host link end to end in simulation: boards.host.Host over a cocotb UART model."""

from boards.host import COMMANDS, STATUSES, checksum, frame
from boards.top import BOARDS
from golden.network import PRECISIONS, digits_network, digits_split
from rtl.hostlink import Command, HostLink, Status
from rtl.systolic import SystolicArray
from sim.runner import run


def test_driver_and_hardware_agree_on_codes():
    assert {c.name: c.value for c in Command} == COMMANDS
    assert {s.value: s.name for s in Status} == STATUSES


def test_frames_carry_length_and_checksum():
    data = frame(COMMANDS["CONFIG"], bytes([1, 2, 3, 4, 5]))
    assert data[:4] == bytes([0xA5, 0x01, 5, 0])
    assert sum(data[1:]) % 256 == 0 and checksum(data[1:-1]) == data[-1]


def test_link_runs_a_digits_layer_and_rejects_bad_frames():
    # The iCEBreaker's array: 2x2 with one edge register.
    array = SystolicArray(2, 2, "mixed", edge_registers=BOARDS["icebreaker"].edge_registers)
    link = HostLink(array, divisor=4)
    net = digits_network(PRECISIONS["mixed"], 0.8)
    inputs = net.layer_inputs(net.quantize_input(digits_split()[1][:2]))
    layer = net.layers[-1]
    identity = {"rows": 2, "cols": 2, "word_bits": 32, "acc_width": 32, "drain_rows": 1,
                "precision": "mixed"}
    run(link, "sim.tb.hostlink", name="hostlink_2x2",
        params={"divisor": 4, "identity": identity,
                "layer": {"a": inputs[-1].tolist(), "w": layer.weight.T.tolist(),
                          "w_bits": layer.w_bits, "a_bits": layer.a_bits}})
