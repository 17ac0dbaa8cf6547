"""The lab: simulated federations, experiment grids, reports and the centralised baseline.

It sits on top of everything else: it builds nodes in-process (:mod:`mmbind.client`) and runs
the coordinator (:mod:`mmbind.server`), and nothing below it imports it (only the ``mmbind``
command line, :mod:`mmbind.server.cli`, reaches into it).
"""
