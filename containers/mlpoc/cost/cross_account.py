"""What crosses accounts, and who pays for it (``mlpoc:sources``, ``mlpoc:result_readers``,
``mlpoc:schedules``), read from the templates: sentences for the cost report.

* Datasets read from another account's bucket: S3 bills requests to the bucket's owner (no
  Requester Pays here), so the business account pays the GETs and LISTs of the workers; within
  one region nothing is billed for the transfer.
* Predictions read by another account: DynamoDB bills reads to the table's owner, this account.
* Schedules: EventBridge Scheduler bills invocations past a monthly free allowance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlpoc.aws.cloud_assembly import Assembly
from mlpoc.runtime.contract import SOURCES_OUTPUT


def across_accounts(
    assembly: Assembly, prices: Mapping[str, Any], free: Mapping[str, Any]
) -> list[str]:
    found = []
    for template in assembly.templates.values():
        sources = template.get("Outputs", {}).get(SOURCES_OUTPUT, {}).get("Value")
        if isinstance(sources, str):
            found.append(
                f"Datasets read from {sources}: S3 bills those requests to the bucket's owner "
                f"(the business account; {prices['s3_get_thousand']} USD per 1,000 GETs, and "
                "its key's KMS requests); no transfer charge within one region."
            )
    schedules = 0
    for _, resource in assembly.resources():
        schedules += resource["Type"] == "AWS::Scheduler::Schedule"
        policy = resource.get("Properties", {}).get("ResourcePolicy")
        if resource["Type"] == "AWS::DynamoDB::Table" and policy:
            readers = policy["PolicyDocument"]["Statement"][0]["Condition"]["StringEquals"]
            found.append(
                f"Predictions read by account(s) {', '.join(readers['aws:PrincipalAccount'])}: "
                "DynamoDB bills those reads to this account, the table's owner "
                f"({prices['dynamodb_read_million']} USD per million read units)."
            )
    if schedules:
        found.append(
            f"{schedules} schedule(s): EventBridge Scheduler invocations, "
            f"{free['scheduler_invocations_million']} million a month free, then "
            f"{prices['scheduler_million']} USD per million; each run is a train or monitor job "
            "(above)."
        )
    return found
