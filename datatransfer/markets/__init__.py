"""Markets built on the engine: the voucher types, validators and clients
of a deal protocol. Nothing below the node imports them."""
