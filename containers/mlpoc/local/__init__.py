"""Local mode: the whole PoC on a laptop, with an embedded moto server standing in for AWS.

The data stack is created in moto through moto's CloudFormation from the template that
``cdk deploy`` uses; the workers, the SQS-triggered Lambda handlers and the API run as local
processes with the environment the service stack gives them on AWS. Nothing here can reach a
real account: see :mod:`mlpoc.local.safety`.
"""
