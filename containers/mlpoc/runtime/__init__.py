"""The job runtime: the job contract, submitting a job, the ledger, scaling from zero, schedules
and the environment every process reads."""
