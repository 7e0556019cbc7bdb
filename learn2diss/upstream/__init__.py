"""Learn2Diss as s3prl and pretraining see it: model, configs, checkpoints (imports nothing else of learn2diss)."""
