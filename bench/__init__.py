"""Benchmarks of bistil_ray: `python -m bench.<name>`, or `make bench` for all of them."""
