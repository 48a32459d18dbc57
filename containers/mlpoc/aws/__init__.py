"""The AWS edge: clients, DynamoDB helpers, the bucket layout, table keys, log events and logs, the
Beanstalk platform and the cloud assembly."""
