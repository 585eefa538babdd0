"""The load benchmark's parts; `bench/load.py` is the command that runs them in order.

Each module reads on its own:

* `world` — what the bench adds to `gateway.crypto.world`: the simulated operator's signing
  certificate, client TLS, stopping the gpg-agents;
* `messages` — the messages sent each way (sealed legacy letters and HPRIM reports, S/MIME
  trust letters and CR-BIO packages);
* `sink` — the simulated trust operator and legacy hub, in their own process, that say when
  each message arrived;
* `serve` — the gateway under test (`passerelle serve`, one or several on one spool),
  started until its translation workers are ready;
* `generator` — the load generator (K STARTTLS connections) and one measured phase;
* `floors` — what a phase is compared with: the gateway's crypto classes in a tight loop,
  and the physical floor (the crypto a message needs, in-process);
* `memcheck` — peak memory for one large message;
* `measure` — CPU and memory from ``/proc``, percentiles, the machine;
* `report` — the printed tables.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository (fixtures, the gateway's working directory)."""
