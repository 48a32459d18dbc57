"""Quality over time: drift and realized accuracy, the samples they read, and the charts that show
them."""
