"""Fleet-wide reload through Redis: a reload on one worker reaches every worker of every host.

``PluginConfig(fleet="redis://...", fleet_name="shop", hot_reload=True)`` (or ``covet-pipe serve
--fleet redis://... --fleet-name shop``). Rooms: :mod:`.message` (the JSON format and its checks),
:mod:`.store` (the generation counter, each plugin's latest change and the channel in Redis),
:mod:`.listener` (the pub/sub task with reconnect), :mod:`.verify` (the content-hash check) and
:mod:`.member` (this worker: publish, apply, converge, health). docs/scaling.md tells the whole story.
"""

from covet_pipe.fleet.member import Fleet
from covet_pipe.fleet.message import Change, FleetMessageError, decode, encode

__all__ = ["Change", "Fleet", "FleetMessageError", "decode", "encode"]
