"""Run a dist_sync training on one machine: a scheduler, parameter servers and N workers on loopback.

    python -m mylib.training.launch --workers 2 -- python train.py --kvstore dist_sync --run-dir runs/x ...

It sets the environment MXNet's own launcher (`tools/launch.py --launcher local`, from MXNet's source
tree with dmlc-core's tracker, which the pip wheel does not ship) gives each process: DMLC_ROLE,
DMLC_PS_ROOT_URI, DMLC_PS_ROOT_PORT, DMLC_NUM_SERVER, DMLC_NUM_WORKER. Scheduler and servers are
Python processes that import mxnet with their role set (mxnet then serves and exits). Across machines,
use MXNet's launcher (`--launcher ssh -H hosts`) with the same train.py command (see README).
"""
import argparse
import os
import socket
import subprocess
import sys

from ..cli import ArgumentParser, command, positive_int

SERVE = 'import mxnet'  # with DMLC_ROLE=scheduler or server, importing mxnet runs that role and exits


def free_port(host):
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def launch(command, workers, servers=1, host='127.0.0.1', port=None, env=None, timeout=None):
    """Run `command` (a list) as `workers` dist_sync workers; return their exit statuses (rank order)."""
    base = dict(os.environ if env is None else env)
    base.update(DMLC_PS_ROOT_URI=host, DMLC_PS_ROOT_PORT=str(port or free_port(host)),
                DMLC_NUM_SERVER=str(servers), DMLC_NUM_WORKER=str(workers), DMLC_NODE_HOST=host)
    helpers, running = [], []
    try:  # whatever fails to start, nothing started before it is left running
        for role in ['scheduler'] + ['server'] * servers:
            helpers.append(subprocess.Popen([sys.executable, '-c', SERVE], env=dict(base, DMLC_ROLE=role)))
        for _ in range(workers):
            running.append(subprocess.Popen(command, env=dict(base, DMLC_ROLE='worker')))
        statuses = [process.wait(timeout=timeout) for process in running]
        for process in helpers:
            process.wait(timeout=60)
        return statuses
    finally:
        for process in running + helpers:
            if process.poll() is None:
                process.kill()


@command('python -m mylib.training.launch')
def main(argv=None):
    parser = ArgumentParser(prog='python -m mylib.training.launch', description=__doc__.split('\n\n')[0],
                            epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--workers', type=positive_int, default=2, help='worker processes (default 2)')
    parser.add_argument('--servers', type=positive_int, default=1, help='parameter server processes (default 1)')
    parser.add_argument('--port', type=positive_int, help='scheduler port (default: a free one)')
    parser.add_argument('command', nargs=argparse.REMAINDER, help='-- python train.py ... --kvstore dist_sync')
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ['--'] else args.command
    if not command:
        parser.error('give the worker command after --, e.g. -- python train.py --kvstore dist_sync ...')
    statuses = launch(command, args.workers, args.servers, port=args.port)
    return max(statuses)


if __name__ == '__main__':
    sys.exit(main())
