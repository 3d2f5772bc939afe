"""Teaching labs: handouts, starter files, reference solutions and their checker.

``python -m labs list`` lists the labs; ``python -m labs check N`` grades the student's files
of lab ``N`` (``--solution`` grades the reference solution). See labs/README.md.
"""
