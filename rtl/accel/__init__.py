"""The accelerator: the three engines around shared on-chip memories, run by a program
(docs/accel.md, docs/isa.md)."""
