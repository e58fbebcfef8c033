"""Developer tools, not part of the package: benchmarks (``bench*.py`` on ``benchlib.py``), the
storage-emulator launcher (``servers.py``) and the test command (``test.sh``). The test-image
generator is ``pxlite/imagegen.py``.
"""
