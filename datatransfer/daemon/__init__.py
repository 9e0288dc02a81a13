"""The daemon: ``datatransfer serve`` with a local control API.

:mod:`~datatransfer.daemon.protocol` holds the API's vocabulary,
:mod:`~datatransfer.daemon.server` answers it over a running node and
:mod:`~datatransfer.daemon.client` calls it (standard library only, so the
command line reaches a daemon without loading libp2p). Nothing is imported
here: a client must not pay for the server.
"""
