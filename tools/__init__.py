"""Developer tools: benchmarks, emulator launcher, image generator (not part of the package)."""
