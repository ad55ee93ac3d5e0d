"""Face-recognition training: schedule, data feeding, the loop, the saved model."""
