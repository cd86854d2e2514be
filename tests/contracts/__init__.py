"""Contract tests: what this project takes from its dependencies beyond their documented API.

The rule: every private name of a dependency that the code reads or writes, and every method of a
dependency's class that the code overrides (or calls on its own subclass), has a contract test
here, one file per library. A test checks the signature the override was written against, that the
attribute is there (on the class, and on an instance where one is cheap to build), and, where a
signature says too little, the behaviour the code relies on. A failure names the library and its
installed version and says what changed ("gunicorn 27.0.1: ThreadWorker.accept(self, listener)
changed to ...").

The ranges in pyproject.toml admit only versions these tests ran on: a floor is the lowest release
on which they pass, a ceiling the release in the lock (requirements/test.txt). CI runs them at both
ends (.ci/contracts, also ``make contracts``); moving a bound means running them there first.

They take seconds and need no server but the session's private redis-server.
"""
