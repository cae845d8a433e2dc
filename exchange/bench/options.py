"""What a bench run is asked to do: ``BenchOptions``, filled in by ``exchange bench`` or by hand."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class BenchOptions:
    config_path: str = "configs/local.yaml"
    accounts: bool = True  # a started mesh keeps the config's accounts; False: pure matching
    connect: bool = False  # use the mesh already running from config_path
    rate: float | None = 10_000.0  # offered requests/s over all sessions; None: as fast as possible
    duration: float = 10.0  # seconds measured, after the warmup
    warmup: float = 2.0
    sessions: int = 8
    zmq: bool = False  # sessions over the gateway's ZMQ order entry (DEALER) instead of the text port
    gateways: int = 1  # a started mesh runs this many gateways; the sessions take them in turn
    subscribers: int = 2
    instruments: list[str] | None = None  # default: every instrument of the config
    workers: int = 2  # load generator processes
    window: int = 32  # --max only: requests outstanding per session
    seed: int = 1
    users: list[tuple[str, str]] | None = None  # --connect: (user, key); default the demo users
    work_dir: str | None = None  # where a started mesh keeps its config, journal and logs
    profile_dir: str | None = None  # py-spy record every role into this folder during the window
    progress: object = None  # callable(line) for one progress line per second
