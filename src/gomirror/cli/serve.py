"""cli.serve runs the proxy: ``gomirror serve`` with embedded defaults needs no configuration.

With ``workers > 1`` the parent forks that many server processes that share
the listening port (SO_REUSEPORT) and the cache directory, and forwards
SIGTERM/SIGINT to them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from typing import Any

from gomirror.app import App
from gomirror.cli.common import add_config_options, config_from_args
from gomirror.config import Config
from gomirror.logs import setup_logging


def add_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the module proxy")
    add_config_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    setup_logging(config.log_level, access_log=config.access_log)
    if config.workers > 1:
        return _run_workers(config)
    _serve(config)
    return 0


def _serve(config: Config) -> None:
    # The stock asyncio loop on purpose: uvloop has no loop.sendfile, so aiohttp
    # would copy every zip through a thread pool (measured in docs/benchmarks.md:
    # 20 MB zips went from ~0.6x to ~1.0x nginx without uvloop).
    asyncio.run(_main(config))


async def _main(config: Config) -> None:
    app = App(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await app.start()
    try:
        await stop.wait()
    finally:
        await app.stop()


def _run_workers(config: Config) -> int:
    children: list[int] = []
    for _ in range(config.workers):
        pid = os.fork()
        if pid == 0:  # child
            try:
                _serve(config)
            finally:
                os._exit(0)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) not in (0, -signal.SIGTERM, -signal.SIGINT):
            code = 1
    sys.stdout.flush()
    return code
