"""Scale-out 3 -> 4 -> 6 on real Redis 7.0: every test of tests/integration/scale_out.py, in its order.

One file per Redis line, so --dist loadfile hands the two lines to the two workers.
"""

from tests.integration import scale_out

globals().update(scale_out.tests_for("7.0"))
