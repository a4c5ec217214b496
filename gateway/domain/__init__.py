"""The pure core: one vocabulary, the policy, validation, disclosure, ID numbers.

Nothing here does I/O or reads the clock; every layer above imports from here and nothing
here imports from them (ARCHITECTURE.md, "Layers").
"""
