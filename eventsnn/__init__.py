"""eventsnn: train spiking networks that use spike timing, verify them in Brian2 and in continuous time.

Layout: ``eventsnn`` (core: events, the discrete-time contract, the torch
engine, training, the CLI), ``eventsnn.bridge`` (the network file, torch <->
file, file -> Brian2) and ``eventsnn.validation`` (compare, verify, demo).
"""
from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("eventsnn")
except _metadata.PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0+unknown"
