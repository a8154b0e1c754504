"""Faults of a training run as they happen to users: a stop request, two runs on one folder, damaged or
missing checkpoints, a torn metrics line, leftovers of a killed run. Nothing is lost beyond the last
checkpoint, nothing shows a traceback, and a resumed run logs every iteration once."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from helpers import ONE_THREAD, REPO, read_metrics, run_script, synthetic_shapes, train_args, write_segmentation_folder

# tiny steps (crop 33 x 33) so that the runs below take seconds
FAST = ('--crop-size', '33x33', '--val-split', 'none', '--log-every', '1')


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes')
    write_segmentation_folder(root, synthetic_shapes(8, 40, seed=0), 'train')
    return root


def start(data, run_dir, *extra, iterations=400):
    """train.py in the background, as a user starts it in a terminal (two data workers)."""
    args = [*train_args(data, run_dir, *FAST, *extra, iterations=iterations)]
    args[args.index('--num-workers') + 1] = '2'
    return subprocess.Popen([sys.executable, str(REPO / 'train.py'), *map(str, args)], env=ONE_THREAD,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_iterations(run_dir, count, process, timeout=120):
    """Wait until `process` (started just before) has logged up to iteration `count` in metrics.jsonl."""
    deadline, started = time.monotonic() + timeout, time.time()
    path = os.path.join(run_dir, 'metrics.jsonl')
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if (os.path.exists(path) and os.path.getmtime(path) >= started
                and any(record >= count for record in iterations_logged(run_dir))):
            return
        time.sleep(0.2)
    process.kill()
    raise AssertionError('no %d iterations in %d s' % (count, timeout))


def iterations_logged(run_dir):
    return [record['iteration'] for record in read_metrics(run_dir) if 'loss' in record]


@pytest.mark.parametrize('number', [signal.SIGINT, signal.SIGTERM], ids=['ctrl-c', 'sigterm'])
def test_a_stop_request_saves_a_checkpoint_and_says_how_to_resume(data, tmp_path, number):
    run_dir = tmp_path / 'run'
    process = start(data, run_dir)
    wait_for_iterations(run_dir, 2, process)
    process.send_signal(number)
    begun = time.monotonic()
    stdout, stderr = process.communicate(timeout=60)
    assert time.monotonic() - begun < 30  # within seconds (a step of this run takes well under one)
    assert process.returncode == 128 + number, stderr
    assert 'Traceback' not in stderr and 'Error' not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith('train.py: stopped')]
    assert len(lines) == 1 and '--resume' in lines[0] and str(run_dir) in lines[0], stderr
    stopped_at = int(lines[0].split('at iteration ')[1].split()[0])
    assert os.path.isdir(run_dir / 'checkpoints' / ('iter-%08d' % stopped_at))
    assert iterations_logged(run_dir) == list(range(1, stopped_at + 1))
    # resumed, it ends where the run was to end (fewer iterations are refused, so finish it with a stop)
    resumed = subprocess.Popen([sys.executable, str(REPO / 'train.py'), '--run-dir', str(run_dir), '--resume',
                                '--gpus', 'cpu', '--quiet'], env=ONE_THREAD, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    wait_for_iterations(run_dir, stopped_at + 2, resumed)
    resumed.send_signal(signal.SIGINT)
    _, stderr = resumed.communicate(timeout=60)
    assert resumed.returncode == 130 and 'Traceback' not in stderr, stderr
    logged = iterations_logged(run_dir)
    assert logged == list(range(1, len(logged) + 1)) and len(logged) > stopped_at  # each iteration once


def test_one_run_at_a_time_per_folder_and_no_stale_lock(data, tmp_path):
    run_dir = tmp_path / 'run'
    first = start(data, run_dir)
    wait_for_iterations(run_dir, 1, first)
    second = run_script('train.py', '--run-dir', run_dir, '--resume', '--gpus', 'cpu', check=False)
    assert second.returncode == 1 and 'Traceback' not in second.stderr
    assert 'is in use by another run (process %d)' % first.pid in second.stderr, second.stderr
    first.kill()  # kill -9: its lock goes with it
    first.communicate()
    resumed = start_resume(run_dir)
    wait_for_iterations(run_dir, 1, resumed)
    resumed.send_signal(signal.SIGINT)
    resumed.communicate(timeout=60)
    assert resumed.returncode == 130


def start_resume(run_dir):
    return subprocess.Popen([sys.executable, str(REPO / 'train.py'), '--run-dir', str(run_dir), '--resume', '--gpus',
                             'cpu', '--quiet'], env=ONE_THREAD, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.fixture(scope='module')
def finished_once(data, tmp_path_factory):
    """A run of 6 iterations with checkpoints every 2 (iter-4 and iter-6 are kept), made once."""
    run_dir = tmp_path_factory.mktemp('finished') / 'run'
    run_script('train.py', *train_args(data, run_dir, *FAST, '--checkpoint-every', '2', iterations=6), env=ONE_THREAD)
    assert sorted(os.listdir(run_dir / 'checkpoints')) == ['iter-00000004', 'iter-00000006', 'latest']
    return run_dir


@pytest.fixture
def finished_run(finished_once, tmp_path):
    """A copy of that run for one test to damage (paths in config.json are the data's, absolute)."""
    return shutil.copytree(finished_once, tmp_path / 'run', ignore=shutil.ignore_patterns('.lock'))


def resume(run_dir, check=True):
    return run_script('train.py', '--run-dir', run_dir, '--resume', '--gpus', 'cpu', '--quiet', env=ONE_THREAD,
                      check=check)


@pytest.mark.parametrize('damage', ['truncated net.params', 'deleted checkpoint', 'empty state.json'])
def test_resume_falls_back_to_the_newest_intact_checkpoint(finished_run, damage):
    newest = finished_run / 'checkpoints' / 'iter-00000006'
    if damage == 'truncated net.params':
        with open(newest / 'net.params', 'r+b') as stream:
            stream.truncate(1000)
    elif damage == 'deleted checkpoint':
        shutil.rmtree(newest)
    else:
        (newest / 'state.json').write_text('')
    result = resume(finished_run)
    culprit = {'truncated net.params': 'net.params cannot be read', 'deleted checkpoint': 'is missing',
               'empty state.json': 'state.json cannot be read'}[damage]
    assert culprit in result.stdout and 'iter-00000006' in result.stdout, result.stdout
    assert 'resuming from the newest intact checkpoint instead' in result.stdout
    assert 'resumed %s at iteration 4 of 6' % finished_run in result.stdout
    assert iterations_logged(finished_run) == [1, 2, 3, 4, 5, 6]  # 5 and 6 once, from the resumed run


def test_resume_never_restarts_silently_when_no_checkpoint_can_be_read(finished_run):
    for name in ('iter-00000004', 'iter-00000006'):
        with open(finished_run / 'checkpoints' / name / 'net.params', 'r+b') as stream:
            stream.truncate(10)
    result = resume(finished_run, check=False)
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith('train.py: error:')]
    assert len(errors) == 1 and 'no checkpoint can be read' in errors[0], result.stderr
    assert 'iter-00000004' in errors[0] and 'iter-00000006' in errors[0]


def test_torn_metrics_line_and_leftovers_of_a_killed_run(finished_run):
    shutil.rmtree(finished_run / 'checkpoints' / 'iter-00000006')
    with open(finished_run / 'metrics.jsonl', 'a') as stream:
        stream.write('{"iteration": 7, "lo')  # a kill during the write
    (finished_run / '.best.params.x1y2.tmp').write_bytes(b'half')
    (finished_run / 'checkpoints' / '.iter-00000008.partial').mkdir()
    result = resume(finished_run)
    assert 'removed what killed runs left' in result.stdout and '.best.params.x1y2.tmp' in result.stdout
    assert not any(name.startswith('.') and name != '.lock' for name in os.listdir(finished_run))
    assert not any(name.startswith('.') for name in os.listdir(finished_run / 'checkpoints'))
    with open(finished_run / 'metrics.jsonl') as stream:
        records = [json.loads(line) for line in stream]  # every line whole again
    assert [record['iteration'] for record in records if 'loss' in record] == [1, 2, 3, 4, 5, 6]


def test_a_kill_before_the_first_checkpoint_logs_each_iteration_once(data, tmp_path):
    run_dir = tmp_path / 'run'
    process = start(data, run_dir, iterations=6)
    wait_for_iterations(run_dir, 2, process)
    process.kill()
    process.communicate()
    assert not os.path.exists(run_dir / 'checkpoints' / 'latest')
    result = resume(run_dir)
    assert 'no checkpoint yet: starting from the beginning' in result.stdout
    assert iterations_logged(run_dir) == [1, 2, 3, 4, 5, 6]
