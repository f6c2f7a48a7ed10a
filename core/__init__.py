"""The floor every layer stands on: what ``pipeline``, ``kernels`` and ``deploy`` all need and that belongs to none
of them. ``errors`` (the one exception users see as a line), ``atomic`` (files written whole or not at all) and
``hashing`` (content digests). Imports the standard library only, runs on Python 3.8, and ships to devices with
the runner (``spiralprune.deploy.bundle``)."""
