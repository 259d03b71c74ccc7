"""cli.serve runs the proxy: ``gomirror serve`` with embedded defaults needs no configuration.

With ``workers > 1`` the parent forks that many server processes that share
the listening port (SO_REUSEPORT) and the cache directory, and forwards
SIGTERM/SIGINT to them. Before forking it makes the group's run directory
(``monitor.aggregate.WorkerGroup``), where the workers meet to sum their
metrics, and removes it once they have all exited.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from gomirror.app import preflight, run_forever
from gomirror.cli.common import add_config_options, config_from_args
from gomirror.config import Config
from gomirror.errors import ConfigError
from gomirror.logs import setup_logging
from gomirror.monitor.aggregate import WorkerGroup


def add_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the module proxy")
    add_config_options(p, "serve")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    setup_logging(config.server.log_level, access_log=config.server.access_log)
    if config.server.workers > 1:
        preflight(config)
        return _run_workers(config)
    _serve(config)
    return 0


def _serve(config: Config, group_dir: Path | None = None, *, primary: bool = True) -> None:
    # The stock asyncio loop on purpose: uvloop has no loop.sendfile, so aiohttp
    # would copy every zip through a thread pool (measured in docs/benchmarks.md:
    # 20 MB zips went from ~0.6x to ~1.0x nginx without uvloop).
    _pidfd_child_watcher()
    asyncio.run(_main(config, group_dir, primary))


def _pidfd_child_watcher() -> None:
    """On Python 3.11, wait for git processes by pidfd instead of a thread per process.

    Direct mode starts a handful of git processes per request; 3.11's default
    watcher starts a thread for each one. 3.12 and later choose pidfd by
    themselves (and deprecate this API), so nothing is changed there.
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return  # the kernel has no pidfd (before Linux 5.3): keep the default
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())


async def _main(config: Config, group_dir: Path | None, primary: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Only the first worker runs the consistency monitor: N workers probing would
    # multiply the load on the mirrors for no new information.
    await run_forever(config, stop, worker_group=group_dir, monitor=primary)


def _run_workers(config: Config) -> int:
    group = WorkerGroup(config.cache.cache_dir)
    try:
        return _fork_workers(config, group.dir)
    finally:
        group.close()  # only the parent gets here: children leave by os._exit


def _fork_workers(config: Config, group_dir: Path) -> int:
    children: list[int] = []
    for index in range(config.server.workers):
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                _serve(config, group_dir, primary=index == 0)
            except ConfigError as e:
                print(f"gomirror: {e}", file=sys.stderr)
                code = 2
            except Exception:
                traceback.print_exc()  # os._exit below would otherwise hide it
                code = 1
            finally:
                sys.stderr.flush()
                os._exit(code)
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
