from tests.integration.loopbacks import loopback_factory  # noqa: F401  (fixture)
from tests.integration.moto_stand_in import moto  # noqa: F401  (fixture; modules with their own moto use theirs)
