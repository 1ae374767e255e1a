"""A component's interface (its inputs and outputs with their types and defaults), its hash, and the
stamp every component carries: the core of the interface lock, importable by each component's KFP
wrapper without the catalog (which imports every component to write their specs).
"""

from __future__ import annotations

import hashlib
import json

from kfkit import __version__


def interface(component) -> dict:
    spec = component.component_spec
    return {"inputs": {n: [str(i.type), repr(i.default), i.optional] for n, i in sorted((spec.inputs or {}).items())},
            "outputs": {n: str(o.type) for n, o in sorted((spec.outputs or {}).items())}}


def interface_hash(component) -> str:
    return hashlib.sha256(json.dumps(interface(component), sort_keys=True).encode()).hexdigest()[:16]


STAMP = ("--kfkit-version", "--kfkit-interface")


def stamped(component):
    """The component with kfkit's version and its interface hash as container arguments.

    KFP keeps a container's arguments in the component spec, through load_component_from_file/url,
    and into the deploymentSpec of every pipeline compiled with it (the Vertex console shows them),
    where a header comment or a description is lost: KFP takes a loaded component's description
    only from its embedded source's docstring, and its 2.17 loader fails on a container `env`. The
    executor ignores arguments it does not know (kfp.dsl.executor_main uses parse_known_args).
    """
    container = component.component_spec.implementation.container
    args = list(container.args or [])
    for flag in STAMP:  # a component stamped twice keeps one stamp
        if flag in args:
            index = args.index(flag)
            del args[index:index + 2]
    container.args = args + [STAMP[0], __version__, STAMP[1], interface_hash(component)]
    return component
