"""The health CLI against a real Redis 7.0 cluster: every test of tests/integration/health_cluster.py.

One file per Redis line, so --dist loadfile hands the two lines to the two workers.
"""

from tests.integration import health_cluster

globals().update(health_cluster.tests_for("7.0"))
