"""The Elastic Beanstalk platform the API runs on: Docker on Amazon Linux 2023.

Beanstalk retires platform versions, and CreateEnvironment refuses a retired one ("No Solution
Stack named … found"); ``SolutionStackName`` cannot change without replacing the environment.
So the kit does not pin one in ``cdk.json``: with ``mlpoc:eb_solution_stack`` set to ``auto``,
``mlpoc preflight`` looks up the newest "… running Docker" Amazon Linux 2023 stack the account
is offered in that region and keeps it in ``cdk.context.json`` under :func:`context_key`, the
way CDK's own lookups cache values. Every later synth uses the kept value, so the environment is
never replaced by a newer name; the managed platform updates that are on keep the running
environment current. A platform name in ``mlpoc:eb_solution_stack`` pins it instead.

Standard library only: the CDK app and the CLI both import it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

AUTO = "auto"
DOCKER_AL2023 = re.compile(r"^64bit Amazon Linux 2023 v(\d+)\.(\d+)\.(\d+) running Docker$")
# Only for a synth without an account and region (tests, local mode, `make synth` with no
# credentials): such a template is checked and run locally, never deployed. The last name this
# kit was checked against; `cdk deploy` always synthesizes for an account and region, which
# must have a resolved (or pinned) platform.
SYNTH_ONLY_PLATFORM = "64bit Amazon Linux 2023 v4.6.3 running Docker"


def context_key(account: str, region: str) -> str:
    """Where the resolved platform is kept in cdk.context.json for one account and region."""
    return f"mlpoc:eb-platform:account={account}:region={region}"


def is_docker_al2023(name: str) -> bool:
    return DOCKER_AL2023.match(name) is not None


def newest_docker_al2023(names: Iterable[str]) -> str | None:
    """The newest "64bit Amazon Linux 2023 vX.Y.Z running Docker" among ``names``."""
    found = [(m.groups(), n) for n in names if (m := DOCKER_AL2023.match(n))]
    if not found:
        return None
    return max(found, key=lambda pair: tuple(int(part) for part in pair[0]))[1]
