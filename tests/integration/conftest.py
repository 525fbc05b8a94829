from tests.integration.loopbacks import loopback_factory  # noqa: F401  (fixture)
