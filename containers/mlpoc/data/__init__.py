"""Data: dataset CSVs, the dataset versions a folder builds, the held-out rows, shards, feature
sets, corrections and the digits the kit ships with."""
