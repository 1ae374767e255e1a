"""Fakes of Google Cloud SDK objects that fail like the real ones on a wrong call.

`bound_to(RealClass)` makes every public method of a fake check its arguments against the real
method of the same name (inspect.signature(...).bind): a misspelled or removed keyword, or a
method the SDK does not have, fails the test instead of passing silently. Objects without state
worth faking are built with mock.create_autospec(RealClass, spec_set=True) instead.
"""

from __future__ import annotations

import functools
import inspect


def bound_to(real_class):
    def wrap(fake_class):
        for name, method in list(vars(fake_class).items()):
            if name.startswith("_") or not callable(method):
                continue
            real = getattr(real_class, name, None)
            if real is None:
                raise TypeError(f"{fake_class.__name__}.{name}: {real_class.__name__} has no method {name!r}")
            signature = inspect.signature(real)

            @functools.wraps(method)
            def checked(self, *args, _method=method, _signature=signature, **kwargs):
                _signature.bind(self, *args, **kwargs)
                return _method(self, *args, **kwargs)

            setattr(fake_class, name, checked)
        return fake_class
    return wrap
