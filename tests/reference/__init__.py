"""Independent float64 numpy reference for the SharQ numerics contract.

Written from DESIGN.md §2 and docs/NUMERICS.md only; it imports nothing from sharq_jax.
"""
