"""The spool protocol: directory layout, job files, atomic transitions, event logs.

No torch, no aiohttp: this package is what every other part builds on, and what a
person or a cron job uses by hand.
"""

from spool.job import Job
from spool.store import Spool

__all__ = ["Job", "Spool"]
