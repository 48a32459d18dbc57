"""The job runtime: the job contract, submitting a job, the ledger, backoff, scaling from zero,
schedules and the environment every process reads."""
