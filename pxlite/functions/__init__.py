"""Built-in functions usable in pxlite expressions (``pxlite.functions.image``: image methods)."""
