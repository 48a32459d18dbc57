"""Data: dataset CSVs, the dataset versions a folder builds, shards, feature sets, corrections and
the digits the kit ships with."""
