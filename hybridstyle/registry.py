"""The model classes of the HybridStyle family, by the ``_class_name`` their saved ``config.json`` holds.

``HybridStyle.from_pretrained`` hands a folder saved from a subclass to that subclass. Naming the modules here, and
importing them only on lookup, lets the base class find its subclasses without importing them (they import it).
"""

from __future__ import annotations

import importlib

# A new member of the family adds its line here.
MODEL_MODULES = {
    "HybridStyle": "hybridstyle.modeling_hybridstyle",
    "HybridStyleFast": "hybridstyle.modeling_hybridstyle_fast",
}


def model_class(class_name: str) -> type | None:
    """The family's class saved as ``class_name``, or ``None`` if no member has that name.

    Parameters:
        class_name: the ``_class_name`` of a saved ``config.json``, e.g. ``"HybridStyleFast"``.
    """
    module = MODEL_MODULES.get(class_name)
    return None if module is None else getattr(importlib.import_module(module), class_name)
