"""Rules are written with compiler.numpy (readable math on tracers), but compiler.numpy is built on
these primitives; this proxy breaks the import cycle by importing it on first use."""


class _LazyNumpy:
    def __getattr__(self, name):
        from .. import numpy as cnp
        return getattr(cnp, name)


class _LazyLax:
    def __getattr__(self, name):
        from .. import lax
        return getattr(lax, name)


cnp = _LazyNumpy()
lax = _LazyLax()
