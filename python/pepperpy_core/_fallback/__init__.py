"""Pure-Python twins of what the Rust extension provides, with the same API.

Used when ``PEPPERPY_CORE_BACKEND=python`` or when the extension is missing.
"""
