"""kfkit: reusable KFP v2 components and pipelines, on Vertex AI or on one machine."""

__version__ = "0.13.0"

# In a checkout, components/ and pipelines/ sit beside kfkit/: that directory on the package path
# makes them kfkit.components and kfkit.pipelines here too, as in an installed wheel (pyproject's
# package-dir), wherever the checkout is (a copy for mutation testing, an image's /src).
import os as _os

_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_checkout, "pyproject.toml")) and _os.path.isdir(_os.path.join(_checkout, "components")):
    __path__.append(_checkout)  # noqa: F821 - a package's __path__
del _os, _checkout
