"""Data builders for the case studies in ``examples/``: real data from Debian packages, written out once.

Each builder reads what an installed package ships (no download), writes its output to a temporary
folder and renames it into place with a ``manifest.json`` that records what it was built from, so a
second call with the same arguments returns at once and a killed build leaves nothing that looks done.
"""
