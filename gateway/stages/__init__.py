"""The daemon's stages, each a small class given what it needs (spool, journal, metrics,
settings, clock, the address book in force) rather than the whole daemon:

* :mod:`~gateway.stages.intake` — the SMTP listeners' arrivals stored in the spool;
* :mod:`~gateway.stages.translation` — received messages translated (in the processes of
  :mod:`~gateway.stages.workers`) and stored back;
* :mod:`~gateway.stages.dispatch` — translated messages delivered, outcomes recorded;
* :mod:`~gateway.stages.notify` — bounces, delay notices and MDNs queued for delivery.

:mod:`gateway.daemon` wires them together; docs/architecture.md tells the whole story.
"""
