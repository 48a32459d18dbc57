"""The AWS edge: clients and the one backoff policy, DynamoDB helpers, the bucket layout, table
keys, log events and logs, the Beanstalk platform and the cloud assembly."""
