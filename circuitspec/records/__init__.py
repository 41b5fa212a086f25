"""The parts of a Result: edge records, score records, run information and their JSON fields.

:mod:`circuitspec.results` assembles them into the one :class:`~circuitspec.results.Result`
and reads and writes ``results.json``.
"""
