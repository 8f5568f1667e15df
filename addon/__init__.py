"""Blender extension: a prompt in the 3D viewport's sidebar; the result is created as editable data.

Requests run in a background thread (client.py); a timer on Blender's UI thread reads their
state (operators.py); the injector (injector.py) turns a validated scene document (validate.py)
into Blender data through bpy.data without ever running code it received.
"""

from . import operators, panel, properties

_MODULES = (properties, operators, panel)


def register():
    for module in _MODULES:
        module.register()


def unregister():
    for module in reversed(_MODULES):
        module.unregister()
