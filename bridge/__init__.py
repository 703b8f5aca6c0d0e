"""bridge: the network file format, torch <-> file, and file -> Brian2."""
from eventsnn.bridge.network import Layer, Network, load_network, save_network  # noqa: F401
