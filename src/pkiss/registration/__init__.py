"""Registrations both ways: the node registering to carriers (``client``), and PBXs with
``hosts: registered`` registering to the node (``registrar``, keeping ``bindings``)."""

from .bindings import Bindings, RegisteredContact
from .client import Binding, Registrations
from .registrar import Registrar

__all__ = ["Binding", "Bindings", "RegisteredContact", "Registrar", "Registrations"]
