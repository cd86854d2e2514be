"""The worker signals only its own work horse: never pid 0 or 1, itself, its group, or a stranger.

RQ's ``kill_horse`` did ``os.killpg(os.getpgid(self.horse_pid), SIGKILL)``; with ``horse_pid``
0 (the horse reaped, its job still current) that is the worker's own group. Each case runs in
a child process of its own session, with ``os.kill``/``os.killpg`` recorded instead of sent for
the cases that must send nothing, so a regression fails this test without signalling anything
that belongs to the test run. The real horses are then signalled for real.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

from tests.support import REPO_ROOT, RedisServer

SCRIPT = textwrap.dedent("""
    import json, os, signal, sys, time
    import redis
    from rq.job import Job
    from core.settings import Settings
    from worker.context import WorkerContext
    from worker.rq_worker import JobWorker

    stranger = int(sys.argv[1])
    context = WorkerContext(Settings(), None, redis.Redis.from_url(sys.argv[2]))
    worker = JobWorker(["scoring"], connection=context.redis, context=context)
    worker._horse_job = Job.create("os.getpid", connection=context.redis)  # a job being run, as RQ sees it
    report = {}

    sent = []
    real_kill, real_killpg = os.kill, os.killpg
    os.kill = lambda pid, sig: sent.append(("kill", pid, int(sig)))
    os.killpg = lambda group, sig: sent.append(("killpg", group, int(sig)))
    for name, pid in (("zero", 0), ("init", 1), ("itself", os.getpid()), ("stranger", stranger)):
        worker._horse_pid = pid
        worker.kill_horse()
    report["sent_without_a_horse"] = sent
    os.kill, os.killpg = real_kill, real_killpg

    def horse(own_group):
        pid = os.fork()
        if pid == 0:
            if own_group:
                os.setpgrp()
            time.sleep(30)
            os._exit(0)
        return pid

    for name, own_group in (("horse", True), ("horse_before_setpgrp", False)):
        pid = horse(own_group)
        time.sleep(0.2)  # the child is asleep (and in its own group when asked)
        worker._horse_pid = pid
        worker.kill_horse()
        _, status = os.waitpid(pid, 0)
        report[name] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    # The horse is reaped and horse_pid not yet reset (RQ resets it after a Redis call): no signal.
    worker._horse_pid = pid
    worker.kill_horse()
    report["survived"] = True
    print(json.dumps(report))
""")


def test_kill_horse_signals_only_a_child_of_the_worker(redis_server: RedisServer):
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        run = subprocess.run([sys.executable, "-c", SCRIPT, str(stranger.pid), redis_server.url], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=60, start_new_session=True)
        assert run.returncode == 0, f"the worker process died (exit {run.returncode}):\n{run.stderr[-3000:]}"
        report = json.loads(run.stdout.strip().splitlines()[-1])
        assert report["sent_without_a_horse"] == [], "signals sent with no horse of this worker's to receive them"
        assert report["horse"] == signal.SIGKILL
        assert report["horse_before_setpgrp"] == signal.SIGKILL
        assert report["survived"]
        assert stranger.poll() is None, "a process that is not the worker's child was signalled"
    finally:
        stranger.kill()
        stranger.wait(5)
