"""Outlier ejection, as pure code: `detection.py` (which providers perform
unlike their peers: the criteria, the sweep, the ejection states),
`events.py` (what a sweep reports), `demotion.py` (what a request does with
the ejections: the ejected tried after the rest) and `config.py` (the config
at the edge). The router wires them in actors/router/ejection.py.
"""
