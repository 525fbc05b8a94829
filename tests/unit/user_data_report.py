"""Where the user data's bytes go: `python -m tests.unit.user_data_report` (PYTHONPATH=.).

Renders the largest server of every shape tests/unit/test_deploy_limits.py checks (user_data_shapes.py; under
the Pulumi mocks) and prints its size against EC2's limit and the budget, then what each file costs
(outsystems_redis.render.cloud_config.user_data_costs), most expensive first.
"""

from __future__ import annotations

import base64

from outsystems_redis.render.cloud_config import EC2_USER_DATA_LIMIT, decode_user_data, user_data_costs
from tests.unit.user_data_shapes import INSTANCE, SHAPES, USER_DATA_BUDGET, shape


def main() -> None:
    largest = None
    for case in SHAPES:
        for instance in shape(*case).of_type(INSTANCE):
            size = len(base64.b64decode(instance.inputs["userDataBase64"]))
            if largest is None or size > largest[0]:
                largest = (size, case, instance)
    size, case, instance = largest
    print(f"largest: {instance.name} of {case}: {size:,} bytes, {size * 100 / EC2_USER_DATA_LIMIT:.1f} % of "
          f"EC2's {EC2_USER_DATA_LIMIT:,} (budget {USER_DATA_BUDGET:,})")
    costs = user_data_costs(decode_user_data(instance.inputs["userDataBase64"]))
    for path, cost in sorted(costs.items(), key=lambda item: -item[1]):
        print(f"{cost:7,}  {path}")


if __name__ == "__main__":
    main()
