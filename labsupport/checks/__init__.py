"""What the labs' test cells use: tiny fixtures and tolerant comparisons, one module a lab.

Fixtures are small (a few dozen images, tiny models) so every test cell runs in seconds,
deterministic (seeded) and silent on stderr.
"""
